"""The one status vocabulary: what a test result, a row of a test's history and a forge's job say.

Two spellings of a test's outcome exist for good reasons and are defined here only:

* a **test result** (the splitters' records, ``bot/records.py`` JSONL, Cockpit's format):
  ``failure | success | error | skip``;
* a **history row** (the store, ``bot/scoring.py``): ``passed | failed | error | skipped``.

:func:`history_status` is the one translation between them (it also takes JUnit's and GitLab's
spellings). A forge's *job or run conclusion* is a third, open vocabulary (GitHub conclusions, GitLab
statuses): :data:`FAILED_CONCLUSIONS` says which of its words mean "failed".
"""

from __future__ import annotations

from typing import Literal

TestStatus = Literal["failure", "success", "error", "skip"]
TEST_STATUSES: tuple[TestStatus, ...] = ("failure", "success", "error", "skip")
FAILED_TEST_STATUSES: tuple[TestStatus, ...] = ("failure", "error")

HistoryStatus = Literal["passed", "failed", "error", "skipped"]
HISTORY_STATUSES: tuple[HistoryStatus, ...] = ("passed", "failed", "error", "skipped")
FAILED_HISTORY_STATUSES: tuple[HistoryStatus, ...] = ("failed", "error")

# Other spellings of the history's four statuses (flakebot's test results, JUnit, GitLab test reports).
STATUS_ALIASES: dict[str, HistoryStatus] = {
    "pass": "passed",
    "success": "passed",
    "fail": "failed",
    "failure": "failed",
    "skip": "skipped",
}

# Conclusions (GitHub) / statuses (GitLab) of a job or a run that mean "this failed".
FAILED_CONCLUSIONS = frozenset({"failure", "failed", "timed_out", "startup_failure"})
SUCCESS_CONCLUSION = "success"  # the one word both forges use for a job that passed


def history_status(status: str) -> HistoryStatus:
    """The history's word for a test result's status (or any alias of it)."""
    found = STATUS_ALIASES.get(status, status)
    if found not in HISTORY_STATUSES:
        raise ValueError(f"status must be one of {'|'.join(HISTORY_STATUSES)}, got {status!r}")
    return found  # type: ignore[return-value]
