"""JUnit XML and GitLab's test report JSON, including hostile XML."""

import json
from pathlib import Path

import pytest

from bot.records import validate
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
