"""Each supported format, on real (or real-looking) output: names, statuses, logs and line ranges."""

from pathlib import Path

import pytest

from bot.records import validate
from bot.split import SplitStats, split_log

LOGS = Path(__file__).parent / "fixtures" / "logs"


def split(name, **kwargs):
    stats = SplitStats()
    records = list(split_log(LOGS / name, stats=stats, **kwargs))
    for record in records:
        assert validate(record) is None, record
    return records, stats


def failures(records):
    return {r["test"]: r for r in records if r["status"] != "success"}


def lines_of(name, record):
    """The lines of the fixture that the record says it came from."""
    text = (LOGS / name).read_bytes().decode("utf-8-sig", errors="replace").split("\n")
    first, last = record["lines"]
    return text[first - 1 : last]


def test_pytest_sections_get_full_node_ids_from_the_short_summary():
    records, stats = split("pytest.txt")
    assert stats.format == "pytest" and stats.warnings == []
    got = failures(records)
    assert {name: r["status"] for name, r in got.items()} == {
        "tests/test_api.py::test_timeout": "failure",
        "tests/test_cart.py::test_total_discount": "failure",
        "tests/test_cart.py::TestCheckout::test_currency": "failure",
        "tests/test_cart.py::test_store": "error",
    }
    timeout = got["tests/test_api.py::test_timeout"]
    assert timeout["log"].startswith("____") and "test_timeout" in timeout["log"].split("\n")[0]
    assert timeout["log"].endswith("tests/test_api.py:5: AssertionError")  # the traceback's end is kept
    assert "short test summary" not in timeout["log"] and "test_total_discount" not in timeout["log"]
    # captured output belongs to its test
    assert got["tests/test_cart.py::test_total_discount"]["log"].endswith(
        "computing total for [(10, 2), (5, 1)]"
    )
    # line ranges point at the section in the original file
    section = lines_of("pytest.txt", timeout)
    assert "test_timeout" in section[0] and section[-1] == "tests/test_api.py:5: AssertionError"
    assert all(r["job"] == "pytest.txt" and r["format"] == "pytest" and not r["truncated"] for r in records)


def test_github_actions_wrapper_is_removed_and_line_numbers_stay_original():
    records, stats = split("github-actions-pytest.log", include_passed=True)
    assert stats.wrapper == "github-actions" and stats.format == "pytest"
    got = failures(records)
    assert set(got) == {
        "tests/test_api.py::test_timeout",
        "tests/test_cart.py::test_total_discount",
        "tests/test_cart.py::TestCheckout::test_currency",
        "tests/test_cart.py::test_store",
    }
    for record in got.values():
        assert "\x1b" not in record["log"] and "Z " not in record["log"][:40]
        assert not record["log"].startswith("2024-")
    currency = got["tests/test_cart.py::TestCheckout::test_currency"]
    original = lines_of("github-actions-pytest.log", currency)
    assert original[0].startswith("2024-06-01T") and "___ TestCheckout.test_currency ___" in original[0]
    assert original[-1].endswith(":25: KeyError")
    passed = sorted(r["test"] for r in records if r["status"] == "success")
    assert passed == [
        "tests/test_api.py::test_ping",
        "tests/test_cart.py::TestCheckout::test_quantities[1]",
        "tests/test_cart.py::TestCheckout::test_quantities[2]",
        "tests/test_cart.py::TestCheckout::test_quantities[3]",
        "tests/test_cart.py::test_total_empty",
    ]
    assert all(r["log"] == "" for r in records if r["status"] == "success")


def test_unittest_sections_and_verbose_passes():
    records, stats = split("unittest.txt", include_passed=True)
    assert stats.format == "unittest"
    got = failures(records)
    assert {name: r["status"] for name, r in got.items()} == {
        "test_lookup (test_inventory.TestInventory.test_lookup)": "error",
        "test_remove (test_inventory.TestInventory.test_remove)": "failure",
        "test_restock (test_inventory.TestInventory.test_restock) (i=1)": "failure",
    }
    assert got["test_lookup (test_inventory.TestInventory.test_lookup)"]["log"].endswith("KeyError: 'pears'")
    last = got["test_restock (test_inventory.TestInventory.test_restock) (i=1)"]
    assert last["log"].endswith("AssertionError: 1 != 0") and "Ran 5 tests" not in last["log"]
    assert [r["test"] for r in records if r["status"] == "success"] == [
        "test_add (test_inventory.TestInventory.test_add)"
    ]


def test_go_test_leaf_subtests_panics_and_build_failures():
    records, stats = split("gotest.txt")
    assert stats.format == "go"
    got = failures(records)
    assert {name: r["status"] for name, r in got.items()} == {
        "example.com/shop/broken": "error",  # build failed: no test ran
        "example.com/shop/cart.TestTotal/three_items": "failure",  # the failing subtest, not its parent
        "example.com/shop/cart.TestDiscount": "failure",
    }
    assert "undefined: undefinedThing" in got["example.com/shop/broken"]["log"]
    assert got["example.com/shop/cart.TestTotal/three_items"]["log"].endswith("= 7, want 6")
    panic = got["example.com/shop/cart.TestDiscount"]["log"]
    assert "panic: assignment to entry in nil map" in panic and panic.rstrip().endswith("+0x35f")


