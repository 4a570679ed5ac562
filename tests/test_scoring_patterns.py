"""The scoring document's validation table, reproduced with generated histories (tests/patterns.py).

Bands are ours (docs/scoring.md, "Validation table" explains each next to the document's value): they
hold for 1,000 seeds; the test runs 20 of them.
"""

import random

import pytest

from bot.scoring import ScoringConfig, score_runs
from tests.patterns import PATTERNS

SEEDS = range(20)

# pattern: (document's expected score, our band, the recommendations we accept)
TABLE = {
    "stable passing": (0.0, (0.0, 0.0), {"stable"}),
    "stable failing": (0.1, (0.05, 0.15), {"investigate"}),
    "50% alternating": (0.7, (0.70, 0.80), {"quarantine"}),
    "retry-passing": (0.8, (0.45, 0.70), {"investigate", "quarantine"}),
    # the document's rules alone: monitor or investigate; the episode rules see the scattered failures
    "timeout-based": (0.6, (0.18, 0.55), {"investigate"}),
    "environment-dependent": (0.5, (0.25, 0.55), {"investigate"}),
}
SEED_RULES_ONLY = {
    "timeout-based": {"monitor", "investigate", "stable"},
    "environment-dependent": {"monitor", "investigate"},
}


@pytest.mark.parametrize("name", TABLE)
def test_pattern_scores_land_in_their_band(name):
    _, (low, high), actions = TABLE[name]
    results = [score_runs(PATTERNS[name](random.Random(seed))) for seed in SEEDS]
    scores = [r.score for r in results]
    assert low <= min(scores) and max(scores) <= high, f"{name}: {min(scores):.3f}..{max(scores):.3f}"
    assert {r.recommendation.action for r in results} <= actions
    seed_only = ScoringConfig(episode_rules=False)
    seed_actions = {
        score_runs(PATTERNS[name](random.Random(s)), seed_only).recommendation.action for s in SEEDS
    }
    assert seed_actions <= SEED_RULES_ONLY.get(name, actions)


def test_patterns_rank_as_flakiness_should():
    def mean(name):
        return sum(score_runs(PATTERNS[name](random.Random(s))).score for s in SEEDS) / len(SEEDS)

    means = {name: mean(name) for name in TABLE}
    assert means["stable passing"] < means["stable failing"] < means["timeout-based"]
    assert means["timeout-based"] < means["retry-passing"] < means["50% alternating"]
    assert means["stable failing"] < means["environment-dependent"] < means["retry-passing"]


def test_broken_and_retry_passing_patterns_are_told_apart_by_their_evidence():
    failing = score_runs(PATTERNS["stable failing"](random.Random(1)))
    assert failing.broken and failing.recommendation.reason == "fails on every run"
    retry = score_runs(PATTERNS["retry-passing"](random.Random(1)))
    assert retry.flips > 0 and retry.components["rerun_pass_rate"] == 1.0
    assert not retry.broken
