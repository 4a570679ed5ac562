"""Property-based tests: any input ends in valid records or a clear error, in bounded time."""

import itertools
import os
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bot.split.reader as reader
from bot.records import STATUSES, validate
from bot.split import FORMATS, REPORT_KINDS, SplitError, SplitStats, sniff_report, split_log

# lines that drive every parser's state machine, mixed with noise
EVENT_LINES = [
    "1..3",
    "ok 1 testA (m.T)",
    "not ok 2 testB (m.T) duration: 3s",
    "not ok 3 testC # SKIP nope",
    "# ----------------------------------------------------------------------",
    "Bail out! db down",
    "=================================== FAILURES ===================================",
    "==================================== ERRORS ====================================",
    "_________________________________ test_x _________________________________",
    "_________________________ ERROR at setup of test_y _________________________",
    "=========================== short test summary info ============================",
    "FAILED tests/t.py::test_x - assert 1 == 2",
    "ERROR tests/t.py::test_y - RuntimeError",
    "tests/t.py::test_z PASSED                                                 [ 50%]",
    "========================= 1 failed, 1 error in 0.12s ==========================",
    "=" * 70,
    "-" * 70,
    "FAIL: test_a (m.T.test_a)",
    "ERROR: test_b (m.T.test_b)",
    "test_c (m.T.test_c) ... ok",
    "Ran 3 tests in 0.01s",
    "=== RUN   TestA",
    "=== RUN   TestA/sub",
    "=== CONT  TestA",
    "=== PAUSE TestA",
    "--- FAIL: TestA (0.00s)",
    "    --- FAIL: TestA/sub (0.00s)",
    "    --- PASS: TestA/ok (0.00s)",
    "panic: runtime error",
    "FAIL\texample.com/p\t0.01s",
    "ok  \texample.com/q\t0.01s",
    "FAIL",
    "FAIL src/a.test.js",
    "PASS src/b.test.js",
    "  ● suite › test one",
    "  ● Test suite failed to run",
    "    ✓ passes (3 ms)",
    "Test Suites: 1 failed, 1 total",
    "INFO - TEST-START | dom/a.html",
    "INFO - TEST-UNEXPECTED-FAIL | dom/a.html | boom",
    "INFO - TEST-UNEXPECTED-FAIL | SimpleTest | harness",
    "INFO - TEST-OK | dom/a.html | took 5ms",
    "WARNING - PROCESS-CRASH | application crashed [@ sig] | dom/b.html",
    "2024-06-01T12:00:00.0000000Z ##[group]Run tests",
    "section_start:1717243200:step_script\r\x1b[0K\x1b[36;1mExecuting\x1b[0;m",
    "Traceback (most recent call last):",
    "AssertionError: boom",
]

lines = st.lists(
    st.one_of(
        st.sampled_from(EVENT_LINES),
        st.text(max_size=60),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    ),
    max_size=80,
)
separators = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])


def encode(parts, sep, garbage):
    data = sep.join(parts).encode("utf-8", "surrogatepass")
    if garbage:
        data = data[: len(data) // 2] + garbage + data[len(data) // 2 :]
    return data


def chunked(data, cuts):
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


SETTINGS = settings(
    max_examples=int(os.environ.get("FLAKEBOT_HYPOTHESIS_EXAMPLES", "150")),  # more for a soak run
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@SETTINGS
@given(
    parts=lines,
    sep=separators,
    garbage=st.binary(max_size=30),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
    fmt=st.sampled_from(FORMATS),
    include_passed=st.booleans(),
    limit=st.integers(256, 4096),
)
def test_any_log_gives_valid_bounded_records_or_a_clear_error(
    parts, sep, garbage, cuts, fmt, include_passed, limit
):
    data = encode(parts, sep, garbage)
    stats = SplitStats()
    try:
        records = list(
            split_log(
                chunked(data, cuts),
                fmt=fmt,
                include_passed=include_passed,
                max_record_bytes=limit,
                stats=stats,
            )
        )
    except SplitError as exc:
        # only a report (announced, or recognised by its first bytes) can be refused as a whole
        assert fmt in REPORT_KINDS or (fmt == "auto" and sniff_report(data[:4096])), exc
        assert str(exc)
        return
    total_lines = stats.lines
    for record in records:
        assert validate(record) is None
        assert record["status"] in STATUSES and record["test"].strip()
        assert len(record["log"].encode("utf-8")) <= limit
        if record["status"] == "success":
            assert record["log"] == ""
        elif "lines" in record:
            first, last = record["lines"]
            assert 1 <= first <= last <= max(total_lines, 1)
    assert stats.records == len(records)


@SETTINGS
@given(
    parts=lines, sep=separators, cuts=st.lists(st.integers(0, 10_000), max_size=12), block=st.integers(1, 200)
)
def test_records_do_not_depend_on_how_the_log_is_chunked(parts, sep, cuts, block):
    data = encode(parts, sep, b"")

    def outcome(source):
        try:
            return list(split_log(source, job="j", include_passed=True))
        except SplitError as exc:  # a log that starts like XML but is not: the same error either way
            return str(exc)

    expected = outcome([data])
    default = reader.BLOCK_BYTES
    reader.BLOCK_BYTES = block  # many block boundaries
    try:
        assert outcome(chunked(data, cuts)) == expected
    finally:
        reader.BLOCK_BYTES = default


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_random_bytes_as_a_report_end_in_records_or_a_clear_error(data):
    for kind in ("junit-xml", "gitlab-json"):
        try:
            records = list(split_log([data], fmt=kind))
        except SplitError as exc:
            assert str(exc)
        else:
            assert all(validate(r) is None for r in records)


def test_an_actions_log_is_recognised_whatever_the_block_size():
    """Found by the test above: with blocks of one line, the wrapper was detected on a first block
    holding only a line break, so the timestamps of an Actions log were kept."""
    data = b"\n2024-06-01T12:00:00.0000000Z ##[group]Run tests\n2024-06-01T12:00:01.0000000Z " + b"boom\n" * 3
    expected = list(split_log([data], job="j"))
    assert "2024-06-01T12" not in expected[0]["log"]
    default = reader.BLOCK_BYTES
    for block in (1, 7, 60):
        reader.BLOCK_BYTES = block
        try:
            assert list(split_log([data], job="j")) == expected, block
            assert list(split_log(chunked(data, range(0, len(data), 5)), job="j")) == expected, block
        finally:
            reader.BLOCK_BYTES = default
