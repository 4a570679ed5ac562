import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.forge.base import Issue
from bot.quarantine import (
    BODY_MAX,
    TITLE_MAX,
    Candidate,
    FailureLink,
    QuarantineConfig,
    issue_title,
    marker,
    marker_id,
    plan_quarantine,
    quarantine_id,
    render_body,
)
from bot.scoring import Run, score_runs
from tests.patterns import PATTERNS

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
CONFIG = QuarantineConfig(bot_logins=frozenset({"flakebot[bot]"}))


def flaky_score(seed: int = 0):
    score = score_runs(PATTERNS["50% alternating"](random.Random(seed)))
    assert score.recommendation.action == "quarantine"
    return score


def links(test: str, n: int = 3, start: int = 0) -> list[FailureLink]:
    return [
        FailureLink(
            f"https://github.com/o/r/actions/runs/{1000 + i}/job/{i}",
            f"2024-05-{1 + i % 28:02d}T10:00:00Z",
            f"{i:040x}",
            f"AssertionError in {test}: expected 3 items, got {i}",
        )
        for i in range(start + n - 1, start - 1, -1)
    ]


def candidate(test: str, score=None, failures=None) -> Candidate:
    """A test as the lifecycle sees it once quarantined at NOW: in its one job, expiring 30 days later."""
    return Candidate(test, score or flaky_score(), links(test) if failures is None else failures, scope=("",),
                     renewed_at=NOW.isoformat(), expires_at=(NOW + timedelta(days=30)).isoformat())  # fmt: skip


def issue_from(action, number: int, state: str = "open", **changes) -> Issue:
    issue = Issue(
        number, action.title, state, f"https://github.com/o/r/issues/{number}", [CONFIG.label], action.body
    )
    return dataclasses.replace(issue, **changes)


def test_opens_one_labelled_issue_per_test_to_quarantine():
    stable = score_runs([Run("passed", revision=f"r{i}") for i in range(50)])
    actions = plan_quarantine(
        [candidate("tests/test_a.py::test_login"), candidate("tests/test_b.py::test_ok", stable)],
        [],
        CONFIG,
        NOW,
    )
    assert [(a.kind, a.test) for a in actions] == [("open", "tests/test_a.py::test_login")]
    opened = actions[0]
    assert opened.title == "Flaky test: tests/test_a.py::test_login"
    assert opened.labels == ("flaky-test",) and opened.number is None
    body = opened.body
    assert body.startswith(marker("tests/test_a.py::test_login"))
    assert marker_id(body) == quarantine_id("tests/test_a.py::test_login")
    assert "| Flakiness score | 0.75 (confidence 0.93) |" in body
    assert "| intermittency | 1.00 | 0.33 |" in body and "| rerun pass rate | not measured | 0.28 |" in body
    assert "(<https://github.com/o/r/actions/runs/1002/job/2>)" in body
    assert "| Passing streak | 0 runs since the last failure (30 close this issue) |" in body


def test_planning_again_never_duplicates_and_updates_only_on_new_failures():
    test = "tests/test_a.py::test_login"
    first = plan_quarantine([candidate(test)], [], CONFIG, NOW)[0]
    existing = issue_from(first, 12)
    again = plan_quarantine([candidate(test)], [existing], CONFIG, NOW)
    assert [(a.kind, a.number, a.reason) for a in again] == [("skip", 12, "no new failures")]
    newer = candidate(test, failures=links(test, 3, start=1))  # one failure the issue does not list
    update = plan_quarantine([newer], [existing], CONFIG, NOW)
    assert [(a.kind, a.number, a.reason) for a in update] == [("update", 12, "1 new failure(s)")]
    assert "runs/1003/job/3" in update[0].body
    # a human renamed the issue: the marker still finds it
    renamed = dataclasses.replace(existing, title="login test is flaky, see logs")
    assert plan_quarantine([candidate(test)], [renamed], CONFIG, NOW)[0].kind == "skip"
    # a marker-less issue with the deterministic title is found too
    by_title = dataclasses.replace(existing, body="written by hand")
    assert plan_quarantine([newer], [by_title], CONFIG, NOW)[0].kind == "update"


