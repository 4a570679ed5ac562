from bot.trial import evaluate, write_report


def _v(verdict, p):
    return {"verdict": verdict, "flake_probability": p}


def test_figures_confusion_matrix_and_unknown_as_negative(tmp_path):
    records = [
        {"test": "a", "label": "flake"},
        {"test": "b", "label": "flake"},
        {"test": "c", "merged": True},
        {"test": "d", "label": "real"},
        {"test": "e", "merged": False},
        {"test": "f"},  # unlabelled: not scored
    ]
    verdicts = [
        _v("flake", 0.9),
        _v("unknown", None),
        _v("real", 0.2),
        _v("flake", 0.5),
        _v("real", 0.1),
        _v("flake", 1),
    ]
    report = evaluate(records, verdicts)
    f = report.figures
    assert (f["tp"], f["fp"], f["fn"], f["tn"]) == (1, 1, 2, 1)
    assert f["unknown"] == 1 and f["unlabelled"] == 1 and f["judged"] == 5
    assert f["precision"] == 0.5 and f["recall"] == round(1 / 3, 4)
    assert [r["test"] for r in report.false_positives] == ["d"]
    assert [r["test"] for r in report.false_negatives] == ["b", "c"]
    by_t = {row["threshold"]: row for row in report.thresholds}
    assert by_t[0.1]["flagged"] == 3 and by_t[0.6]["flagged"] == 1 and by_t[0.6]["precision"] == 1.0
    assert [row["flagged"] for row in report.thresholds] == sorted(
        (row["flagged"] for row in report.thresholds), reverse=True
    )

    out = write_report(report, tmp_path / "r")
    names = {p.name for p in out.iterdir()}
    assert names == {
        "report.txt",
        "thresholds.txt",
        "figures.json",
        "false_positives.jsonl",
        "false_negatives.jsonl",
        "verdicts.jsonl",
    }
    assert "precision: 0.500" in (out / "report.txt").read_text()
    assert len((out / "verdicts.jsonl").read_text().splitlines()) == 6


def test_no_positive_prediction_gives_zero_precision_not_a_crash():
    report = evaluate([{"label": "flake"}], [_v("real", 0.0)])
    assert report.figures["precision"] == 0.0 and report.figures["fn"] == 1
