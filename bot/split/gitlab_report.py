"""GitLab's pipeline test report: ``GET /projects/:id/pipelines/:pipeline_id/test_report``.

    {"total_count": 3, "test_suites": [{"name": "rspec", "test_cases": [
        {"status": "failed", "name": "…", "classname": "…", "execution_time": 0.1,
         "system_output": "…", "stack_trace": "…"}]}]}

``status`` is success, failed, skipped or error. Each suite of a pipeline report is one job (GitLab names
the suite after the job), so a record's ``job`` is its suite's name, or the ``job`` given when the suite
has none. Tests are named ``<classname>.<name>`` as in JUnit XML, since GitLab builds this report from the
jobs' JUnit artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from bot.split.capture import Capture, make_record
from bot.split.engine import SplitStats
from bot.split.reader import SplitError

_STATUS = {"failed": "failure", "error": "error", "success": "success"}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(_text(item) for item in value)
    return str(value)


def read_gitlab_report(
    data: bytes, *, job: str | None, include_passed: bool, max_record_bytes: int, stats: SplitStats
) -> Iterator[dict[str, Any]]:
    stats.bytes += len(data)
    try:
        report = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SplitError(f"not a GitLab test report: invalid JSON ({exc})") from None
    suites = report.get("test_suites") if isinstance(report, dict) else None
    if not isinstance(suites, list):
        raise SplitError("not a GitLab test report: no 'test_suites' list")
    stats.format = "gitlab-json"
    for number, suite in enumerate(suites, start=1):
        cases = suite.get("test_cases") if isinstance(suite, dict) else None
        if not isinstance(cases, list):
            stats.warn("suite", f"test suite #{number} has no 'test_cases' list; skipped")
            continue
        suite_job = str(suite.get("name") or "") or job
        for case in cases:
            if not isinstance(case, dict):
                stats.warn("case", f"a test case of suite #{number} is not an object; skipped")
                continue
            status = _STATUS.get(str(case.get("status")))
            if status is None or (status == "success" and not include_passed):
                continue
            classname, name = str(case.get("classname") or "").strip(), str(case.get("name") or "").strip()
            test = f"{classname}.{name}" if classname and name else (name or classname or "(unnamed)")
            log, cut = "", False
            if status != "success":
                capture = Capture(max_record_bytes)
                capture.add(_text(case.get("stack_trace")))
                output = _text(case.get("system_output"))
                if output:
                    capture.add("\n[system-out]\n" + output)
                log, cut = capture.text()
            yield make_record(
                status, test, log, job=suite_job, fmt="gitlab-json", lines=None, truncated=cut,
                max_bytes=max_record_bytes,
            )  # fmt: skip