def test_closes_once_the_test_has_passed_enough_runs_in_a_row():
    test = "tests/test_a.py::test_login"
    opened = issue_from(plan_quarantine([candidate(test)], [], CONFIG, NOW)[0], 7)
    runs = PATTERNS["50% alternating"](random.Random(0)) + [
        Run("passed", revision=f"p{i}") for i in range(30)
    ]
    healed = score_runs(runs)
    assert healed.runs_since_failure == 30
    actions = plan_quarantine([candidate(test, healed)], [opened], CONFIG, NOW)
    assert [(a.kind, a.number) for a in actions] == [("close", 7)]
    assert "passed 30 runs in a row" in actions[0].comment
    not_yet = score_runs(runs[:-1])
    assert plan_quarantine([candidate(test, not_yet)], [opened], CONFIG, NOW)[0].kind == "skip"


def test_a_human_closure_starts_a_cool_down_a_bot_closure_does_not():
    test = "tests/test_a.py::test_login"
    config = dataclasses.replace(CONFIG, expire_days=0)  # no expiry: the cool-down alone
    opened = plan_quarantine([candidate(test)], [], config, NOW)[0]
    closed_at = (NOW - timedelta(days=5)).isoformat()
    by_human = issue_from(opened, 3, "closed", closed_by="alice", closed_at=closed_at)
    [action] = plan_quarantine([candidate(test)], [by_human], config, NOW)
    assert (action.kind, action.number) == ("skip", 3)
    assert action.reason == "closed by @alice on 2024-05-27; cool-down until 2024-06-17"
    later = plan_quarantine([candidate(test)], [by_human], config, NOW + timedelta(days=17))
    assert [(a.kind, a.number) for a in later] == [("open", 3)]  # reopened, not filed again
    by_bot = dataclasses.replace(by_human, closed_by="flakebot[bot]")
    [reopen] = plan_quarantine([candidate(test)], [by_bot], config, NOW)
    assert (reopen.kind, reopen.number, reopen.comment) == ("open", 3, "The test is flaky again: reopening.")
    unknown_time = dataclasses.replace(by_human, closed_at=None, closed_by=None)
    [wait] = plan_quarantine([candidate(test)], [unknown_time], config, NOW + timedelta(days=365))
    assert wait.kind == "skip" and "unknown time" in wait.reason


def test_the_cap_counts_open_issues_and_the_most_flaky_go_first():
    # five open issues of ours for other tests, one unrelated issue with the label
    others = [
        issue_from(plan_quarantine([candidate(f"tests/t.py::old{i}")], [], CONFIG, NOW)[0], 100 + i)
        for i in range(5)
    ]
    unrelated = Issue(99, "Crash on start", "open", "https://github.com/o/r/issues/99", ["flaky-test"], "")
    scores = {f"tests/t.py::new{i}": flaky_score() for i in range(4)}
    weaker = score_runs([*PATTERNS["50% alternating"](random.Random(0))[:-6], *[Run("passed")] * 6])
    assert weaker.recommendation.action == "quarantine" and weaker.score < flaky_score().score
    scores["tests/t.py::a_weaker"] = weaker  # first by name, last by score
    candidates = [candidate(t, s) for t, s in scores.items()]
    actions = plan_quarantine(candidates, [*others, unrelated], CONFIG, NOW)
    opened = [a.test for a in actions if a.kind == "open"]
    skipped = [a for a in actions if a.kind == "skip"]
    assert opened == ["tests/t.py::new0", "tests/t.py::new1"]
    assert {a.test for a in skipped} == {"tests/t.py::new2", "tests/t.py::new3", "tests/t.py::a_weaker"}
    assert all(a.reason == "cap reached: 7 quarantine issues open" for a in skipped)
    # closing a healed test frees its slot in the same plan
    healed = score_runs([Run("failed", revision="x"), *(Run("passed", revision=f"h{i}") for i in range(40))])
    freed = plan_quarantine(
        [candidate("tests/t.py::old0", healed), *candidates], [*others, unrelated], CONFIG, NOW
    )
    assert [a.kind for a in freed].count("close") == 1 and [a.kind for a in freed].count("open") == 3


