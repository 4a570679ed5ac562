"""The `flakebot split` command, end to end through click."""

import gzip
import io
import json
from pathlib import Path

from click.testing import CliRunner

from bot.cli import cli
from bot.records import ReadStats, read_records

FIXTURES = Path(__file__).parent / "fixtures"
LOGS = FIXTURES / "logs"


def invoke(*args, stdin=None):
    return CliRunner().invoke(cli, ["split", *map(str, args)], input=stdin)


def test_prints_jsonl_that_the_record_reader_accepts_and_a_summary_on_stderr():
    result = invoke(LOGS / "pytest.txt")
    assert result.exit_code == 0, result.output
    stats = ReadStats()
    records = list(read_records(io.BytesIO(result.stdout_bytes), strict=True, stats=stats))
    assert [r["test"] for r in records] == [
        "tests/test_api.py::test_timeout",
        "tests/test_cart.py::test_total_discount",
        "tests/test_cart.py::TestCheckout::test_currency",
        "tests/test_cart.py::test_store",
    ]
    assert result.stderr.strip() == "flakebot split: 4 records from 67 lines (2824 bytes), format pytest"


def test_options_job_format_passed_and_record_cap():
    result = invoke(
        LOGS / "gotest.txt", "--format", "go", "--job", "unit (go 1.22)", "--max-record-bytes", "300"
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["job"] for r in records} == {"unit (go 1.22)"} and all(
        len(r["log"].encode()) <= 300 for r in records
    )
    assert any(r["truncated"] for r in records)
    passed = invoke(LOGS / "unittest.txt", "--include-passed")
    assert sum(json.loads(line)["status"] == "success" for line in passed.stdout.splitlines()) == 1


def test_known_issues_are_annotated(tmp_path):
    patterns = tmp_path / "naughty.jsonl"
    patterns.write_text(
        json.dumps({"pattern": 'File "check-journal", line *, in testBinary\n*Error: timeout', "issue": 4242})
        + "\n"
        + json.dumps({"pattern": "reboot properly", "issue": 7, "slug": "reboot-timeout", "image": "rhel-9"})
        + "\n"
    )
    result = invoke(LOGS / "tap-cockpit.txt", "--known-issues", patterns, "--image", "fedora-40")
    records = {r["test"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["testBinary (check_journal.TestJournal)"]["known_issue"] == {"issue": 4242, "slug": None}
    assert "known_issue" not in records["testRebootAndTime (check_journal.TestJournal)"]  # other image
    assert "1 known issue(s) matched" in result.stderr
    result = invoke(LOGS / "tap-cockpit.txt", "--known-issues", patterns)
    records = {r["test"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records["testRebootAndTime (check_journal.TestJournal)"]["known_issue"]["slug"] == "reboot-timeout"


def test_stdin_gzip_and_warnings(tmp_path):
    data = (LOGS / "jest.txt").read_bytes().replace(b"Expected: 24", b"Expected: \xff24")
    result = invoke("-", stdin=gzip.compress(data))
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 4
    assert "warning: invalid UTF-8 repaired" in result.stderr


def test_errors_are_clear_and_exit_non_zero(tmp_path):
    missing = invoke(tmp_path / "none.log")
    assert missing.exit_code == 1 and "cannot read" in missing.stderr and missing.stdout == ""
    bad_patterns = tmp_path / "bad.jsonl"
    bad_patterns.write_text("{oops\n")
    result = invoke(LOGS / "pytest.txt", "--known-issues", bad_patterns)
    assert result.exit_code == 1 and f"{bad_patterns}:1:" in result.stderr
    html = tmp_path / "report.xml"
    html.write_text("<?xml version='1.0'?><html/>")
    result = invoke(html)
    assert result.exit_code == 1 and "not a JUnit XML report" in result.stderr
    assert invoke(LOGS / "pytest.txt", "--format", "cobol").exit_code == 2


def test_help_teaches_with_examples():
    result = CliRunner().invoke(cli, ["split", "--help"])
    assert result.exit_code == 0
    assert "flakebot split job.log | flakebot classify --model models/ -" in result.output
    assert "--known-issues" in result.output and "--include-passed" in result.output
    assert "split" in CliRunner().invoke(cli, ["--help"]).output
