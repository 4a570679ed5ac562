"""Infrastructure incidents, the pure part (bot/incidents.py): what makes failures "the same" across
changes, and when many of them are an incident."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.incidents import (
    Incident,
    IncidentConfig,
    Occurrence,
    issue_title,
    marker_key,
    plan,
    render_body,
    signature,
    verdict_line,
)
from bot.split import split_log
from tests.ci_logs import actions_pytest_log, cause, gitlab_pytest_log

NOW = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)
REGISTRY = (
    "npm ERR! code EAI_AGAIN\nnpm ERR! syscall getaddrinfo\nnpm ERR! errno EAI_AGAIN\n"
    "npm ERR! request to https://registry.npmjs.org/left-pad failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org\n"
    "npm ERR! A complete log of this run can be found in: /home/runner/.npm/_logs/2024-06-03T09_5{n}_00_000Z-debug-0.log\n"
    "##[error]Process completed with exit code 1.\n"
)


def failure_log(test: str, message: str, seed: int, gitlab: bool = False) -> str:
    """The log of one test's failure, as the splitter cuts it from a real-shaped job log."""
    make = gitlab_pytest_log if gitlab else actions_pytest_log
    log = make([(test, message)], ["tests/test_ok.py::test_fine"], seed=seed)
    (record,) = [r for r in split_log([log], job="tests") if r["status"] == "failure"]
    return record["log"]


def test_the_same_infrastructure_cause_has_one_signature_whatever_test_job_or_run():
    rng = random.Random(1)
    signatures = {
        signature(failure_log(test, cause("reset", rng), seed, gitlab), test)
        for seed, test in enumerate(["tests/test_pay.py::test_card", "tests/test_cart.py::test_sum", "tests/a/test_b.py::test_d"])
        for gitlab in (False, True)
    }  # fmt: skip
    (sig,) = signatures
    assert (
        sig.infrastructure and sig.cause[-1] == "ConnectionResetError: [Errno 000] Connection reset by peer"
    )
    # a job-level failure of a registry outage: numbers, paths and times differ between runs, not the cause
    jobs = {signature(REGISTRY.format(n=n), f"build ({os})") for n in range(3) for os in ("ubuntu", "macos")}
    (registry,) = jobs
    assert registry.infrastructure and "Process completed" not in "\n".join(registry.cause)
    assert registry.key != sig.key
    # GitLab's infrastructure failure reason is part of the cause
    system = signature(
        "ERROR: Job failed (system failure): prepare environment: exit code 1",
        "build",
        "runner_system_failure",
    )
    assert system.infrastructure and system.cause[0] == "job failure reason: runner_system_failure"


def test_a_test_level_cause_is_the_same_only_for_the_same_test():
    """A common assertion text in unrelated tests must never make an incident."""
    message = "AssertionError: assert 0 == 1"
    a = signature(failure_log("tests/test_a.py::test_x", message, 1), "tests/test_a.py::test_x")
    b = signature(failure_log("tests/test_b.py::test_y", message, 2), "tests/test_b.py::test_y")
    a_again = signature(
        failure_log("tests/test_a.py::test_x", "AssertionError: assert 7 == 9", 5), "tests/test_a.py::test_x"
    )
    assert not a.infrastructure and a.test == "tests/test_a.py::test_x"
    assert a.key != b.key and a.key == a_again.key  # numbers normalised: the same failure of the same test
    bugs = [
        "KeyError: 'price_user_105'",
        "KeyError: 'user_coupon_198'",
        "AttributeError: 'Cart' object has no attribute 'sum'",
    ]
    keys = {
        signature(failure_log("tests/test_a.py::test_x", bug, i), "tests/test_a.py::test_x").key
        for i, bug in enumerate(bugs)
    }
    assert len(keys) == 3 and a.key not in keys  # different failures of one test differ
    # nothing specific to match on: no signature
    assert signature("##[error]Process completed with exit code 1.\n", "build") is None
    assert signature("", "t") is None


