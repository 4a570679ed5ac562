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
