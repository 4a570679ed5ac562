"""The labels a backfill infers from what happened next (bot/weak_labels.py), and the pace of its reading
(bot/forge/pace.py): pure, without network."""

from __future__ import annotations

from bot.forge.pace import Pace
from bot.store import HistoryRun
from bot.weak_labels import FAILED_EVERY_LATER, KEPT_FAILING, PASSED_LATER, infer


def row(run: int, status: str, revision: str, *, attempt: int = 1, branch: str = "feature") -> HistoryRun:
    return HistoryRun(test="t", status=status, run_id=run, attempt=attempt, job="tests", revision=revision,
                      branch=branch)  # fmt: skip


def labels(failures, history, default="main"):
    return [(x.label, x.rule) if x else None for x in infer(failures, history, default)]


def test_a_failure_that_passed_in_a_later_attempt_of_the_same_commit_is_flake_evidence():
    failed, passed = row(1, "failed", "a"), row(1, "passed", "a", attempt=2)
    assert labels([failed], [failed, passed]) == [("flake", PASSED_LATER)]
    # a later run on the same commit counts too; a pass on another commit does not
    other_run = row(2, "passed", "a")
    assert labels([failed], [failed, other_run]) == [("flake", PASSED_LATER)]
    assert labels([failed], [failed, row(2, "passed", "b")]) == [None]


def test_a_failure_that_failed_again_in_every_later_attempt_is_real():
    first, second, third = (
        row(1, "failed", "a"),
        row(1, "error", "a", attempt=2),
        row(1, "failed", "a", attempt=3),
    )
    assert labels([first, second], [first, second, third]) == [("real", FAILED_EVERY_LATER)] * 2
    # the last attempt has no later one: nothing is known about it from its own commit
    assert labels([third], [first, second, third]) == [None]
    # one later pass among failures: flaky after all
    assert labels([first], [first, second, row(1, "passed", "a", attempt=3)]) == [("flake", PASSED_LATER)]


def test_an_earlier_pass_and_skipped_runs_say_nothing():
    passed, failed = row(1, "passed", "a"), row(1, "failed", "a", attempt=2)
    assert labels([failed], [passed, failed]) == [None]
    skipped = row(1, "skipped", "a", attempt=3)
    assert labels([failed], [passed, failed, skipped]) == [None]


def test_on_the_default_branch_a_failure_that_kept_failing_until_a_later_commit_passed_is_real():
    history = [row(1, "passed", "c0", branch="main"), row(2, "failed", "c1", branch="main"),
               row(3, "failed", "x", branch="feature"), row(4, "failed", "c2", branch="main"),
               row(5, "failed", "c3", branch="main"), row(6, "passed", "c4", branch="main")]  # fmt: skip
    failures = [r for r in history if r.status == "failed"]
    assert labels(failures, history) == [
        ("real", KEPT_FAILING),
        None,  # on a feature branch: no rule applies
        ("real", KEPT_FAILING),
        None,  # the next commit passed at once: a flake or a quick fix, no label
    ]


def test_on_the_default_branch_a_failure_not_followed_by_a_pass_or_passed_on_its_commit_stays_unlabelled():
    still = [row(1, "failed", "c1", branch="main"), row(2, "failed", "c2", branch="main")]
    assert labels(still[:1], still) == [None]  # still failing when the window ends
    retried = [row(1, "failed", "c1", branch="main"), row(1, "passed", "c1", attempt=2, branch="main"),
               row(2, "failed", "c2", branch="main"), row(3, "passed", "c3", branch="main")]  # fmt: skip
    assert labels(retried[:1], retried) == [("flake", PASSED_LATER)]
    # c1 passed on a retry, so it is no failing commit in c2's... and c2's own streak ends at once
    assert labels([retried[2]], retried) == [None]


def test_the_pace_keeps_a_reserve_of_the_rate_limit_and_slows_down_after_a_limit():
    pace = Pace(reserve=100)
    pace.note(200, {"x-ratelimit-remaining": "4000", "x-ratelimit-reset": "1000"}, now=500)
    assert pace.wait_before(500) == 0
    pace.note(200, {"X-RateLimit-Remaining": "99", "X-RateLimit-Reset": "1000"}, now=510)
    assert pace.wait_before(510) == 491  # until the reset, and a second
    pace.waiting(491)
    assert pace.wait_before(1001) == 0 and pace.waited == 491
    # a secondary limit (Retry-After) doubles the pause, answers that are not limits fade it
    pace.note(403, {"Retry-After": "60", "x-ratelimit-remaining": "3000"}, now=1002)
    assert pace.limited == 1 and pace.wait_before(1002) == 1.0
    pace.note(429, {"Retry-After": "1"}, now=1003)
    assert pace.wait_before(1003) == 2.0
    for _ in range(200):
        pace.note(200, {}, now=1004)
    assert pace.wait_before(1004) == 0
    # GitLab's headers: RateLimit-Remaining and an epoch RateLimit-Reset
    gitlab = Pace(reserve=10)
    gitlab.note(200, {"RateLimit-Remaining": "3", "RateLimit-Reset": "2000000000"}, now=1999999990)
    assert gitlab.wait_before(1999999990) == 11
