import pytest

from bench.ci_corpus import generate
from bot.model import FlakeClassifier
from bot.trial import cross_validate, evaluate, lowest_threshold, time_ordered_folds, write_report


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
        _v("unknown", 0.55),
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
    # the unknown is in the table (above 0.1 … 0.5, not above 0.6) and in the figures had it been decided
    assert by_t[0.5]["unknown"] == 1 and by_t[0.6]["unknown"] == 0
    assert f["unknown_share"] == 0.2
    assert f["recall_if_decided"] == round(2 / 3, 4) and f["precision_if_decided"] == round(2 / 3, 4)
    # the lowest threshold with precision 0.97: only the 0.9 flake above it
    assert f["retry_threshold"] == 0.7 and f["retry_recall"] == round(1 / 3, 4)
    assert 0.7 in by_t
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
    text = (out / "report.txt").read_text()
    assert "precision: 0.500" in text and "above a flake probability of 0.70" in text
    assert "unknown above" in (out / "thresholds.txt").read_text()
    assert len((out / "verdicts.jsonl").read_text().splitlines()) == 6


def test_no_positive_prediction_gives_zero_precision_not_a_crash():
    report = evaluate([{"label": "flake"}], [_v("real", 0.0)])
    assert report.figures["precision"] == 0.0 and report.figures["fn"] == 1


@pytest.mark.parametrize(
    ("p", "y", "target", "expected"),
    [
        ([0.9, 0.8, 0.7, 0.2], [1, 1, 0, 0], 0.97, 0.75),  # flag the two above the first real one
        ([0.9, 0.8, 0.7, 0.2], [1, 1, 0, 1], 0.75, 0.0),  # 3 of 4 right reaches 0.75: flag them all
        ([0.9, 0.8], [0, 1], 0.97, None),  # the most likely one is real: nothing reaches 0.97
        ([0.9, 0.9, 0.1], [1, 0, 1], 0.97, None),  # a tie cannot be split by a threshold
        ([0.9, 0.6, 0.5, 0.4], [1, 0, 1, 1], 0.7, 0.0),  # the lowest that reaches it, not the first
    ],
)
def test_lowest_threshold_reaching_a_precision(p, y, target, expected):
    assert lowest_threshold(p, [bool(v) for v in y], target) == expected


def test_time_ordered_folds_expand_and_never_look_ahead():
    folds = time_ordered_folds(10, 4)
    assert [(len(a), len(b)) for a, b in folds] == [(2, 2), (4, 2), (6, 2), (8, 2)]
    assert all(max(train) < min(test) for train, test in folds)
    with pytest.raises(ValueError, match="at least 5"):
        time_ordered_folds(4, 4)


def test_cross_validation_pools_every_fold():
    records = list(generate(240, seed=8))
    seen = []
    report, folds = cross_validate(records, 3, FlakeClassifier, on_fold=lambda i, f: seen.append(i))
    assert seen == [1, 2, 3] and [f["train"] for f in folds] == [60, 120, 180]
    assert report.figures["judged"] == sum(f["test"] for f in folds) == 180
    assert sum(f["tp"] for f in folds) == report.figures["tp"]