def test_gitlab_trace_around_go_test_verbose():
    records, stats = split("gitlab-gotest.log", include_passed=True)
    assert stats.wrapper == "gitlab" and stats.format == "go"
    got = failures(records)
    sub = got["example.com/shop/cart.TestTotal/three_items"]
    # -v streams the output under '=== RUN'; it is joined with the '--- FAIL' line
    assert "cart_test.go:15: Total([{1 1} {2 1} {3 1}]) = 7, want 6" in sub["log"]
    assert sub["log"].endswith("--- FAIL: TestTotal/three_items (0.00s)")
    for record in records:
        assert "section_" not in record["log"] and "\r" not in record["log"] and "\x1b" not in record["log"]
    passed = {r["test"] for r in records if r["status"] == "success"}
    assert passed == {
        "example.com/shop/cart.TestTotal/empty",
        "example.com/shop/ledger.TestBalance",
        "example.com/shop/ledger.TestEmpty",
    }
    assert lines_of("gitlab-gotest.log", sub)[0].startswith("    cart_test.go:12")


def test_tap_in_cockpit_style():
    records, stats = split("tap-cockpit.txt", include_passed=True)
    assert stats.format == "tap"
    got = failures(records)
    assert set(got) == {
        "testBinary (check_journal.TestJournal)",
        "testRebootAndTime (check_journal.TestJournal)",
    }
    binary = got["testBinary (check_journal.TestJournal)"]["log"]
    assert binary.startswith("# ----") and "testlib.Error: timeout" in binary
    assert binary.endswith("-FAIL.log")  # the lines after the result line belong to the test
    assert "testNoAdmin" not in binary and "testBasic " not in binary
    assert [r["test"] for r in records if r["status"] == "success"] == [
        "testBasic (check_journal.TestJournal)"
    ]


def test_jest_failures_suite_errors_and_verbose_passes():
    records, stats = split("jest.txt", include_passed=True)
    assert stats.format == "jest"
    got = failures(records)
    assert {name: r["status"] for name, r in got.items()} == {
        "src/cart.test.js › total › applies the discount": "failure",
        "src/cart.test.js › total › with currencies › converts to EUR": "failure",
        "src/api.test.js › times out": "failure",
        "src/broken.test.js": "error",
    }
    assert "Expected: 24" in got["src/cart.test.js › total › applies the discount"]["log"]
    assert "\x1b" not in got["src/api.test.js › times out"]["log"]
    assert {r["test"] for r in records if r["status"] == "success"} == {
        "src/cart.test.js › total › is zero for an empty cart",
        "src/api.test.js › ping answers",
    }


def test_mozharness_test_from_start_to_end_line():
    records, stats = split("mozharness-mochitest.log")
    assert stats.format == "mozharness"
    (record,) = records
    assert (
        record["test"]
        == "devtools/client/webconsole/test/browser/browser_console_enable_network_monitoring.js"
    )
    assert (
        "TEST-START | devtools/client/webconsole/test/browser/browser_console_enable_network" in record["log"]
    )
    assert "TEST-UNEXPECTED-FAIL" in record["log"] and record["log"].rstrip().endswith("took 25059ms")
    span = lines_of("mozharness-mochitest.log", record)
    assert "TEST-START" in span[0] and "TEST-OK" in span[-1]


def test_mozharness_harness_lines_join_the_open_test_and_crashes_name_their_subject():
    records, _ = split("mozharness-timeouts.log")
    assert [(r["test"], r["status"]) for r in records] == [
        ("dom/canvas/test/crossorigin/test_webgl_crossorigin_textures.html", "error"),
        ("dom/canvas/test/crossorigin/mochitest.toml", "error"),
    ]
    first = records[0]["log"]
    assert "4 test timeouts, giving up" in first and "application timed out after 370 seconds" in first
    assert "PROCESS-CRASH" in records[1]["log"].split("\n")[0]


def test_a_log_in_no_known_format_is_one_record_with_its_end():
    records, stats = split("unknown-make.log", job="build (fedora-40)")
    assert stats.format == "unknown"
    (record,) = records
    assert record["test"] == "build (fedora-40)" and record["job"] == "build (fedora-40)"
    assert record["log"].endswith("Build step failed with exit code 2") and record["lines"] == [1, 17]
    # named after the file when no job is given
    (record,) = split("unknown-make.log")[0]
    assert record["test"] == "unknown-make.log"


def test_fallback_keeps_the_tail_of_a_long_log(tmp_path):
    path = tmp_path / "deploy.log"
    path.write_text("".join(f"step {i}: ok\n" for i in range(20000)) + "deploy failed: quota exceeded\n")
    (record,) = split_log(path, max_record_bytes=2000)
    assert record["truncated"] and record["log"].endswith("deploy failed: quota exceeded")
    assert "characters cut by flakebot" in record["log"].split("\n")[0]
    assert len(record["log"].encode()) <= 2000 and record["lines"][1] == 20001
    assert record["lines"][0] > 19000


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("pytest.txt", "pytest"), ("gotest.txt", "go"), ("tap-cockpit.txt", "tap"), ("jest.txt", "jest")],
)
def test_an_explicit_format_gives_the_same_records_as_auto(name, fmt):
    assert split(name, fmt=fmt)[0] == split(name)[0]


def test_an_explicit_wrong_format_finds_nothing_and_falls_back(tmp_path):
    records, stats = split("pytest.txt", fmt="go")
    assert stats.format == "unknown" and len(records) == 1 and records[0]["test"] == "pytest.txt"


def test_go_bare_fail_line_ends_the_test_block_mid_block():
    log = b"--- FAIL: TestA (0.00s)\n    a_test.go:3: boom\nFAIL\nunrelated trailing output\nmore\n"
    (record,) = split_log([log])
    assert record["log"] == "--- FAIL: TestA (0.00s)\n    a_test.go:3: boom" and record["lines"] == [1, 2]
