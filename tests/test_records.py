import gzip
import io
import json

import pytest

from bot.records import ReadStats, RecordError, read_records, truth, validate, write_jsonl


def _jsonl(*objs):
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs).encode()


GOOD = {"status": "failure", "test": "t1", "log": "boom", "merged": True}


def test_reads_plain_and_gzip_by_content_not_name(tmp_path):
    plain = tmp_path / "a.jsonl.gz"  # misleading name: content decides
    plain.write_bytes(_jsonl(GOOD, {**GOOD, "test": "t2"}))
    packed = tmp_path / "b.jsonl"
    packed.write_bytes(gzip.compress(_jsonl(GOOD)))
    assert [r["test"] for r in read_records(plain)] == ["t1", "t2"]
    assert [r["test"] for r in read_records(packed)] == ["t1"]


def test_malformed_lines_are_skipped_counted_and_named(caplog):
    data = _jsonl(
        GOOD,
        "{not json",
        {"status": "failure", "test": "t"},  # no log
        {"status": "broken", "test": "t", "log": ""},
        [1, 2],
        "",
        {**GOOD, "test": "last"},
    )
    stats = ReadStats()
    records = list(read_records(io.BytesIO(data), stats=stats))
    assert [r["test"] for r in records] == ["t1", "last"]
    assert stats.records == 2 and stats.skipped == 4
    assert [e.line for e in stats.errors] == [2, 3, 4, 5]
    assert "invalid JSON" in stats.errors[0].reason
    assert "log" in stats.errors[1].reason
    assert "status must be one of" in stats.errors[2].reason
    assert "expected a JSON object" in stats.errors[3].reason
    assert "line 2" not in caplog.text and ":2: invalid JSON" in caplog.text


def test_strict_makes_the_first_malformed_line_fatal():
    data = _jsonl(GOOD, {"status": "failure", "test": 3, "log": "x"})
    with pytest.raises(RecordError) as info:
        list(read_records(io.BytesIO(data), strict=True))
    assert info.value.line == 2 and "test must be" in str(info.value)


def test_invalid_utf8_is_repaired_not_dropped():
    data = b'{"status": "failure", "test": "t", "log": "caf\xe9 \xff"}\n'
    stats = ReadStats()
    (record,) = read_records(io.BytesIO(data), stats=stats)
    assert record["log"].startswith("caf") and "\ufffd" in record["log"]
    assert stats.decode_replaced == 1


def test_overlong_line_is_reported_without_being_loaded():
    data = _jsonl(GOOD, {**GOOD, "log": "x" * 5000}, {**GOOD, "test": "after"})
    stats = ReadStats()
    records = list(read_records(io.BytesIO(data), stats=stats, max_line_bytes=1000))
    assert [r["test"] for r in records] == ["t1", "after"]
    assert stats.errors[0].line == 2 and "longer than 1000" in stats.errors[0].reason


def test_truncated_gzip_keeps_what_was_read():
    blob = gzip.compress(_jsonl(*[{**GOOD, "test": f"t{i}", "log": "y" * 2000} for i in range(50)]))
    stats = ReadStats()
    records = list(read_records(io.BytesIO(blob[: len(blob) // 2]), stats=stats))
    assert 0 < len(records) < 50
    assert stats.skipped == 1 and "unreadable input" in stats.errors[0].reason


def test_label_wins_over_merged():
    assert truth({"merged": True, "label": "real"}) == "real"
    assert truth({"merged": False, "label": "flake"}) == "flake"
    assert truth({"merged": True}) == "flake"
    assert truth({"merged": False}) == "real"
    assert truth({"merged": None}) is None


def test_retry_fields_are_checked():
    good = {**GOOD, "retries": 2, "passed_on_retry": True, "label": "flake"}
    assert validate(good) is None and truth(good) == "flake"
    assert "passed_on_retry must be true, false or null" in validate({**GOOD, "passed_on_retry": "yes"})
    for bad in (-1, True, "2", 1.5):
        assert "retries must be a whole number" in validate({**GOOD, "retries": bad})


def test_write_then_read_round_trip():
    out = io.StringIO()
    assert write_jsonl([GOOD, {**GOOD, "log": "ünïcode\n"}], out) == 2
    back = list(read_records(io.BytesIO(out.getvalue().encode())))
    assert back[1]["log"] == "ünïcode\n"