CONFIG = IncidentConfig()


def occurrence(key: str, change: int, minutes_ago: float, test: str = "t") -> Occurrence:
    return Occurrence(key, f"#{change}", 100 + change, 1, "tests", test, NOW - timedelta(minutes=minutes_ago),
                      f"https://ci/job/{change}", f"https://forge/pull/{change}")  # fmt: skip


def test_five_changes_within_thirty_minutes_open_an_incident():
    sig = signature(REGISTRY.format(n=1), "build")
    key = sig.key
    # four changes (one of them twice): no incident yet
    four = [occurrence(key, n, 20 - n) for n in (1, 2, 3, 4)] + [occurrence(key, 4, 1)]
    assert plan({key: sig}, {key: four}, {}, CONFIG, NOW).actions == []
    # a fifth change, but the first one is more than 30 minutes old: still not
    spread = [occurrence(key, 1, 45), *four[1:], occurrence(key, 5, 0)]
    assert plan({key: sig}, {key: spread}, {}, CONFIG, NOW).actions == []
    five = [*four, occurrence(key, 5, 0)]
    result = plan({key: sig}, {key: five}, {}, CONFIG, NOW)
    (action,) = result.actions
    assert (action.kind, action.reason) == ("open", "5 changes failed this way within 30 minutes")
    incident = result.open[key]
    assert (incident.changes, incident.occurrences, incident.opened_at) == (5, 6, NOW - timedelta(minutes=19))
    assert [o.change for o in action.occurrences][:2] == ["#5", "#4"]  # newest first
    # configurable
    three = IncidentConfig(min_changes=3, window_minutes=10)
    assert plan({key: sig}, {key: [occurrence(key, n, n) for n in (1, 2, 3)]}, {}, three, NOW).open


def test_an_open_incident_takes_every_new_occurrence_and_closes_after_the_quiet_period():
    sig = signature(REGISTRY.format(n=1), "build")
    key = sig.key
    opened = Incident(key, "open", sig.cause, None, 7, "https://forge/issues/7", NOW - timedelta(hours=2),
                      NOW - timedelta(minutes=50), None, 5, 6)  # fmt: skip
    # one more change, long after the window: it joins the open incident
    late = [occurrence(key, 9, 0), *(occurrence(key, n, 100 + n) for n in range(1, 6))]
    result = plan({key: sig}, {key: late}, {key: opened}, CONFIG, NOW)
    (update,) = result.actions
    assert update.kind == "update" and result.open[key].changes == 6 and result.open[key].number == 7
    assert result.open[key].last_seen == NOW
    # nothing new for the quiet period (60 minutes): closed, whatever run comes by
    other = signature("E   KeyError: 'cart_total_17'", "tests/test_cart.py::test_sum")
    quiet = plan({other.key: other}, {}, {key: opened}, IncidentConfig(quiet_minutes=45), NOW)
    (close,) = quiet.actions
    assert (close.kind, close.incident.state, close.incident.closed_at) == ("close", "closed", NOW)
    assert "for 45 minutes (the last at 2024-06-03 09:10 UTC)" in close.comment
    assert plan({}, {}, {key: opened}, CONFIG, NOW).actions == []  # 50 minutes: not quiet yet
    # it happens again later: the same issue is reopened
    closed = Incident(
        key, "closed", sig.cause, None, 7, "https://forge/issues/7", closed_at=NOW - timedelta(days=2)
    )
    again = plan(
        {key: sig}, {key: [occurrence(key, n, n) for n in range(10, 15)]}, {key: closed}, CONFIG, NOW
    )
    (reopen,) = again.actions
    assert (reopen.kind, reopen.incident.number, reopen.comment) == (
        "open",
        7,
        "It is happening again: reopening.",
    )


