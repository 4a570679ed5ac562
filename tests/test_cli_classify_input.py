"""``flakebot classify`` on input that is not what it expects (hardening 15).

A binary file, an archive, an empty file, a truncated or corrupt gzip file, runs of malformed lines:
a clear error, a summary on stderr, one warning for a run of bad lines, and a non-zero exit status
when nothing usable was read or the input was cut short.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli

SAMPLE = Path(__file__).parent.parent / "bot" / "samples" / "cockpit-failures.jsonl.gz"
GOOD = {"status": "failure", "test": "tests/t.py::test_a", "log": "E   TimeoutError: timed out"}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model")
    result = CliRunner().invoke(cli, ["train", str(SAMPLE), "--model", str(path), "-q"])
    assert result.exit_code == 0, result.output
    return str(path)


def classify(model, path):
    return CliRunner().invoke(cli, ["classify", "--model", model, str(path)], catch_exceptions=False)


def test_a_binary_file_is_refused_at_once(model, tmp_path):
    binary = tmp_path / "core.dump"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 2000 + b"\n" * 19_644)
    result = classify(model, binary)
    assert result.exit_code == 1 and result.stdout == ""
    assert f"{binary}: not JSONL text: it holds NUL bytes (a binary file?)" in result.stderr
    assert "skipping" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_archive_is_named(model, tmp_path):
    archive = tmp_path / "failures.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("failures.jsonl", json.dumps(GOOD) + "\n")
    result = classify(model, archive)
    assert result.exit_code == 1 and "the file is a zip archive" in result.stderr


def test_an_empty_file_is_an_error(model, tmp_path):
    empty = tmp_path / "failures.jsonl"
    empty.touch()
    result = classify(model, empty)
    assert result.exit_code == 1 and f"nothing to classify: {empty} is empty" in result.stderr


def test_a_run_of_bad_lines_is_one_warning_and_nothing_usable_is_an_error(model, tmp_path):
    garbage = tmp_path / "notes.txt"
    garbage.write_text("".join(f"line {i} of some text file\n" for i in range(19_644)))
    result = classify(model, garbage)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("skipping") == 1
    assert (
        f"{garbage}:1: invalid JSON: Expecting value at column 1 (and 19643 more malformed lines after it, to line 19644)"
        in result.stderr
    )
    assert "nothing to classify: none of the 19644 lines" in result.stderr


def test_good_lines_between_bad_runs_are_classified_with_a_summary(model, tmp_path):
    lines = [
        json.dumps(GOOD),
        "{oops",
        "{oops",
        json.dumps({**GOOD, "test": "b"}),
        "[1]",
        json.dumps({**GOOD, "status": "success"}),
    ]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(lines) + "\n")
    result = classify(model, mixed)
    assert result.exit_code == 0
    assert [json.loads(line)["test"] for line in result.stdout.splitlines()] == [
        "tests/t.py::test_a",
        "b",
        "tests/t.py::test_a",
    ]
    assert result.stderr.count("skipping") == 2  # lines 2-3, then line 5
    assert "(and 1 more malformed line after it, to line 3)" in result.stderr
    assert "classified 2 failed runs: 3 records from 6 lines, 3 malformed lines skipped" in result.stderr


def test_a_truncated_gzip_file_classifies_what_came_before_and_fails(model, tmp_path):
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(SAMPLE.read_bytes()[:20_000])
    result = classify(model, cut)
    written = result.stdout.splitlines()
    assert result.exit_code == 1 and len(written) > 10
    assert (
        f"{cut} ends early at line {len(written) + 1}: the verdicts written are for the {len(written)} records before it"
        in result.stderr
    )


def test_a_corrupt_gzip_stream_is_an_error_not_a_traceback(model, tmp_path):
    blob = bytearray(
        gzip.compress(("".join(json.dumps({**GOOD, "test": f"t{i}"}) + "\n" for i in range(2000))).encode())
    )
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\xff" * 64
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(bytes(blob))
    result = classify(model, corrupt)
    assert result.exit_code == 1 and "ends early" in result.stderr


def test_json_errors_are_worded_once():
    from bot.records import ReadStats, read_records

    stats = ReadStats()
    list(read_records(io.BytesIO(b'{"status": "failure", "test": "a\x01b", "log": ""}\n'), stats=stats))
    (error,) = stats.errors
    assert error.reason == "invalid JSON: Invalid control character at column 33"
