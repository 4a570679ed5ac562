import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.scoring import Run, score_runs, summarize
from bot.verdict import RETRY_VERDICTS, final_verdict, history_line, log_line
from tests.patterns import PATTERNS

T0 = datetime(2024, 3, 1, tzinfo=UTC)

FLAKE = {
    "verdict": "flake",
    "flake_probability": 0.83,
    "cluster": 3,
    "cluster_size": 12,
    "cluster_flake_share": 0.75,
    "distance": 0.21,
    "nearest": [{"test": "test_login", "distance": 0.21, "label": "flake"}],
    "reason": "cluster 3 is mostly flakes",
}
REAL = {**FLAKE, "verdict": "real", "flake_probability": 0.12, "nearest": [{"test": "t", "distance": 0.3}]}
UNKNOWN = {
    "verdict": "unknown",
    "flake_probability": None,
    "cluster": None,
    "reason": "no neighbour\nwithin 0.5",
}


def history(pattern: str, same_revision: bool = False):
    """Score a P/F pattern; the newest run is the failure being judged."""
    runs = [
        Run(
            "failed" if c == "F" else "passed",
            1,
            1.0,
            T0 + timedelta(hours=8 * i),
            "sha" if same_revision else f"r{i}",
        )
        for i, c in enumerate(pattern)
    ]
    return score_runs(runs), summarize(runs)


def test_infra_and_known_issues_come_first():
    flaky, _ = history("PFPF" * 10)
    v = final_verdict(REAL, flaky, infra_reason="runner_system_failure")
    assert (v.verdict, v.rule, v.verdict in RETRY_VERDICTS) == ("infra", "infra", True)
    assert "runner_system_failure" in v.log and "\n" not in v.log
    v = final_verdict(REAL, flaky, known_issue={"issue": 1234, "slug": "selinux-denial"})
    assert v.verdict == "known-issue" and v.log == "matches known issue #1234 (selinux-denial)"


def test_a_model_flake_on_a_test_that_fails_every_run_is_real():
    broken, _ = history("F" * 40)
    v = final_verdict(FLAKE, broken)
    assert (v.verdict, v.rule, v.verdict in RETRY_VERDICTS) == ("real", "broken", False)
    assert v.log.startswith("looks like a flake")  # the log line still reports what the log said
    assert (
        v.history == f"fails every one of 40 runs; score {broken.score:.2f}, investigate (fails on every run)"
    )


def test_a_test_already_failing_on_the_default_branch_is_broken_not_the_changes_fault():
    """Issue 13: "broken since revision X" on the default branch is not a PR's real failure."""
    from bot.run.history import default_branch_failing
    from bot.store import HistoryRun

    def rows(pattern, branch="main", start=0):
        return [HistoryRun(test="t", status="failed" if c == "F" else "passed", run_id=start + i, branch=branch,
                           revision=f"r{start + i}") for i, c in enumerate(pattern)]  # fmt: skip

    since = history("P" * 20 + "F" * 6)[0]  # broke on r20, fails every commit of main since
    assert since.broken_since == "r20" and not since.broken
    failing = default_branch_failing(rows("P" * 20 + "F" * 6), "main", "pr-head")
    assert (failing.since, failing.runs) == ("r20", 6)
    for model in (FLAKE, REAL, UNKNOWN):
        v = final_verdict(model, since, default_branch_failing=failing)
        assert (v.verdict, v.rule, v.verdict in RETRY_VERDICTS) == ("broken", "already-broken", False)
        assert v.history.startswith(
            "already failing on the default branch since revision r20 (6 run(s) in a row there): "
            "not caused by this change; score"
        )
    every_run = history("F" * 40)[0]
    v = final_verdict(
        REAL, every_run, default_branch_failing=default_branch_failing(rows("F" * 40), "main", "x")
    )
    assert (v.verdict, v.history.split(":")[0]) == (
        "broken",
        "already failing on the default branch since revision r0 (40 run(s) in a row there)",
    )
    # only this change's re-runs fail (the default branch passed last): the change broke it, real
    own = rows("P" * 10) + rows("FFFFF", branch="fix", start=10)
    for r in own[10:]:
        r.revision = "pr-head"
    assert default_branch_failing(own, "main", "pr-head") is None
    assert final_verdict(FLAKE, history("F" * 40)[0], default_branch_failing=None).verdict == "real"
    # a default branch that failed only on the judged revision itself says nothing about before
    assert default_branch_failing(rows("PPF"), "main", "r2") is None
    # a flaky test whose newest default-branch run failed is not broken: the usual rules judge it
    flaky = history("PF" * 20)[0]
    assert final_verdict(REAL, flaky, default_branch_failing=failing).verdict == "real"
    assert final_verdict(FLAKE, flaky, default_branch_failing=failing).verdict == "flake"


