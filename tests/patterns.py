"""Generated test histories for the six patterns of the scoring document's validation table.

Every generator takes a ``random.Random`` and returns runs oldest first. Common to all: one run every
8 hours from 2024-01-01T00:00Z (50 runs span 16 days, so the time-span confidence is full), a new
revision for every run except re-runs, durations of 1–3 s. docs/scoring.md describes each pattern and
where its scores land.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.scoring import Run

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(hours=8)
RUNS = 50


def _passed(rng: random.Random, i: int, time: float | None = None) -> Run:
    return Run("passed", 1, time if time is not None else rng.uniform(1, 3), T0 + i * STEP, f"rev{i:04d}")


def _failed(rng: random.Random, i: int, message: str, time: float | None = None) -> Run:
    t = time if time is not None else rng.uniform(1, 3)
    return Run("failed", 1, t, T0 + i * STEP, f"rev{i:04d}", message)


def stable_passing(rng: random.Random) -> list[Run]:
    """Passes every run."""
    return [_passed(rng, i) for i in range(RUNS)]


def stable_failing(rng: random.Random) -> list[Run]:
    """Fails every run with the same assertion (only numbers differ)."""
    return [
        _failed(rng, i, f"AssertionError: expected 200 but got 500 after {rng.uniform(1, 3):.2f}s")
        for i in range(RUNS)
    ]


def alternating(rng: random.Random) -> list[Run]:
    """Passes, fails, passes, fails...: 50% failures, one failure mode."""
    return [
        _failed(rng, i, f"AssertionError: expected 3 items, got {rng.randint(0, 2)}")
        if i % 2
        else _passed(rng, i)
        for i in range(RUNS)
    ]


def retry_passing(rng: random.Random) -> list[Run]:
    """40 revisions; each fails its first attempt with probability 0.3 and then passes its re-run."""
    runs = []
    for i in range(40):
        if rng.random() < 0.3:
            port = rng.randint(30000, 60000)
            message = f"ConnectionResetError: [Errno 104] Connection reset by peer (port {port})"
            runs.append(_failed(rng, i, message))
            runs.append(
                Run("passed", 2, rng.uniform(1, 3), T0 + i * STEP + timedelta(minutes=20), f"rev{i:04d}")
            )
        else:
            runs.append(_passed(rng, i))
    return runs


def timeout_based(rng: random.Random) -> list[Run]:
    """Runs take 5–29 s against a 30 s limit; each run hits the limit with probability 0.25."""
    runs = []
    for i in range(RUNS):
        if rng.random() < 0.25:
            took = 30 + rng.uniform(0, 0.2)
            runs.append(_failed(rng, i, f"TimeoutError: test exceeded 30.0s (took {took:.3f}s)", took))
        else:
            runs.append(_passed(rng, i, rng.uniform(5, 29)))
    return runs


def environment_dependent(rng: random.Random) -> list[Run]:
    """Each run lands on one of three runners at random; every run on the broken one fails."""
    messages = (
        "OSError: [Errno 28] No space left on device: '/tmp/build-{n}'",
        "ConnectionRefusedError: [Errno 111] Connection refused (db:5432, attempt {n})",
    )
    runs = []
    for i in range(RUNS):
        if rng.randrange(3) == 2:
            runs.append(_failed(rng, i, rng.choice(messages).format(n=rng.randint(1, 999))))
        else:
            runs.append(_passed(rng, i))
    return runs


PATTERNS: dict[str, Callable[[random.Random], list[Run]]] = {
    "stable passing": stable_passing,
    "stable failing": stable_failing,
    "50% alternating": alternating,
    "retry-passing": retry_passing,
    "timeout-based": timeout_based,
    "environment-dependent": environment_dependent,
}


# --- main-branch histories: every run is a new revision (issue 13) ------------------------------------
#
# One run every 1–12 hours (so 50 runs span about two weeks), a new revision each, durations of 1–3 s,
# no re-runs. Failure messages carry varying numbers, as real ones do.


def _main(rng: random.Random, outcomes: list[bool], message: Callable[[random.Random], str]) -> list[Run]:
    """Runs for ``outcomes`` (True = failed), oldest first, each on a revision of its own."""
    runs, moment = [], T0
    for i, failed in enumerate(outcomes):
        moment += timedelta(hours=rng.uniform(1, 12))
        status, text = ("failed", message(rng)) if failed else ("passed", None)
        runs.append(Run(status, 1, rng.uniform(1, 3), moment, f"{i:04d}{rng.getrandbits(24):06x}", text))
    return runs


def _flaky_message(rng: random.Random) -> str:
    return rng.choice(
        (
            f"TimeoutError: no answer from 127.0.0.1:{rng.randint(30000, 60000)} after 5.0s",
            f"AssertionError: expected 3 events, got {rng.randint(0, 2)}",
        )
    )


def _real_message(rng: random.Random) -> str:
    return f"AssertionError: expected 200, got 500 (request {rng.randint(1, 9999)})"


def main_flaky(rng: random.Random) -> list[Run]:
    """40–150 runs, each failing with the same probability, drawn between 10% and 40%: scattered."""
    rate = rng.uniform(0.10, 0.40)
    return _main(rng, [rng.random() < rate for _ in range(rng.randint(40, 150))], _flaky_message)


def main_broken(rng: random.Random) -> list[Run]:
    """10–60 passes, then 2–40 failures up to now: broken since a commit."""
    passes, failures = rng.randint(10, 60), rng.randint(2, 40)
    return _main(rng, [False] * passes + [True] * failures, _real_message)


def main_fixed_regression(rng: random.Random) -> list[Run]:
    """10–60 passes, a block of 3–8 failures, then 1–40 passes: a regression, fixed."""
    before, block, after = rng.randint(10, 60), rng.randint(3, 8), rng.randint(1, 40)
    return _main(rng, [False] * before + [True] * block + [False] * after, _real_message)


def main_stable(rng: random.Random) -> list[Run]:
    """40–150 passes."""
    return _main(rng, [False] * rng.randint(40, 150), _real_message)


MAIN_BRANCH: dict[str, Callable[[random.Random], list[Run]]] = {
    "flaky": main_flaky,
    "broken since a commit": main_broken,
    "fixed regression": main_fixed_regression,
    "stable": main_stable,
}


def main_rare_flaky(rng: random.Random) -> list[Run]:
    """40–150 runs failing with a probability between 1% and 5%: flaky, but below the goal's 10%."""
    rate = rng.uniform(0.01, 0.05)
    return _main(rng, [rng.random() < rate for _ in range(rng.randint(40, 150))], _flaky_message)
