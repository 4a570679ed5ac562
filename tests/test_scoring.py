import dataclasses
import math
import random
from collections import deque
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.scoring import (
    RECENT_REVISIONS,
    HistorySummary,
    Run,
    ScoringConfig,
    Weights,
    combine,
    confidence_factors,
    consecutive_failure_penalty,
    fail_success_ratio,
    failure_clustering,
    intermittency,
    message_variance,
    normalize_message,
    rerun_pass_rate,
    score_runs,
    summarize,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def seq(
    pattern: str, *, revision: str | None = None, step_hours: float = 8, message: str = "boom"
) -> list[Run]:
    """Runs from a string: P passed, F failed, E error, S skipped; one revision each unless given."""
    names = {"P": "passed", "F": "failed", "E": "error", "S": "skipped"}
    return [
        Run(
            names[c],
            1,
            1.0,
            T0 + timedelta(hours=i * step_hours),
            revision or f"r{i}",
            message if c in "FE" else None,
        )
        for i, c in enumerate(pattern)
    ]


# --- runs ------------------------------------------------------------------------------------------


def test_run_from_dict_reads_the_documented_fields_and_aliases():
    run = Run.from_dict(
        {
            "status": "failure",
            "attempt": 2,
            "time": 3,
            "created_at": "2024-03-01T10:00:00Z",
            "revision": "abc",
            "message": "x",
        }
    )
    assert run == Run("failed", 2, 3.0, datetime(2024, 3, 1, 10, tzinfo=UTC), "abc", "x")
    assert Run.from_dict({"status": "passed"}) == Run("passed")
    naive = Run.from_dict({"status": "skip", "created_at": "2024-03-01T10:00:00"})
    assert naive.status == "skipped" and naive.created_at.tzinfo is UTC
    assert Run.from_dict(run.to_dict()) == run


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"status": "flaky"}, "status must be one of"),
        ({}, "status must be one of"),
        ({"status": "passed", "attempt": 0}, "attempt"),
        ({"status": "passed", "attempt": True}, "attempt"),
        ({"status": "passed", "attempt": "2"}, "attempt"),
        ({"status": "passed", "time": -1}, "time"),
        ({"status": "passed", "time": float("nan")}, "time"),
        ({"status": "passed", "created_at": "yesterday"}, "ISO-8601"),
        ({"status": "passed", "created_at": 1700000000}, "ISO-8601"),
        ({"status": "passed", "revision": 12}, "revision"),
        ({"status": "failed", "message": ["a"]}, "message"),
        (["passed"], "JSON object"),
    ],
)
def test_run_from_dict_names_the_bad_field(data, words):
    with pytest.raises(ValueError, match=words):
        Run.from_dict(data)


# --- configuration ---------------------------------------------------------------------------------


def test_default_weights_keep_the_documents_proportions_and_sum_to_one():
    w = Weights()
    main = [
        w.intermittency,
        w.rerun_pass_rate,
        w.failure_clustering,
        w.message_variance,
        w.fail_success_ratio,
    ]
    assert math.isclose(sum(main), 1.0)
    assert [round(x / main[-1], 6) for x in main] == [3.0, 2.5, 1.5, 1.0, 1.0]


def test_weights_that_do_not_sum_to_one_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"sum to 1, they sum to 0\.9"):
        Weights(0.30, 0.25, 0.15, 0.10, 0.10)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Weights(intermittency=-0.1)


def test_config_from_mapping_validates_and_accepts_a_scoring_section():
    weights = {
        "intermittency": 0.5,
        "rerun_pass_rate": 0.1667,
        "failure_clustering": 0.1667,
        "message_variance": 0,
        "fail_success_ratio": 0.1667,
    }
    config = ScoringConfig.from_mapping({"scoring": {"window": 10, "min_runs": 3, "weights": weights}})
    assert config.window == 10 and config.weights.intermittency == 0.5
    assert ScoringConfig.from_mapping(None) == ScoringConfig()
    with pytest.raises(ValueError, match=r"unknown scoring setting.*windw"):
        ScoringConfig.from_mapping({"windw": 10})
    with pytest.raises(ValueError, match=r"unknown weight.*speed"):
        ScoringConfig.from_mapping({"weights": {"speed": 1}})
    with pytest.raises(ValueError, match=r"min_runs .* cannot exceed"):
        ScoringConfig(window=4, min_runs=5)
    with pytest.raises(ValueError, match="ordered"):
        ScoringConfig(quarantine_threshold=0.3)
    with pytest.raises(ValueError, match="window must be a whole number"):
        dataclasses.replace(ScoringConfig(), window="50")