def test_a_model_flake_stays_a_flake_unless_the_test_never_passed():
    stable, _ = history("P" * 39 + "F")
    assert final_verdict(FLAKE, stable).verdict == "flake"
    assert final_verdict(FLAKE, None).verdict == "flake"  # no history yet: the model's word
    first, _ = history("F")  # this failure is the first run recorded: the model's word too
    assert final_verdict(FLAKE, first).verdict == "flake"
    brand_new, _ = history("FF")  # too few runs to be "broken", but it never passed
    v = final_verdict(FLAKE, brand_new)
    assert (v.verdict, v.rule) == ("unknown", "never-passed")
    assert v.history.startswith("has never passed (2 runs so far)")


def test_a_pass_on_the_same_commit_makes_it_a_flake_even_against_the_model():
    scored, summary = history("P" * 30 + "F", same_revision=True)
    assert summary.passed_on("sha") and not summary.passed_on("other")
    for model in (REAL, UNKNOWN, None):
        v = final_verdict(model, scored, passed_on_revision=summary.passed_on("sha"))
        assert (v.verdict, v.rule) == ("flake", "same-revision")
        assert "passed on this same commit before" in v.history
    assert final_verdict(REAL, scored).verdict == "real"  # without that evidence the model decides


def test_an_unknown_log_needs_a_strongly_flaky_and_proven_history_to_become_a_flake():
    # the retry-passing pattern: strongly flaky and proven (fails attempt 1, passes attempt 2)
    runs = PATTERNS["retry-passing"](random.Random(3))
    runs.append(Run("failed", 1, 1.0, runs[-1].created_at + timedelta(hours=8), "new-rev", "reset"))
    proven = score_runs(runs)
    v = final_verdict(UNKNOWN, proven)
    assert (v.verdict, v.rule) == ("flake", "history")
    assert "passed and failed on the same commit" in v.history
    # as flaky by score, but never on the same revision: no proof, stays unknown
    unproven, _ = history("PF" * 25)
    assert unproven.flips == 0 and unproven.score > 0.6
    assert final_verdict(UNKNOWN, unproven).verdict == "unknown"
    # proven flaky but only rarely failing: not strong enough
    rare, _ = history("P" * 20 + "F" + "P" * 28 + "F", same_revision=True)
    assert rare.flips and final_verdict(UNKNOWN, rare).verdict == "unknown"
    assert final_verdict(None, None).verdict == "unknown"


def test_model_real_stays_real():
    flaky, _ = history("PF" * 25)
    v = final_verdict(REAL, flaky)
    assert (v.verdict, v.rule, v.verdict in RETRY_VERDICTS) == ("real", "model", False)
    assert v.log == (
        "looks like a real failure (flake probability 12%; 75% of 12 similar failures were flakes; "
        "nearest: t (unlabelled, distance 0.30))"
    )


def test_explanations_are_one_line_each():
    scored, _ = history("P" * 30 + "FPPFPPPPPF", same_revision=True)
    line = history_line(scored)
    assert (
        line
        == f"fails 3 of 40 runs, passed and failed on the same commit; score {scored.score:.2f}, investigate"
    )
    broken_since = history("P" * 20 + "F" * 5)[0]  # passes, then failures on every new commit
    assert history_line(broken_since) == (
        f"fails 5 of 25 runs; score {broken_since.score:.2f}, investigate "
        "(failing since revision r20: 5 runs in a row, last passed on revision r19)"
    )
    long_runs = history("P" * 100 + "F")[0]
    assert history_line(long_runs).startswith("fails 1 of the last 50 runs;")
    assert history_line(None) == "no runs of this test recorded yet"
    assert log_line(FLAKE) == (
        "looks like a flake (flake probability 83%; 75% of 12 similar failures were flakes; "
        "nearest: test_login (flake, distance 0.21))"
    )
    assert log_line(UNKNOWN) == "the log matches nothing known with confidence: no neighbour within 0.5"
    assert log_line({"verdict": "unknown", "reason": "x" * 1000}).endswith("…")
    assert len(log_line({"verdict": "unknown", "reason": "x" * 1000})) < 250
    assert log_line(None) == "no verdict from the log model"


def test_an_invalid_model_verdict_is_refused():
    with pytest.raises(ValueError, match=r"one of flake\|real\|unknown"):
        final_verdict({"verdict": "maybe"}, None)