def test_duplicate_open_issues_are_closed():
    test = "tests/test_a.py::test_login"
    opened = plan_quarantine([candidate(test)], [], CONFIG, NOW)[0]
    actions = plan_quarantine([candidate(test)], [issue_from(opened, 9), issue_from(opened, 4)], CONFIG, NOW)
    assert [(a.kind, a.number) for a in actions] == [("close", 9), ("skip", 4)]
    assert actions[0].comment == "Duplicate of #4."


def test_long_names_get_a_short_deterministic_title():
    head, tail = "tests/integration/" + "deep/" * 40, "::TestX::test_y[param-" + "9" * 200 + "]"
    a, b = head + "a" + tail, head + "b" + tail
    assert len(issue_title(a)) <= TITLE_MAX and issue_title(a) == issue_title(a)
    assert issue_title(a) != issue_title(b)
    assert issue_title(a).startswith("Flaky test: tests/integration/deep/")
    assert issue_title("tests/x.py::test_y\nwith newline") == "Flaky test: tests/x.py::test_y with newline"
    assert "-->" not in marker("weird --> name")[4:-3]


def test_the_body_fits_githubs_limit_whatever_the_input():
    test = "tests/x.py::test_" + "z" * 200_000
    huge = "m" * 100_000
    failures = [FailureLink(f"https://ci/{i}", None, None, huge) for i in range(10_000)]
    body = render_body(Candidate(test, flaky_score(), failures), CONFIG)
    assert len(body) <= BODY_MAX
    assert marker_id(body) == quarantine_id(test)
    assert "… and 9990 older failure(s)." in body


def test_the_body_masks_secrets_neutralises_mentions_and_keeps_tables_intact(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "s3cr3t-token-value")
    failures = [
        FailureLink(
            "https://ci/1",
            "2024-05-01",
            "abc",
            "login as @admin failed | token s3cr3t-token-value\nghp_" + "a" * 36,
        ),
        FailureLink("javascript:alert(1)", "2024-05-02", None, "x"),
    ]
    body = render_body(Candidate("tests/x.py::test_y", flaky_score(), failures), CONFIG)
    assert "s3cr3t-token-value" not in body and "ghp_" not in body
    assert "@\u200badmin" in body and "@admin" not in body
    assert "failed \\| token" in body
    assert "javascript:" not in body


def test_config_is_validated():
    with pytest.raises(ValueError, match="max_open"):
        QuarantineConfig(max_open=-1)
    with pytest.raises(ValueError, match="label"):
        QuarantineConfig(label=" ")


def test_a_test_stable_long_enough_to_close_is_neither_opened_nor_reopened():
    """Closing needs ``stable_runs_to_close`` passes in a row, and the score can stay high for a while
    after that: reopening then would flap open/closed with every run. Only a new failure reopens."""
    test = "tests/test_a.py::test_login"
    config = dataclasses.replace(CONFIG, stable_runs_to_close=3)
    runs = PATTERNS["50% alternating"](random.Random(0)) + [Run("passed", revision=f"p{i}") for i in range(3)]
    healed = score_runs(runs)
    assert healed.recommendation.action == "quarantine" and healed.runs_since_failure == 3
    closed = issue_from(plan_quarantine([candidate(test)], [], config, NOW)[0], 7, "closed")
    closed = dataclasses.replace(closed, closed_by="flakebot[bot]", closed_at=NOW.isoformat())
    for issues in ([closed], []):
        [action] = plan_quarantine([candidate(test, healed)], issues, config, NOW)
        assert (action.kind, action.reason) == ("skip", "stable: passed 3 runs in a row")
    failed_again = score_runs([*runs, Run("failed", revision="f")])
    [reopen] = plan_quarantine([candidate(test, failed_again)], [closed], config, NOW)
    assert (reopen.kind, reopen.number) == ("open", 7)


# --- scope: the jobs a test is quarantined in (issue 13) ------------------------------------------

UBUNTU, WINDOWS = "tests (ubuntu)", "tests (windows)"


def stable_score(streak: int = 40):
    return score_runs(
        [Run("failed", revision="x"), *(Run("passed", revision=f"s{i}") for i in range(streak))]
    )