# --- components ------------------------------------------------------------------------------------


def test_intermittency_matches_the_documents_examples():
    assert intermittency(seq("PFPFP")) == 1.0
    assert intermittency(seq("FFFFF")) == 0.0
    assert intermittency(seq("PPFF")) == pytest.approx(1 / 3)
    assert intermittency(seq("PEPF")) == 1.0  # an error is a failure


def test_rerun_pass_rate_is_the_share_of_reruns_that_passed_and_unmeasured_without_reruns():
    runs = [Run("failed", 1), Run("passed", 2), Run("failed", 1), Run("passed", 2), Run("passed", 1)]
    assert rerun_pass_rate(runs) == 1.0
    assert rerun_pass_rate([Run("failed", 1), Run("failed", 2), Run("failed", 1), Run("passed", 2)]) == 0.5
    assert rerun_pass_rate(seq("PFPF")) is None


def test_failure_clustering_tells_spread_from_bursts_and_needs_three_failures():
    assert failure_clustering(seq("PFPPPPPPPF")) is None  # two failures say nothing about a spread
    regular = failure_clustering(seq("PF" * 25))
    burst = failure_clustering(seq("P" * 20 + "FFFFFF" + "P" * 24))
    streak = failure_clustering(seq("F" * 10 + "P" * 40))
    assert regular > 0.8 and burst < 0.45 and streak < 0.3
    rng = random.Random(7)
    randoms = [
        failure_clustering(seq("".join("F" if rng.random() < 0.2 else "P" for _ in range(200))))
        for _ in range(30)
    ]
    assert 0.45 < sum(randoms) / len(randoms) < 0.62  # random failures sit in the middle
    # time is used when every run has a timestamp: the same order of results, failures close in time
    runs = seq("PFPFPFP")
    squeezed = [dataclasses.replace(r, created_at=T0 + timedelta(minutes=i)) for i, r in enumerate(runs[:4])]
    late = [dataclasses.replace(r, created_at=T0 + timedelta(days=30 + i)) for i, r in enumerate(runs[4:])]
    assert failure_clustering(squeezed + late) < failure_clustering(runs)
    without_time = [dataclasses.replace(r, created_at=None) for r in squeezed + late]
    assert failure_clustering(without_time) == failure_clustering(runs)  # falls back to run positions


def test_normalize_message_removes_what_varies_between_runs():
    a = (
        "2024-03-01T10:00:01.123Z ERROR at /home/ci/src/app/db.py:123 conn 0x7f3a2b to 127.0.0.1:54321 "
        "session 123e4567-e89b-12d3-a456-426614174000 expected: 3 actual: 4 took 1.25s"
    )
    b = (
        "2024-03-02 11:22:33 ERROR at /builds/x/app/db.py:77 conn 0xdeadbeef to 127.0.0.1:40001 "
        "session 00000000-1111-2222-3333-444444444444 expected: 5 actual: 9 took 30.5s"
    )
    assert normalize_message(a) == normalize_message(b)
    assert normalize_message("Timeout") != normalize_message("Connection refused")
    huge = "x" * 10_000_000
    assert len(normalize_message(huge)) <= 2000


def test_message_variance_counts_failure_modes_and_needs_two_messages():
    def failing(*messages):
        return [Run("failed", message=m) for m in messages]

    assert message_variance(failing("a")) is None
    assert message_variance(failing("timeout after 3s", "timeout after 4s", "timeout after 5s")) == 0.0
    assert message_variance(failing("timeout", "refused", "disk full")) == 1.0
    assert message_variance(failing("timeout", "timeout", "refused")) == 0.5
    assert message_variance([Run("passed", message="ignored"), *failing("a")]) is None


