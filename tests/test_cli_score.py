import gzip
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli

SAMPLE = Path(__file__).parent / "fixtures" / "scoring" / "illinois-sample.jsonl.gz"
FLAKY = "org.apache.dubbo.remoting.transport.netty.ThreadNameTest.testThreadName"
PASSING = "com.alibaba.json.bvt.serializer.ConcurrentHashMapTest5.test_concurrentHashmap"
FAILING = "com.alibaba.json.bvt.issue_1200.Issue1298.test_for_issue_1"


def run(*args, input=None):
    return CliRunner().invoke(cli, ["score", *map(str, args)], input=input)


def lines(result):
    return {obj["test"]: obj for obj in map(json.loads, result.stdout.splitlines())}


def test_scores_real_rerun_histories_one_json_object_a_test():
    result = run(SAMPLE)
    assert result.exit_code == 0, result.output
    out = lines(result)
    assert set(out) == {FLAKY, PASSING, FAILING}
    flaky = out[FLAKY]
    assert flaky["recommendation"]["action"] == "monitor"  # its one failure is 74 runs back
    assert "same revision" in flaky["recommendation"]["reason"]
    assert flaky["total_runs"] == 120 and flaky["total_failures"] == 1 and flaky["flips"] == 1
    assert out[PASSING]["recommendation"]["action"] == "stable" and out[PASSING]["score"] == 0.0
    assert out[FAILING]["recommendation"] == {
        "action": "investigate",
        "reason": "fails on every run",
        "priority": "high",
    }
    assert set(flaky) >= {"score", "confidence", "components", "recommendation"}
    assert "scored 3 tests from 3 lines" in result.stderr


def test_window_weights_and_config_file_change_the_scoring(tmp_path):
    history = {
        "test": "t",
        "runs": [{"status": s, "revision": f"r{i}"} for i, s in enumerate(["passed", "failed"] * 10)],
    }
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(history) + "\n")
    default = lines(run(path))["t"]
    small = lines(run("--window", 4, path))["t"]
    assert default["runs"] == 20 and small["runs"] == 4
    softer = lines(run("--weight", "consecutive_failure_penalty=0", path))["t"]
    assert softer["score"] > default["score"]
    config = tmp_path / "scoring.yml"
    config.write_text("scoring:\n  window: 6\n  min_runs: 2\n  quarantine_threshold: 0.95\n")
    assert lines(run("--config", config, path))["t"]["runs"] == 6


def test_a_test_broken_since_a_commit_gets_the_same_answer_whatever_the_window(tmp_path):
    """Tried as a new user would: 20 passes, then 30 failures, one commit each."""
    runs = [
        {"status": "failed" if i >= 20 else "passed", "revision": f"c{i:03d}", "message": "assert 1 == 2"}
        for i in range(50)
    ]
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps({"test": "t", "runs": runs}) + "\n")
    default, narrow = lines(run(path))["t"], lines(run("--window", 30, path))["t"]
    for out in (default, narrow):
        assert out["recommendation"] == {
            "action": "investigate",
            "reason": "failing since revision c020: 30 runs in a row, last passed on revision c019",
            "priority": "high",
        }
        assert (out["pattern"], out["broken_since"], out["failing_streak"]) == ("broken", "c020", 30)
    assert (default["runs"], narrow["runs"]) == (50, 30)


def test_bad_settings_are_usage_errors(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"test": "t", "runs": []}\n')
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text("windw: 5\n")
    for args, words in [
        (["--config", bad_yaml], "unknown scoring setting(s): windw"),
        (["--weight", "speed=1"], "NAME=VALUE"),
        (["--weight", "intermittency=0.9"], "must sum to 1"),
        (["--window", 1], "x>=2"),
    ]:
        result = run(*args, path)
        assert result.exit_code == 2 and words in result.stderr, result.stderr


def test_malformed_lines_are_reported_with_their_number_and_nothing_else_is_lost(tmp_path):
    good = json.dumps({"test": "ok", "runs": [{"status": "passed"}] * 3})
    text = "\n".join(
        [
            good,
            "not json",
            json.dumps({"test": "x", "runs": [{"status": "passed"}, {"status": "flaky"}]}),
            json.dumps({"runs": []}),
            "",
            json.dumps({"test": "ok2", "runs": []}),
        ]
    )
    path = tmp_path / "h.jsonl"
    path.write_text(text + "\n")
    result = run(path)
    assert result.exit_code == 0
    assert list(lines(result)) == ["ok", "ok2"]
    assert f"{path}:2: invalid JSON" in result.stderr
    assert f"{path}:3: run 2: status must be one of" in result.stderr
    assert f"{path}:4: test must be a non-empty string" in result.stderr
    assert "3 malformed lines skipped" in result.stderr
    strict = run("--strict", path)
    assert strict.exit_code == 1 and f"{path}:2: invalid JSON" in strict.stderr
    assert list(lines(strict)) == ["ok"]


def test_binary_and_truncated_input_are_reported_not_fatal(tmp_path):
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(range(256)) * 400)
    result = run(binary)
    assert result.exit_code == 0 and "malformed lines skipped" in result.stderr
    assert result.stdout == ""
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(SAMPLE.read_bytes()[:-200])
    result = run(cut)
    assert "unreadable input" in result.stderr and result.exit_code == 0
    assert run("--strict", cut).exit_code == 1


def test_stdin_and_gzip_through_the_installed_command():
    raw = gzip.decompress(SAMPLE.read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "score", "--window", "10", "-"],
        input=raw,
        capture_output=True,
        check=True,
        timeout=60,
    )
    out = {json.loads(line)["test"]: json.loads(line) for line in proc.stdout.decode().splitlines()}
    assert out[FLAKY]["recommendation"]["action"] == "monitor" and out[FLAKY]["runs"] == 10


def test_help_shows_the_input_format_and_an_example():
    result = run("--help")
    assert result.exit_code == 0
    assert '"status": "passed"' in result.stdout and "flakebot score history.jsonl.gz" in result.stdout