def healed_score(passes: int):
    return score_runs(
        PATTERNS["50% alternating"](random.Random(0))
        + [Run("passed", revision=f"p{i}") for i in range(passes)]
    )


def in_jobs(test, jobs, stored=None, failures=None):
    """A test with its score in each job; ``stored``: the action that last quarantined it."""
    flakiest = max(jobs.values(), key=lambda s: s.score)
    base = Candidate(test, flakiest, links(test) if failures is None else failures, jobs=jobs)
    if stored is None:
        return base
    return dataclasses.replace(base, scope=stored.scope, renewed_at=NOW.isoformat(),
                               expires_at=stored.expires_at.isoformat() if stored.expires_at else None)  # fmt: skip


def test_a_test_flaky_in_one_job_is_quarantined_in_that_job_only():
    test = "tests/test_net.py::test_dns"
    config = dataclasses.replace(CONFIG, stable_runs_to_close=3)
    monitor = score_runs(
        [Run("passed", revision=f"m{i}") for i in range(30)] + [Run("failed", revision="mf")]
    )
    assert monitor.recommendation.action != "quarantine" and monitor.runs_since_failure == 0
    [opened] = plan_quarantine([in_jobs(test, {UBUNTU: monitor, WINDOWS: flaky_score()})], [], config, NOW)
    assert (opened.kind, opened.scope) == ("open", (WINDOWS,))  # ubuntu failed once: not flaky there
    assert f"| Quarantined in | `{WINDOWS}` (it runs as usual in its other jobs) |" in opened.body
    assert f"| `{WINDOWS}` | {flaky_score().score:.2f} | quarantine | 0 | yes |" in opened.body
    assert f"| `{UBUNTU}` | {monitor.score:.2f} | monitor | 0 | no |" in opened.body
    issue = issue_from(opened, 5)
    # nothing new: left alone; ubuntu turns flaky too: it joins the scope
    same = in_jobs(test, {UBUNTU: monitor, WINDOWS: flaky_score()}, opened)
    assert [(a.kind, a.reason) for a in plan_quarantine([same], [issue], config, NOW)] == [
        ("skip", "no new failures")
    ]
    [both] = plan_quarantine(
        [in_jobs(test, {UBUNTU: flaky_score(1), WINDOWS: flaky_score()}, opened)], [issue], config, NOW
    )
    assert (both.kind, both.scope, both.reason) == (
        "update",
        (UBUNTU, WINDOWS),
        f"quarantined in {UBUNTU}, {WINDOWS}",
    )
    # windows stable for stable_runs_to_close runs: it leaves; ubuntu keeps the issue open
    [one] = plan_quarantine(
        [in_jobs(test, {UBUNTU: flaky_score(1), WINDOWS: healed_score(3)}, both)], [issue], config, NOW
    )
    assert (one.kind, one.scope) == ("update", (UBUNTU,))
    # a job leaves only by being stable: a score that dips under the threshold keeps it in
    wavering = healed_score(2)
    [kept] = plan_quarantine(
        [in_jobs(test, {UBUNTU: wavering, WINDOWS: healed_score(3)}, one)], [issue], config, NOW
    )
    assert (kept.kind, kept.scope) == ("skip", (UBUNTU,))
    # stable everywhere it was quarantined: closed
    [closed] = plan_quarantine(
        [in_jobs(test, {UBUNTU: healed_score(4), WINDOWS: healed_score(9)}, one)], [issue], config, NOW
    )
    assert (closed.kind, closed.reason) == (
        "close",
        "passed 4 runs in a row in every job it was quarantined in",
    )


def test_an_issue_from_before_scopes_keeps_every_job_that_is_not_stable():
    """Existing issues keep working: an issue the store knows without a scope covers every job, each
    leaving once stable there (the old rule: closed once stable in every job)."""
    test = "tests/test_net.py::test_dns"
    legacy = dataclasses.replace(
        in_jobs(test, {UBUNTU: stable_score(), WINDOWS: healed_score(5)}), scope=None
    )
    opened = issue_from(plan_quarantine([in_jobs(test, {WINDOWS: flaky_score()})], [], CONFIG, NOW)[0], 3)
    [action] = plan_quarantine([legacy], [opened], CONFIG, NOW)
    assert (action.kind, action.scope) == ("update", (WINDOWS,))  # rewritten once, with its scope