def test_fail_success_ratio_and_streak_penalty_follow_the_document():
    assert fail_success_ratio(seq("PPPP")) == 0.0
    assert fail_success_ratio(seq("FFFF")) == pytest.approx(1 - math.exp(-3))
    assert fail_success_ratio(seq("PF")) == pytest.approx(1 - math.exp(-1.5))
    assert consecutive_failure_penalty(seq("PFFPPPPPPP")) == pytest.approx(0.4)
    assert consecutive_failure_penalty(seq("FFFFFPPPPP")) == 1.0
    assert consecutive_failure_penalty([]) == 0.0


def test_unmeasured_components_are_left_out_not_counted_as_zero():
    w = Weights()
    measured_only = {
        "intermittency": 1.0,
        "rerun_pass_rate": None,
        "failure_clustering": None,
        "message_variance": None,
        "fail_success_ratio": 1.0,
        "consecutive_failure_penalty": 0.0,
    }
    assert combine(measured_only, w) == pytest.approx(1.0)
    as_zero = {**measured_only, "rerun_pass_rate": 0.0}
    assert combine(as_zero, w) < 0.8
    penalised = {**measured_only, "consecutive_failure_penalty": 1.0}
    assert combine(penalised, w) == pytest.approx(1 - w.consecutive_failure_penalty)


# --- confidence ------------------------------------------------------------------------------------


def test_time_span_does_not_depend_on_the_order_of_the_runs():
    runs = seq("PFPFPPPP", step_hours=24)  # 7 days
    config = ScoringConfig()
    forward = confidence_factors(runs, config)["time_span"]
    backward = confidence_factors(runs[::-1], config)["time_span"]
    assert forward == backward == pytest.approx(0.5)


def test_confidence_factors_quantity_unknown_span_and_quality():
    config = ScoringConfig()
    untimed = [Run("passed", time=None) for _ in range(25)]
    factors = confidence_factors(untimed, config)
    assert factors == pytest.approx({"data_quantity": 0.5, "time_span": 0.5, "data_quality": 0.9})
    assert confidence_factors(untimed[:1], config)["time_span"] == 0.0
    # failures without messages and without re-runs: the data is poorer
    bare = [Run("failed"), Run("passed"), Run("failed")]
    assert confidence_factors(bare, config)["data_quality"] == 0.5
    full = [Run("failed", 1, 2.0, message="m"), Run("passed", 2, 2.0)]
    assert confidence_factors(full, config)["data_quality"] == pytest.approx(1.0)
    assert score_runs(seq("P")).confidence == 0.0


# --- recommendations -------------------------------------------------------------------------------


def test_a_test_failing_every_run_is_broken_not_quarantined():
    result = score_runs(seq("F" * 50, message="AssertionError: 1 != 2"))
    assert result.broken
    assert result.recommendation.action == "investigate"
    assert result.recommendation.reason == "fails on every run"
    # even with re-runs on the same revision (which all fail too) and varied messages
    runs = [
        Run("failed", 1 + i % 2, 1.0, T0 + timedelta(hours=i), f"r{i // 2}", f"error {'abcde'[i % 5]}")
        for i in range(60)
    ]
    assert score_runs(runs).recommendation.action == "investigate"


