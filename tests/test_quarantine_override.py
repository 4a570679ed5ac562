"""A maintainer's quarantine and unquarantine hold against the automatic lifecycle (pure planner)."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.forge.base import Issue
from bot.quarantine import (
    Candidate,
    FailureLink,
    QuarantineConfig,
    issue_title,
    plan_override,
    plan_quarantine,
)
from bot.scoring import Run, score_runs
from tests.patterns import PATTERNS

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
CONFIG = QuarantineConfig(bot_logins=frozenset({"flakebot[bot]"}), max_open=1)
TEST = "tests/test_a.py::test_login"


def flaky():
    score = score_runs(PATTERNS["50% alternating"](random.Random(1)))
    assert score.recommendation.action == "quarantine"
    return score


def stable():
    runs = [Run("failed", revision="r0")] + [Run("passed", revision=f"r{i}") for i in range(1, 60)]
    score = score_runs(runs)
    assert score.runs_since_failure >= CONFIG.stable_runs_to_close
    return score


LINK = FailureLink("https://ci.example/job/1", "2024-05-20T10:00:00Z", "a" * 40, "boom")


def issue(number, state="open", body=None, closed_by=None, closed_days_ago=1, test=TEST):
    closed_at = (NOW - timedelta(days=closed_days_ago)).isoformat() if state == "closed" else None
    return Issue(number, issue_title(test), state, f"https://x/issues/{number}", [CONFIG.label],
                 body if body is not None else f"list: {LINK.url}", closed_by, closed_at)  # fmt: skip


def test_the_lifecycle_never_closes_a_manual_quarantine():
    auto = Candidate(TEST, stable(), [LINK])
    assert [a.kind for a in plan_quarantine([auto], [issue(4)], CONFIG, NOW)] == ["close"]
    manual = Candidate(TEST, stable(), [LINK], override="quarantine", override_by="alice",
                       expires_at="2024-06-19T10:00:00Z")  # 30 days after its last failure, as stored  # fmt: skip
    (action,) = plan_quarantine([manual], [issue(4)], CONFIG, NOW)
    assert action.kind == "skip" and action.number == 4


def test_the_lifecycle_never_reopens_a_manual_unquarantine():
    auto = Candidate(TEST, flaky(), [LINK])
    closed = issue(4, "closed", closed_by="flakebot[bot]", closed_days_ago=1)
    assert [a.kind for a in plan_quarantine([auto], [closed], CONFIG, NOW)] == ["open"]
    manual = Candidate(TEST, flaky(), [LINK], override="unquarantine", override_by="bob")
    (action,) = plan_quarantine([manual], [closed], CONFIG, NOW)
    assert action.kind == "skip" and "unquarantined by bob" in action.reason
    assert [a.kind for a in plan_quarantine([manual], [], CONFIG, NOW)] == ["skip"]


def test_quarantine_by_hand_opens_reopens_or_updates_ignoring_cap_and_cool_down():
    candidate = Candidate(TEST, stable(), [LINK], override="quarantine", override_by="alice")
    (opened,) = plan_override(candidate, [issue(9, body="no marker", test="tests/other.py::test_x")], CONFIG)
    # the issue of another test (same label) does not count
    assert opened.kind == "open"
    (opened,) = plan_override(candidate, [], CONFIG)
    assert opened.kind == "open" and opened.number is None and opened.labels == ("flaky-test",)
    assert opened.title == issue_title(TEST)
    assert "Quarantined by alice: flakebot updates this issue" in opened.body
    assert "closes it once the test has passed" not in opened.body
    closed_by_human = issue(4, "closed", closed_by="carol", closed_days_ago=1)  # within the cool-down
    (reopened,) = plan_override(candidate, [closed_by_human], CONFIG)
    assert reopened.kind == "open" and reopened.number == 4 and "Quarantined by alice" in reopened.comment
    (updated,) = plan_override(candidate, [issue(5, body=opened.body)], CONFIG)
    assert updated.kind == "update" and updated.number == 5 and "`/flake unquarantine" in updated.comment


def test_unquarantine_by_hand_closes_every_open_issue_of_the_test():
    candidate = Candidate(TEST, flaky(), [LINK], override="unquarantine", override_by="bob")
    actions = plan_override(candidate, [issue(4), issue(7), issue(2, "closed")], CONFIG)
    assert [(a.kind, a.number) for a in actions] == [("close", 4), ("close", 7)]
    assert "Unquarantined by bob" in actions[0].comment
    assert [a.kind for a in plan_override(candidate, [], CONFIG)] == ["skip"]
    with pytest.raises(ValueError, match="not an override"):
        plan_override(Candidate(TEST, flaky()), [], CONFIG)


def test_a_maintainers_quarantine_covers_every_job_and_expires_unless_renewed():
    """Issue 13: overrides used to last for ever; now they last ``expire_days`` after their last
    evidence (the command, or a failure), like the lifecycle's own quarantines."""
    from dataclasses import replace

    from bot.quarantine import override_expired

    given = (NOW - timedelta(days=5)).isoformat()
    candidate = Candidate(
        TEST, stable(), [LINK], override="quarantine", override_by="alice", renewed_at=given
    )
    (opened,) = plan_override(candidate, [], CONFIG)
    assert opened.scope is None and opened.expires_at == NOW + timedelta(days=25)
    assert "| Quarantined in | every job |" in opened.body
    assert "Quarantined by alice in every job" not in (
        opened.comment or ""
    )  # a new issue says it in its body
    (updated,) = plan_override(candidate, [issue(5)], CONFIG)
    assert "until 2024-06-26" in updated.comment and "renews it" in updated.comment
    stored = replace(candidate, expires_at=opened.expires_at.isoformat())
    (kept,) = plan_quarantine([stored], [issue(5)], CONFIG, NOW + timedelta(days=24))
    assert kept.kind == "skip"
    (expired,) = plan_quarantine([stored], [issue(5)], CONFIG, NOW + timedelta(days=25))
    assert (expired.kind, expired.expired) == ("close", True)
    assert expired.comment.startswith(
        "The quarantine by alice expired: no failure and no renewal since 2024-05-27"
    )
    # the command again renews it
    again = replace(stored, renewed_at=(NOW + timedelta(days=24)).isoformat())
    (renewed,) = plan_quarantine([again], [issue(5)], CONFIG, NOW + timedelta(days=25))
    assert renewed.kind == "update" and renewed.expires_at == NOW + timedelta(days=54)
    # an unquarantine lasts as long, then the lifecycle may quarantine the test again
    assert not override_expired(given, CONFIG, NOW + timedelta(days=24))
    assert override_expired(given, CONFIG, NOW + timedelta(days=25))
    assert not override_expired(given, replace(CONFIG, expire_days=0), NOW + timedelta(days=999))
    (unq,) = plan_override(replace(candidate, override="unquarantine", override_by="bob"), [issue(5)], CONFIG)
    assert "for 30 days (`/flake unquarantine` again renews it)" in unq.comment
