"""Bounds and bad input: caps, cut lines, broken encodings, binary data, truncation, streams."""

import gzip
import io
import random
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

import bot.split.reader as reader
from bot.records import validate
from bot.split import SplitError, SplitStats, split_log, split_report

LOGS = Path(__file__).parent / "fixtures" / "logs"
PYTEST = (LOGS / "pytest.txt").read_bytes()


@contextmanager
def hang_guard(seconds=20):
    """Fail instead of hanging forever (catastrophic backtracking would take hours, not seconds)."""

    def alarm(*_):
        raise TimeoutError(f"no result within {seconds}s: the splitter hangs")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(data, **kwargs):
    stats = SplitStats()
    records = list(split_log(io.BytesIO(data), stats=stats, **kwargs))
    for record in records:
        assert validate(record) is None
    return records, stats


def pytest_failure(body: str, name="test_big") -> bytes:
    return (
        "=================================== FAILURES ===================================\n"
        f"___________________________________ {name} ___________________________________\n"
        f"{body}"
        "E       AssertionError: the end of the traceback\n\n"
        "tests/test_big.py:9: AssertionError\n"
        "=========================== short test summary info ============================\n"
        f"FAILED tests/test_big.py::{name} - AssertionError\n"
        "============================== 1 failed in 0.10s ===============================\n"
    ).encode()


def test_records_are_capped_keeping_head_and_tail_with_a_marker():
    body = "".join(f"noise line {i} " + "x" * 80 + "\n" for i in range(20000))  # ~2 MB of output
    (record,), _ = run(pytest_failure(body), max_record_bytes=4096)
    assert record["test"] == "tests/test_big.py::test_big" and record["truncated"] is True
    assert len(record["log"].encode()) <= 4096
    assert "test_big ____" in record["log"].split("\n")[0]
    assert record["log"].endswith("tests/test_big.py:9: AssertionError")
    marker = [line for line in record["log"].split("\n") if "characters cut by flakebot" in line]
    assert len(marker) == 1
    head, tail = record["log"].split(marker[0])
    assert len(tail) > 2 * len(head)  # the tail, where the traceback ends, gets most of the room


def test_cap_counts_utf8_bytes_not_characters():
    body = "é" * 30000 + "\n"
    (record,), _ = run(pytest_failure(body), max_record_bytes=2000)
    assert len(record["log"].encode("utf-8")) <= 2000 and record["truncated"]


def test_overlong_lines_are_cut_with_a_marker_and_a_warning(monkeypatch):
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 10_000)
    body = "start " + "y" * 500_000 + " end\nafter the long line\n"
    (record,), stats = run(pytest_failure(body))
    assert any("longer than 10000 bytes were cut" in w for w in stats.warnings)
    assert "rest of the line cut by flakebot" in record["log"] and "after the long line" in record["log"]
    assert " end\n" not in record["log"]
    # the cut line still counts as one line: the summary line number is right
    assert record["lines"] == [2, 8]


def test_invalid_utf8_and_nul_bytes_are_repaired_and_reported():
    data = pytest_failure("bad bytes \xff\xfe here\n").replace(b"\xc3\xbf\xc3\xbe", b"\xff\xfe\x00\x00")
    (record,), stats = run(data)
    assert "bad bytes \ufffd\ufffd here" in record["log"] and "\x00" not in record["log"]
    assert any("invalid UTF-8 repaired" in w for w in stats.warnings)
    assert any("NUL bytes removed" in w for w in stats.warnings)


def test_binary_garbage_is_reported_and_the_log_after_it_still_parsed():
    garbage = random.Random(7).randbytes(300_000)
    records, stats = run(garbage + b"\n" + PYTEST)
    assert any("binary data" in w for w in stats.warnings)
    assert {r["test"] for r in records} >= {
        "tests/test_api.py::test_timeout",
        "tests/test_cart.py::test_store",
    }


def test_pure_garbage_gives_one_fallback_record_and_warnings():
    records, stats = run(random.Random(3).randbytes(100_000), job="nightly")
    assert [r["test"] for r in records] == ["nightly"] and stats.format == "unknown"
    assert stats.warnings


