"""JUnit XML and GitLab's test report JSON, including hostile XML."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.records import truth, validate
from bot.split import SplitError, SplitStats, split_log, split_report

LOGS = Path(__file__).parent / "fixtures" / "logs"
JUNIT = (LOGS / "junit-pytest.xml").read_bytes()
GITLAB = (LOGS / "gitlab-test-report.json").read_bytes()


def test_junit_failures_errors_output_and_passes():
    records = list(split_report(JUNIT, "junit-xml", job="pytest (3.11)", include_passed=True))
    assert all(validate(r) is None for r in records)
    by_name = {r["test"]: r for r in records}
    assert by_name["tests.test_cart.test_store"]["status"] == "error"
    assert by_name["tests.test_api.test_timeout"]["status"] == "failure"
    assert by_name["tests.test_cart.TestCheckout.test_quantities[2]"]["status"] == "success"
    discount = by_name["tests.test_cart.test_total_discount"]
    assert discount["log"].startswith("[failure] assert 25 == 24")  # the message attribute first
    assert "E       assert 25 == 24" in discount["log"]  # then the failure text, entities decoded
    assert "[system-out]" in discount["log"] and discount["log"].endswith(
        "computing total for [(10, 2), (5, 1)]"
    )
    assert discount["job"] == "pytest (3.11)" and discount["format"] == "junit-xml"
    assert sum(r["status"] == "success" for r in records) == 5


def test_junit_is_recognised_by_split_log_and_streamed_in_chunks():
    chunks = [JUNIT[i : i + 50] for i in range(0, len(JUNIT), 50)]
    stats = SplitStats()
    records = list(split_log(iter(chunks), stats=stats))
    assert stats.format == "junit-xml" and len(records) == 4
    assert records == list(split_report(JUNIT, "junit-xml"))


def test_junit_failure_text_is_capped():
    big = "x" * 200_000
    case = f'<testcase classname="a" name="b"><failure message="m">{big}END</failure></testcase>'
    xml = f"<testsuite>{case}</testsuite>"
    (record,) = split_report(xml.encode(), "junit-xml", max_record_bytes=1000)
    assert record["truncated"] and len(record["log"].encode()) <= 1000 and record["log"].endswith("END")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<testsuite><testcase name="t"><failure>&lol3;</failure></testcase></testsuite>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<testsuite><testcase name="t"><failure>&secret;</failure></testcase></testsuite>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE testsuite SYSTEM "http://127.0.0.1:9/evil.dtd">
<testsuite><testcase name="t"><failure>boom</failure></testcase></testsuite>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL])
def test_entity_declarations_are_refused(xml):
    with pytest.raises(SplitError, match="entity"):
        list(split_report(xml, "junit-xml"))


def test_an_external_dtd_is_never_fetched():
    (record,) = split_report(EXTERNAL_DTD, "junit-xml")
    assert record["log"] == "[failure]\nboom"


def test_malformed_or_truncated_xml():
    with pytest.raises(SplitError, match="not a JUnit XML report"):
        list(split_report(b"<html><body>502 Bad Gateway</body></html>", "junit-xml"))
    with pytest.raises(SplitError, match="not a JUnit XML report"):
        list(split_report(b"this is not xml", "junit-xml"))
    stats = SplitStats()
    records = list(split_report(JUNIT[: JUNIT.index(b"test_currency") + 200], "junit-xml", stats=stats))
    assert [r["test"] for r in records] == [
        "tests.test_api.test_timeout",
        "tests.test_cart.test_total_discount",
    ]
    assert any("malformed XML" in w for w in stats.warnings)


def test_gitlab_report_statuses_names_and_jobs():
    records = list(split_report(GITLAB, "gitlab-json", include_passed=True))
    assert [(r["test"], r["status"]) for r in records] == [
        ("vulnerability_management_spec.Security Reports can create an auto-remediation MR", "success"),
        ("merge_requests_spec.Merge requests shows the pipeline status", "failure"),
        ("api/projects_spec.Projects API lists projects", "error"),
    ]
    assert all(r["job"] == "rspec:pg14" and r["format"] == "gitlab-json" for r in records)
    assert (
        "expected to find text" in records[1]["log"]
        and records[1]["log"].startswith("\n[system-out]") is False
    )
    assert records[2]["log"].startswith("PG::ConnectionBad")
    # recognised by content through split_log too
    assert list(split_log([GITLAB])) == records[1:]


def test_gitlab_report_errors_are_clear():
    with pytest.raises(SplitError, match="invalid JSON"):
        list(split_report(b"{not json", "gitlab-json"))
    with pytest.raises(SplitError, match="test_suites"):
        list(split_report(json.dumps({"total": 1}).encode(), "gitlab-json"))
    stats = SplitStats()
    odd = {
        "test_suites": [{"name": "s"}, {"name": "t", "test_cases": [7, {"status": "failed", "name": "n"}]}]
    }
    records = list(split_report(json.dumps(odd).encode(), "gitlab-json", stats=stats))
    assert [r["test"] for r in records] == ["n"] and len(stats.warnings) == 2


# --- runs the test runner re-ran: real Maven Surefire 3.0 reports (rerunFailingTestsCount=15) ---------

SUREFIRE = Path(__file__).parent / "fixtures" / "surefire"
FLAKY = (SUREFIRE / "TEST-com.github.pihme.jenkinstestbed.module1.FlakyTest.xml").read_bytes()
FLAKY_ERROR = (SUREFIRE / "TEST-com.github.pihme.jenkinstestbed.module1.FlakyErrorTest.xml").read_bytes()
FAILING = (SUREFIRE / "TEST-com.github.pihme.jenkinstestbed.module1.FailingTest.xml").read_bytes()
PKG = "com.github.pihme.jenkinstestbed.module1."


def test_a_failure_that_passed_on_retry_is_a_flake_record_plus_the_pass():
    records = list(split_report(FLAKY, "junit-xml", include_passed=True, flaky_attempts=True))
    assert all(validate(r) is None for r in records)
    failed, passed = records
    assert failed["test"] == passed["test"] == PKG + "FlakyTest.flakyTest"
    assert (failed["status"], failed["passed_on_retry"], failed["label"], failed["retries"]) == (
        "failure",
        True,
        "flake",
        1,
    )
    assert truth(failed) == "flake"  # what `flakebot train` learns from
    assert failed["log"] == (
        "[flakyFailure] failed\njava.lang.AssertionError: failed\n"
        f"\tat {PKG}FlakyTest.flakyTest(FlakyTest.java:16)\n\n[system-out]\nFlaky test"
    )
    assert (passed["status"], passed["retries"], passed["log"]) == ("success", 1, "")
    assert "passed_on_retry" not in passed
    (error,) = split_report(FLAKY_ERROR, "junit-xml", flaky_attempts=True)  # <flakyError>: an error
    assert (
        error["status"] == "error"
        and error["passed_on_retry"]
        and "setUp(FlakyErrorTest.java:16)" in error["log"]
    )


def test_without_flaky_attempts_a_test_that_passed_on_retry_is_the_pass_it_finally_was():
    assert list(split_report(FLAKY, "junit-xml")) == []
    (passed,) = split_report(FLAKY, "junit-xml", include_passed=True)
    assert passed["status"] == "success" and passed["retries"] == 1
    # `flakebot split` turns them on: its output feeds `flakebot train`
    result = CliRunner().invoke(
        cli, ["split", str(SUREFIRE / "TEST-com.github.pihme.jenkinstestbed.module1.FlakyTest.xml")]
    )
    assert [json.loads(line)["label"] for line in result.stdout.splitlines()] == ["flake"]
    off = CliRunner().invoke(
        cli,
        [
            "split",
            "--no-flaky-attempts",
            str(SUREFIRE / "TEST-com.github.pihme.jenkinstestbed.module1.FlakyTest.xml"),
        ],
    )
    assert off.stdout == ""


def test_a_test_that_failed_every_rerun_is_one_failure_not_flake_evidence():
    (record,) = split_report(FAILING, "junit-xml", include_passed=True, flaky_attempts=True)
    assert record["status"] == "failure" and record["retries"] == 15 and "passed_on_retry" not in record
    assert truth(record) is None
    # the reruns' own output stays out of the failure's log
    assert record["log"].count("[system-out]") == 1 and record["log"].startswith("[failure] null\n")


def test_rerun_elements_of_other_writers():
    xml = b"""<testsuites><testsuite name="s">
      <testcase classname="a" name="twice"><flakyFailure message="first">trace one</flakyFailure>
        <flakyError message="second"/></testcase>
      <testcase classname="a" name="still"><flakyFailure message="retry"/><failure message="final">t</failure></testcase>
      <testcase classname="a" name="gave_up"><flakyFailure message="x"/><skipped/></testcase>
      <testcase classname="a" name="plain"><failure message="m">body</failure></testcase>
    </testsuite></testsuites>"""
    records = list(split_report(xml, "junit-xml", include_passed=True, flaky_attempts=True))
    summary = [(r["test"], r["status"], r.get("passed_on_retry"), r.get("retries")) for r in records]
    assert summary == [
        ("a.twice", "failure", True, 2),  # pytest-rerunfailures / nextest style: the trace in the element
        ("a.twice", "error", True, 2),
        ("a.twice", "success", None, 2),
        ("a.still", "failure", None, 1),  # failed on its retry too: the final failure only
        ("a.plain", "failure", None, None),  # a skip after a failed run (Gradle) is no record, as skips
    ]
    assert (
        records[0]["log"] == "[flakyFailure] first\ntrace one" and records[1]["log"] == "[flakyError] second"
    )
    assert records[3]["log"] == "[failure] final\nt"
    # streamed in small chunks, the same records
    chunks = [xml[i : i + 7] for i in range(0, len(xml), 7)]
    assert list(split_log(iter(chunks), include_passed=True, flaky_attempts=True)) == records