def test_the_issue_says_what_failed_where_and_what_flakebot_does():
    sig = signature(REGISTRY.format(n=1), "build (ubuntu)")
    occurrences = [occurrence(sig.key, n, n, test="build (ubuntu)") for n in range(1, 7)]
    result = plan({sig.key: sig}, {sig.key: occurrences}, {}, CONFIG, NOW)
    incident = result.open[sig.key]
    body = render_body(incident, result.actions[0].occurrences, CONFIG)
    assert marker_key(body) == sig.key and body.startswith("<!-- flakebot:incident sig=")
    assert (
        "**Open.** 6 changes (pull/merge requests, or commits without one) failed the same way since 2024-06-03 09:54 UTC"
        in body
    )
    assert "registry.npmjs.org" in body and "getaddrinfo EAI_AGAIN" in body
    assert (
        "| 2024-06-03 09:59 | [\\#1](<https://forge/pull/1>) | [`tests`](<https://ci/job/1>) | `build (ubuntu)` |"
        in body
    )
    assert "request to https://registry.npmjs.org/left-pad failed" in body  # one log as it was
    assert (
        "**not re-run** automatically" in body
        and "**not counted against the tests' flakiness scores**" in body
    )
    assert (
        issue_title(incident).startswith("Infrastructure incident: npm ERR! request to ")
        and len(issue_title(incident)) <= 120
    )
    assert verdict_line(incident).startswith(
        "infrastructure incident: 6 changes failed the same way since 09:54 UTC"
    )


def test_settings_are_checked():
    with pytest.raises(ValueError, match="min_changes"):
        IncidentConfig(min_changes=1)
    with pytest.raises(ValueError, match="quiet_minutes"):
        IncidentConfig(quiet_minutes=0)


def test_an_incident_is_a_burst_not_a_failure_that_is_always_around():
    """In a busy repository a chronically flaky test fails in five changes of half an hour every day:
    its usual rate, not an incident. A known flaky test's own failures never open one."""
    sig = signature(failure_log("tests/test_a.py::test_x", "TimeoutError: timed out waiting for the page", 1),
                    "tests/test_a.py::test_x")  # fmt: skip
    key = sig.key
    now_five = [occurrence(key, n, n) for n in range(1, 6)]
    # the week before: once a day (7 changes): five now is a burst
    rare = [occurrence(key, 100 + d, 60 * 24 * d) for d in range(1, 8)]
    assert plan({key: sig}, {key: now_five + rare}, {}, CONFIG, NOW).open
    # the week before: 5 changes in every half hour, as now: its usual rate
    steady = [occurrence(key, 1000 + n, 30 + 3 * n) for n in range(3000)]
    assert not plan({key: sig}, {key: now_five + steady}, {}, CONFIG, NOW).open
    # a test known to be flaky: its failures are its own (quarantine's business), not an incident
    assert not plan(
        {key: sig}, {key: now_five}, {}, CONFIG, NOW, flaky_tests={"tests/test_a.py::test_x"}
    ).open
    # ... but an infrastructure cause hitting it is one
    reset = signature(REGISTRY.format(n=1), "tests/test_a.py::test_x")
    occurrences = [occurrence(reset.key, n, n) for n in range(1, 6)]
    assert plan(
        {reset.key: reset}, {reset.key: occurrences}, {}, CONFIG, NOW, flaky_tests={"tests/test_a.py::test_x"}
    ).open


def test_an_occurrence_is_dated_by_when_its_job_failed_not_when_flakebot_got_to_it():
    """A backlog of deliveries (the service was down for an hour) must not look like a burst."""
    from bot.forge.base import Job
    from bot.run.incidents import _finished

    job = Job(1, "tests", "failure", "https://ci/job/1", completed_at="2024-06-03T08:30:00Z")
    assert _finished(job, NOW) == datetime(2024, 6, 3, 8, 30, tzinfo=UTC)
    assert (
        _finished(Job(2, "tests", "failure", "", completed_at="2024-06-03T11:00:00Z"), NOW) == NOW
    )  # clock skew
    assert _finished(Job(3, "tests", "failure", "", completed_at="yesterday"), NOW) == NOW
    assert _finished(None, NOW) == NOW