def test_a_log_cut_mid_test_keeps_what_was_read_and_says_so():
    cut = PYTEST[: PYTEST.index(b"tests/test_cart.py:15: AssertionError")]
    records, stats = run(cut)
    names = [r["test"] for r in records]
    assert "tests/test_api.py::test_timeout" in names and "test_total_discount" in " ".join(names)
    assert any("ended inside a test" in w for w in stats.warnings)


def test_empty_log_gives_no_record_and_a_warning():
    records, stats = run(b"")
    assert records == [] and any("empty" in w for w in stats.warnings)


def test_gzip_logs_are_read_and_a_truncated_gzip_keeps_its_start():
    packed = gzip.compress(PYTEST * 50)
    whole, _ = run(packed)
    assert len(whole) == 4 * 50
    partial, stats = run(packed[: len(packed) // 2])
    assert 0 < len(partial) < len(whole)
    assert any("truncated" in w for w in stats.warnings)


def test_a_read_error_half_way_keeps_the_records_before_it():
    def chunks():
        yield PYTEST
        raise ConnectionResetError("connection reset by peer")

    stats = SplitStats()
    records = list(split_log(chunks(), stats=stats))
    assert len(records) == 4 and any("connection reset" in w for w in stats.warnings)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in LOGS.iterdir() if not p.name.endswith((".json", ".xml")))
)
def test_any_chunking_and_block_size_give_the_same_records(name, monkeypatch):
    data = (LOGS / name).read_bytes()
    expected = list(split_log([data], job="j"))
    monkeypatch.setattr(reader, "BLOCK_BYTES", 97)  # many block boundaries
    rng = random.Random(name)
    pieces, at = [], 0
    while at < len(data):
        step = rng.randint(1, 300)
        pieces.append(data[at : at + step])
        at += step
    assert list(split_log(iter(pieces), job="j")) == expected


def test_sources_path_stream_chunks_and_stdin_agree(monkeypatch):
    path = LOGS / "gotest.txt"
    expected = [r["test"] for r in split_log(path)]
    assert [r["test"] for r in split_log(io.BytesIO(path.read_bytes()))] == expected
    assert [r["test"] for r in split_log([path.read_bytes()[:100], path.read_bytes()[100:]])] == expected
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    assert [r["test"] for r in split_log("-")] == expected


def test_clear_errors_for_unusable_input(tmp_path):
    with pytest.raises(SplitError, match="cannot read"):
        list(split_log(tmp_path / "missing.log"))
    with pytest.raises(SplitError, match="must be bytes"):
        list(split_log(["text, not bytes"]))
    with pytest.raises(SplitError, match="unknown format"):
        list(split_log(b"x", fmt="cobol"))
    with pytest.raises(SplitError, match="unknown report kind"):
        list(split_report(b"{}", "tap"))


def test_secrets_in_a_failing_test_output_never_reach_the_record():
    token = "ghp_" + "Ab1" * 12
    (record,), _ = run(
        pytest_failure(f"    headers = {{'Authorization': 'token {token}'}}\nGITHUB_TOKEN={token}\n")
    )
    assert token not in record["log"] and "***" in record["log"]


@pytest.mark.parametrize(
    "line",
    [
        "=== " + "=" * 100_000 + "x",
        "___ " + "_" * 100_000 + "x",
        "FAILED " + "[" * 100_000,
        "not ok 1 " + " " * 100_000 + "x duration:",
        "FAIL: " + " " * 100_000 + "y",
        "  ● " + " " * 100_000 + "y",
        "  ✓ " + " (" * 50_000 + "y",
        "PROCESS-CRASH | " + "| " * 50_000,
        "TEST-UNEXPECTED-FAIL | " + "| " * 50_000,
        "a::" * 30_000 + " PASSED",
        "--- FAIL: " + "\t" * 100_000,
        "\x1b[" * 50_000,
        "\r" * 100_000 + "x",
        " " * 100_000,
    ],
)
def test_adversarial_lines_do_not_hang_any_parser(line):
    data = ("=================== FAILURES ===================\n" + line + "\n") * 3
    with hang_guard():
        records, _ = run(data.encode() + b"\n" * 100_000)
    assert all(len(r["log"].encode()) <= 65536 for r in records)