# --- expiry ---------------------------------------------------------------------------------------------


def test_a_quarantine_expires_without_new_evidence_and_a_failure_renews_it():
    test = "tests/test_net.py::test_dns"
    [opened] = plan_quarantine([in_jobs(test, {WINDOWS: flaky_score()})], [], CONFIG, NOW)
    assert opened.expires_at == NOW + timedelta(days=30)  # dated from its start: the failures are older
    assert (
        "| Expires | 2024-07-01, unless it fails again there (each failure renews it for 30 days) |"
        in opened.body
    )
    assert (
        "The quarantine expires on 2024-07-01, 30 days after its last failure in a quarantined job"
        in opened.body
    )
    issue = issue_from(opened, 8)
    quarantined = in_jobs(test, {WINDOWS: flaky_score()}, opened)
    # a failure in windows renews it; one in a job it is not quarantined in does not
    fresh = FailureLink("https://ci/job/9", "2024-06-20T00:00:00Z", "f" * 40, "boom", job=WINDOWS)
    other = FailureLink("https://ci/job/10", "2024-06-25T00:00:00Z", "e" * 40, "boom", job=UBUNTU)
    renewed = dataclasses.replace(quarantined, failures=[fresh, *quarantined.failures])
    [update] = plan_quarantine([renewed], [issue], CONFIG, NOW + timedelta(days=20))
    assert update.kind == "update" and update.expires_at == datetime(2024, 7, 20, tzinfo=UTC)
    assert update.reason == "1 new failure(s); expires 2024-07-20" and "| Expires | 2024-07-20" in update.body
    elsewhere = dataclasses.replace(quarantined, failures=[other, *quarantined.failures])
    [expired] = plan_quarantine([elsewhere], [issue], CONFIG, NOW + timedelta(days=30))
    assert (expired.kind, expired.number, expired.expired) == ("close", 8, True)
    assert expired.comment.startswith(
        "The quarantine expired: no failure in a quarantined job and no renewal since 2024-06-01 (30 days)"
    )
    # never expires with expire_days 0
    forever = dataclasses.replace(CONFIG, expire_days=0)
    [kept] = plan_quarantine(
        [dataclasses.replace(quarantined, expires_at=None)], [issue], forever, NOW + timedelta(days=400)
    )
    assert kept.kind == "skip" and kept.expires_at is None
    # a test whose last failure is older than expire_days is not quarantined again: it would expire at once
    closed = dataclasses.replace(issue, state="closed", closed_by="flakebot[bot]", closed_at=NOW.isoformat())
    [stale] = plan_quarantine(
        [in_jobs(test, {WINDOWS: flaky_score()})], [closed], CONFIG, NOW + timedelta(days=40)
    )
    assert (stale.kind, stale.reason) == (
        "skip",
        "no failure since 2024-05-03: a quarantine would expire at once",
    )


def test_a_new_issue_is_assigned_to_the_code_owners_and_names_teams_without_mentioning_them():
    from bot.codeowners import Owners

    owners = Owners(
        ".github/CODEOWNERS", "tests/test_net.py", users=("alice", "bob"), teams=("octo-org/net",)
    )
    test = "tests/test_net.py::test_dns"
    [opened] = plan_quarantine(
        [dataclasses.replace(in_jobs(test, {WINDOWS: flaky_score()}), owners=owners)], [], CONFIG, NOW
    )
    assert opened.assignees == ("alice", "bob")
    assert ("| Code owners | `alice`, `bob` (assigned); `octo-org/net` (a team or group cannot be assigned): "
            "`tests/test_net.py` in `.github/CODEOWNERS` |") in opened.body  # fmt: skip
    assert "@" not in opened.body.replace("<!--", "")  # nobody is mentioned
    off = dataclasses.replace(CONFIG, assign_owners=False)
    [unassigned] = plan_quarantine(
        [dataclasses.replace(in_jobs(test, {WINDOWS: flaky_score()}), owners=owners)], [], off, NOW
    )
    assert unassigned.assignees == ()