def test_a_same_revision_flip_is_never_stable_however_rare_the_failures():
    runs = [Run("passed", 1, 1.0, T0 + timedelta(hours=i), "same-sha") for i in range(4000)]
    runs[300] = dataclasses.replace(runs[300], status="failed")
    config = ScoringConfig(window=10, min_runs=5)
    result = score_runs(runs, config)  # the failure is 3,700 runs before the window
    assert result.failures == 0 and result.flips == 1
    assert result.recommendation.action == "monitor"
    assert "same revision" in result.recommendation.reason
    runs[-3] = dataclasses.replace(runs[-3], status="failed")  # and a failure in the window
    again = score_runs(runs, config)
    assert again.recommendation.action == "investigate" and "same revision" in again.recommendation.reason
    # without the flip the same outcomes on different revisions read as stable
    distinct = [dataclasses.replace(r, revision=f"r{i}") for i, r in enumerate(runs[:-5])]
    assert score_runs(distinct, config).recommendation.action == "stable"


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(
        st.tuples(st.sampled_from(["passed", "failed", "error", "skipped"]), st.integers(0, 4)),
        min_size=1,
        max_size=120,
    ),
    window=st.integers(2, 60),
)
def test_properties_of_any_history(outcomes, window):
    runs = [
        Run(status, 1, 1.0, T0 + timedelta(hours=i), f"rev{rev}") for i, (status, rev) in enumerate(outcomes)
    ]
    config = ScoringConfig(window=window, min_runs=min(5, window))
    result = score_runs(runs, config)
    assert 0.0 <= result.score <= 1.0 and 0.0 <= result.confidence <= 1.0
    by_revision: dict[str, set[bool]] = {}
    for run in runs:
        if run.status != "skipped":
            by_revision.setdefault(run.revision, set()).add(run.failed)
    if any(len(seen) == 2 for seen in by_revision.values()):
        assert result.recommendation.action != "stable"
    scored = [run for run in runs if run.status != "skipped"][-window:]
    if len(scored) >= config.min_runs and all(run.failed for run in scored):
        assert result.recommendation.action == "investigate" and result.broken
    # feeding the runs one at a time into a rolling window and its summary (what the store keeps)
    # gives the same answer as scoring the whole list
    window: deque[Run] = deque(maxlen=config.window)
    summary = HistorySummary()
    for run in runs:
        summary.add(run)
        if run.status != "skipped":
            window.append(run)
    assert score_runs(window, config, summary) == result


def test_skipped_runs_are_ignored():
    runs = seq("PFPPFPPPFP")
    with_skips = []
    for run in runs:
        with_skips += [run, dataclasses.replace(run, status="skipped")]
    plain, skipping = score_runs(runs), score_runs(with_skips)
    assert skipping == plain and skipping.runs == 10


def test_too_few_runs_only_monitor_and_thresholds_come_from_the_config():
    assert score_runs(seq("PFP")).recommendation.action == "monitor"
    assert "only 3 runs" in score_runs(seq("PFP")).recommendation.reason
    alternating = seq("PF" * 25)
    assert score_runs(alternating).recommendation.action == "quarantine"
    strict = ScoringConfig(quarantine_threshold=0.9)
    assert score_runs(alternating, strict).recommendation.action == "investigate"
    cautious = ScoringConfig(
        min_confidence_for_quarantine=0.99, min_confidence_for_action=0.99, episode_rules=False
    )
    assert score_runs(alternating, cautious).recommendation.action == "monitor"
    assert "too low to act" in score_runs(alternating, cautious).recommendation.reason
    # the episode rules need no confidence: 25 separate failures on 25 revisions are evidence enough
    episodic = score_runs(alternating, dataclasses.replace(cautious, episode_rules=True))
    assert episodic.recommendation.action == "investigate" and "25 separate episodes" in (
        episodic.recommendation.reason
    )


def test_the_summary_remembers_flips_and_stays_small():
    summary = summarize(
        [Run("failed", revision="a"), Run("passed", revision="a"), Run("passed", revision="a")]
    )
    assert summary.flips == 1 and summary.last_flip_revision == "a" and summary.last_flip_run == 2
    assert summary.runs_since_failure == 2 and summary.passes == 2
    for i in range(RECENT_REVISIONS * 3):
        summary.add(Run("passed", revision=f"x{i}"))
    assert len(summary.revisions) == RECENT_REVISIONS
    assert HistorySummary.from_dict(summary.to_dict()) == summary
    assert summary.flips == 1  # remembered after its revision was forgotten


def test_to_dict_is_json_ready():
    out = score_runs(seq("PFPFPFPPPP")).to_dict()
    assert set(out["components"]) == {
        "intermittency",
        "rerun_pass_rate",
        "failure_clustering",
        "message_variance",
        "fail_success_ratio",
        "consecutive_failure_penalty",
    }
    assert out["recommendation"]["action"] in {"stable", "monitor", "investigate", "quarantine"}
    assert out["components"]["rerun_pass_rate"] is None