@pytest.mark.parametrize(
    "secret",
    [
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "ghs_" + "Z9y8" * 9,
        "glpat-" + "x1Y2z3" * 4,
        "AKIAIOSFODNN7EXAMPLE",
        "https://bot:hunter2pass@example.com/repo.git",
        "Authorization: Bearer abcdef123456",
        "DB_PASSWORD=correct-horse",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl",
    ],
)
def test_the_masking_shortcut_never_skips_a_secret(secret):
    from bot.redact import mask_secrets
    from bot.split.capture import mask

    text = f"line before\n{secret}\nline after\n"
    assert mask(text) == mask_secrets(text) != text
    assert mask("plain log line\nnothing to hide\n") == "plain log line\nnothing to hide\n"


def test_flagged_lines_survive_a_cut_middle():
    noise = "".join(f"[task t] 10:00:00     INFO - noise {i} " + "z" * 60 + "\n" for i in range(3000))
    log = (
        "[task t] 10:00:00     INFO - TEST-START | dom/a/test_many.html\n"
        + noise
        + "[task t] 10:00:01  WARNING - TEST-UNEXPECTED-FAIL | dom/a/test_many.html | first assertion\n"
        + noise
        + "[task t] 10:00:02  WARNING - TEST-UNEXPECTED-FAIL | dom/a/test_many.html | second assertion\n"
        + noise
        + "[task t] 10:00:03     INFO - TEST-OK | dom/a/test_many.html | took 5ms\n"
    )
    (record,), _ = run(log.encode(), max_record_bytes=8192)
    assert record["truncated"] and len(record["log"].encode()) <= 8192
    assert "first assertion" in record["log"] and "second assertion" in record["log"]
    assert "the 2 flagged line(s) among them follow" in record["log"]
    assert record["log"].startswith("[task t] 10:00:00     INFO - TEST-START") and record["log"].endswith(
        "took 5ms"
    )


def test_a_failed_job_without_failing_tests_is_one_job_record():
    log = (
        "2024-06-01T12:00:00.0000000Z ##[group]Run pytest\n"
        "2024-06-01T12:00:01.0000000Z tests/test_a.py::test_ok PASSED\n"
        "2024-06-01T12:00:02.0000000Z ============================== 1 passed in 0.01s ===\n"
        "2024-06-01T12:00:03.0000000Z ##[error]The job running on runner GitHub Actions 2 has exceeded"
        " the maximum execution time of 360 minutes.\n"
    )
    (record,), stats = run(log.encode(), job="test (ubuntu)")
    assert stats.format == "pytest" and record["format"] == "job" and record["test"] == "test (ubuntu)"
    assert record["log"].endswith("maximum execution time of 360 minutes.")
    # a passing log without such a marker gives no record at all
    passing = log.rsplit("\n", 2)[0] + "\n"
    assert "##[error]" not in passing and run(passing.encode())[0] == []


def test_mozharness_error_level_lines_fail_the_running_test_or_the_harness():
    log = (
        "[task t] 10:00:00     INFO - TEST-START | dom/a/test_one.html\n"
        "[task t] 10:00:01    ERROR - PID 42 | ==42==ERROR: AddressSanitizer: heap-use-after-free\n"
        "[task t] 10:00:02     INFO - TEST-OK | dom/a/test_one.html | took 5ms\n"
        "[task t] 10:00:03     INFO - TEST-START | dom/a/test_two.html\n"
        "[task t] 10:00:04     INFO - TEST-OK | dom/a/test_two.html | took 5ms\n"
        "[task t] 10:00:05 CRITICAL - harness crashed at shutdown\n"
        "[task t] 10:00:06     INFO - shutting down\n"
    )
    records, _ = run(log.encode(), job="wpt-1")
    assert [(r["test"], r["status"]) for r in records] == [
        ("dom/a/test_one.html", "error"),
        ("wpt-1", "error"),
    ]
    assert "AddressSanitizer" in records[0]["log"] and records[1]["log"].endswith("shutting down")


def test_an_actions_log_quoted_after_a_title_is_still_recognised():
    from bot.split.clean import detect_wrapper

    log = "\n".join(
        ["external-ci: failure", "", "summary line"]
        + [f"2024-06-01T12:00:0{i}.1234567Z line {i}" for i in range(8)]
    )
    assert detect_wrapper(log) == "github-actions"
    assert detect_wrapper("plain\nlog\n2024-06-01T12:00:00Z one timestamped line\nmore\nlines\n") is None
