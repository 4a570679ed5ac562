import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.ci_corpus import generate
from bot.cli import cli


def _write(path, records, extra_lines=()):
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
        for line in extra_lines:
            fh.write(line + "\n")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    records = list(generate(360, seed=21))
    passed = {"status": "success", "test": "t", "log": ""}
    train = _write(
        root / "train.jsonl", [*records[:220], passed], extra_lines=["{broken json", '{"status": "failure"}']
    )
    held = _write(root / "held.jsonl", records[220:])
    return root, train, held, records[220:]


def run(*args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def test_train_trial_classify(data, tmp_path):
    _root, train, held, held_records = data
    model = str(tmp_path / "model")

    result = run("train", train, "--model", model, "-q")
    assert result.exit_code == 0, result.output
    assert "trained" in result.stderr and "clusters" in result.stderr and "noise" in result.stderr
    assert (
        "2 malformed line(s) skipped" in result.stderr
        and ":222: invalid JSON" in result.stderr
        and "(and 1 more malformed line after it, to line 223)" in result.stderr
    )

    result = run("trial", "--model", model, held, "--json", "--report-dir", str(tmp_path / "report"))
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert {"precision", "recall", "f1", "tp", "fp", "fn", "tn", "unknown"} <= figures.keys()
    assert figures["tp"] + figures["fp"] + figures["fn"] + figures["tn"] == len(held_records)
    assert figures["precision"] >= 0.9 and figures["recall"] >= 0.8
    assert (tmp_path / "report" / "false_positives.jsonl").exists()

    text = run("trial", "--model", model, held).stdout
    assert "flake precision" in text and "threshold  precision  recall" in text

    result = run("classify", "--model", model, "-", input=Path(held).read_text())
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == len(held_records)
    assert {v["verdict"] for v in lines} <= {"flake", "real", "unknown"}
    assert all("nearest" in v and "cluster" in v for v in lines)


def test_strict_stops_at_the_first_bad_line_with_its_number(data, tmp_path):
    _, train, _, _ = data
    result = run("train", train, "--model", str(tmp_path / "m"), "--strict")
    assert result.exit_code != 0
    assert ":222: invalid JSON" in result.stderr
    assert not (tmp_path / "m").exists()


def test_friendly_errors(tmp_path):
    result = run("classify", "--model", str(tmp_path / "none"), "-", input="")
    assert result.exit_code != 0 and "flakebot train" in result.stderr
    result = run("train", str(tmp_path / "missing.jsonl"), "--model", str(tmp_path / "m"))
    assert result.exit_code != 0 and "No such file" in result.stderr
    empty = _write(tmp_path / "one.jsonl", [{"status": "failure", "test": "t", "log": "x"}])
    result = run("train", empty, "--model", str(tmp_path / "m"))
    assert result.exit_code != 0 and "at least 2 failed runs" in result.stderr


def test_help_teaches_with_examples():
    for command in ("train", "trial", "classify"):
        result = run(command, "--help")
        assert "Examples:" in result.output and "--model" in result.output


def test_train_trials_on_the_newest_failures_and_keeps_the_retry_threshold(data, tmp_path):
    _root, train, held, _ = data
    model = str(tmp_path / "model")
    result = run("train", train, "--model", model, "-q", "--target-precision", "0.9")
    assert result.exit_code == 0, result.output
    assert "its trial on the newest" in result.stderr and "retries:" in result.stderr
    from bot.modelstore import ModelStore

    loaded, meta = ModelStore(model).load()
    own = meta["trial"]
    assert own["target_precision"] == 0.9 and own["judged"] >= 10
    assert loaded.retry_threshold_ == own["retry_threshold"]
    # the stored model learnt from every failure, the held-out newest included
    assert meta["summary"]["failures"] == 220

    listing = run("models", "--model-dir", model).stdout
    assert "retry >" in listing and "trialled when trained" in listing

    # a later trial on unseen failures is kept beside the version's own and sets the threshold
    result = run("trial", "--model", model, held, "--json")
    later = json.loads(result.stdout)
    assert later["overlap"] == 0 and "retry_threshold" in later and "unknown_share" in later
    assert ModelStore(model).load()[0].retry_threshold_ == later["retry_threshold"]
    assert "latest trial" in run("models", "--model-dir", model).stdout


def test_a_trial_on_training_data_warns_and_changes_no_threshold(data, tmp_path):
    _root, train, _, _ = data
    model = str(tmp_path / "model")
    run("train", train, "--model", model, "-q")
    from bot.modelstore import ModelStore

    before = ModelStore(model).load()[0].retry_threshold_
    result = run("trial", "--model", model, train)
    assert "are failures the model learnt from" in result.stderr
    assert "these figures are optimistic" in result.stdout
    assert ModelStore(model).load()[0].retry_threshold_ == before


def test_train_refuses_a_model_that_cannot_call_a_flake_or_be_trialled(tmp_path):
    reals = [dict(r, label="real") for r in generate(40, seed=2)]
    path = _write(tmp_path / "reals.jsonl", reals)
    result = run("train", path, "--model", str(tmp_path / "m"), "-q")
    assert result.exit_code != 0 and "none of the failures is flake evidence" in result.stderr
    assert not (tmp_path / "m").exists()

    few = _write(tmp_path / "few.jsonl", list(generate(8, seed=2)))
    result = run("train", few, "--model", str(tmp_path / "m"), "-q")
    assert result.exit_code != 0 and "too few labelled failures to trial" in result.stderr
    result = run("train", few, "--model", str(tmp_path / "m"), "-q", "--force")
    assert result.exit_code == 0 and "it will never re-run a job" in result.stderr
    from bot.modelstore import ModelStore

    loaded, meta = ModelStore(tmp_path / "m").load()
    assert loaded.retry_threshold_ is None and "too few" in meta["refused"]


def test_trial_cross_validates_in_time_order(data, tmp_path):
    _root, train, _, _ = data
    result = run("trial", "--cv", "3", train, "--json", "--report-dir", str(tmp_path / "cv"))
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert [f["fold"] for f in figures["folds"]] == [1, 2, 3]
    assert figures["judged"] == sum(f["test"] for f in figures["folds"])
    assert all(a["train"] < b["train"] for a, b in zip(figures["folds"], figures["folds"][1:], strict=False))
    assert (tmp_path / "cv" / "report.txt").exists()
    result = run("trial", train)
    assert result.exit_code != 0 and "--model DIR" in result.stderr


def _cut_gzip(source, target):
    """A .gz copy of ``source`` cut in the middle of its stream (a failed download or copy)."""
    import gzip

    whole = gzip.compress(Path(source).read_bytes())
    target.write_bytes(whole[: len(whole) * 2 // 3])
    return str(target)


def test_train_and_trial_refuse_a_truncated_gzip_input(data, tmp_path):
    """A cut input is not the data the user meant: train stores no model, trial records no trial
    (its threshold would decide the service's re-runs), and both exit 1 as classify does."""
    _root, train, held, _ = data
    model = tmp_path / "model"
    result = run("train", _cut_gzip(train, tmp_path / "train.jsonl.gz"), "--model", str(model), "-q")
    assert result.exit_code == 1
    assert "ends early at line" in result.stderr and "nothing was trained" in result.stderr
    assert not (model / "active").exists()

    assert run("train", train, "--model", str(model), "-q").exit_code == 0
    version = (model / "active").read_text().strip()
    cut_held = _cut_gzip(held, tmp_path / "held.jsonl.gz")
    for args in (["--model", str(model)], ["--cv", "2"]):
        result = run("trial", *args, cut_held, "--report-dir", str(tmp_path / "report"))
        assert result.exit_code == 1, args
        assert "ends early at line" in result.stderr and "nothing was trialled" in result.stderr
    assert not (model / "versions" / version / "trials.jsonl").exists()
    assert not (tmp_path / "report").exists()
