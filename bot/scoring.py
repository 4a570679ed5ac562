"""The flakiness score of a test's history: six components, a confidence and a recommendation.

Pure functions over :class:`Run` lists. The model is the one of FlakeGuard's scoring document
(``seeds/flakiness-scoring-algorithm.md``), with its bugs fixed; every deviation is listed, with its
reason, in ``docs/scoring.md``. In short:

* ``failed`` and ``error`` runs are failures; ``skipped`` runs are ignored everywhere.
* The score looks at the newest ``window`` runs; a :class:`HistorySummary` (a few counters kept next to
  the window) remembers what fell out of it, above all that the test once passed and failed on the same
  revision. Such a test is flaky by definition and is never called ``stable``.
* A component that cannot be measured (no re-runs, fewer than three failures, fewer than two failure
  messages) is ``None`` and its weight is shared out among the others instead of counting as 0.
* A test that fails every run of its window is broken, not flaky: ``investigate``, never ``quarantine``.
* On a main branch every run is a new revision, so flips are rare and the confidence the score needs is
  slow to come. There the *failure episodes* (runs of consecutive failures) decide: failures scattered
  over several short episodes are flaky; a streak that the test's earlier failure rate cannot explain is
  a break since a revision; one such block followed by passes is a fixed regression. The six components
  stay the reported figures; ``docs/scoring.md`` ("Main-branch histories") gives the rules and figures.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

from bot.status import FAILED_HISTORY_STATUSES as FAILED
from bot.status import HISTORY_STATUSES as STATUSES
from bot.status import STATUS_ALIASES

MAIN_COMPONENTS = (
    "intermittency",
    "rerun_pass_rate",
    "failure_clustering",
    "message_variance",
    "fail_success_ratio",
)
COMPONENTS = (*MAIN_COMPONENTS, "consecutive_failure_penalty")

ActionName = Literal["stable", "monitor", "investigate", "quarantine"]
Priority = Literal["low", "medium", "high", "critical"]

# Only the head of a failure message is compared: enough to tell failure modes apart, bounded cost.
MAX_MESSAGE_CHARS = 2000
# How many recent revisions the summary remembers the outcomes of (to spot same-revision flips).
RECENT_REVISIONS = 64
# The time-span confidence factor when the runs carry no timestamps: unknown, counted as half.
UNKNOWN_SPAN_FACTOR = 0.5
# A streak of failures is a break (or a regression), not bad luck, when the test's earlier failure rate
# makes a streak that long less likely than this.
BREAK_CHANCE = 0.01
# Failures are scattered (flaky) when they form at least this share of the episodes that a random order
# of the same results forms on average.
MIN_SCATTER = 0.5


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 string (or datetime) as an aware datetime; naive times are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {value[:40]!r}") from None
    else:
        raise ValueError(f"a time must be an ISO-8601 string, got {type(value).__name__}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Run:
    """One judged run of one test."""

    status: str  # passed | failed | error | skipped
    attempt: int = 1  # 1 for the first run of a revision's job, 2+ for re-runs
    time: float | None = None  # seconds
    created_at: datetime | None = None
    revision: str | None = None
    message: str | None = None  # the failure message, if any

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Build a run from its JSON form; raises ValueError saying which field is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a run must be a JSON object, got {type(data).__name__}")
        status = data.get("status")
        status = STATUS_ALIASES.get(status, status) if isinstance(status, str) else status
        if status not in STATUSES:
            raise ValueError(f"status must be one of {'|'.join(STATUSES)}, got {data.get('status')!r}")
        attempt = data.get("attempt", 1)
        attempt = 1 if attempt is None else attempt
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be an integer >= 1, got {attempt!r}")
        time = data.get("time")
        if time is not None and (
            isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time) or time < 0
        ):
            raise ValueError(f"time must be a number of seconds >= 0, got {time!r}")
        for key in ("revision", "message"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValueError(f"{key} must be a string, got {type(data[key]).__name__}")
        return cls(
            status=status,
            attempt=attempt,
            time=None if time is None else float(time),
            created_at=parse_time(data.get("created_at")),
            revision=data.get("revision") or None,
            message=data.get("message"),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


@dataclass(frozen=True)
class Weights:
    """The weights of the five main components (they sum to 1) and the strength of the penalty."""

    # The document's 30/25/15/10/10, which sum to 0.9, scaled to sum to 1 (see docs/scoring.md).
    intermittency: float = 0.30 / 0.90
    rerun_pass_rate: float = 0.25 / 0.90
    failure_clustering: float = 0.15 / 0.90
    message_variance: float = 0.10 / 0.90
    fail_success_ratio: float = 0.10 / 0.90
    consecutive_failure_penalty: float = 0.75  # multiplies: score *= 1 - this * penalty

    def __post_init__(self) -> None:
        for name in COMPONENTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"weight {name} must be a number between 0 and 1, got {value!r}")
        total = sum(getattr(self, name) for name in MAIN_COMPONENTS)
        if not math.isclose(total, 1.0, abs_tol=1e-3):  # rounded values in YAML are fine
            raise ValueError(
                f"the weights of the five main components must sum to 1, they sum to {total:.4g} "
                f"({', '.join(MAIN_COMPONENTS)})"
            )


@dataclass(frozen=True)
class ScoringConfig:
    """How to score. Defaults are the document's; ``dataclasses.replace`` re-validates."""

    window: int = 50  # the newest runs scored
    min_runs: int = 5  # fewer runs than this: monitor, no verdict
    weights: Weights = field(default_factory=Weights)
    quarantine_threshold: float = 0.6
    investigation_threshold: float = 0.4
    monitoring_threshold: float = 0.2
    min_confidence_for_quarantine: float = 0.7
    min_confidence_for_action: float = 0.5  # for investigate by score
    confidence_runs: int = 50  # runs for full data-quantity confidence
    confidence_days: float = 14.0  # days for full time-span confidence
    episode_rules: bool = True  # False: the document's recommendation rules alone (for comparison)

    def __post_init__(self) -> None:
        for name in ("window", "min_runs", "confidence_runs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.window < 2:
            raise ValueError(f"window must be at least 2 runs, got {self.window}")
        if self.min_runs > self.window:
            raise ValueError(f"min_runs ({self.min_runs}) cannot exceed the window ({self.window})")
        if not isinstance(self.weights, Weights):
            raise ValueError("weights must be a Weights")
        for name in (
            "quarantine_threshold",
            "investigation_threshold",
            "monitoring_threshold",
            "min_confidence_for_quarantine",
            "min_confidence_for_action",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
        if not self.monitoring_threshold <= self.investigation_threshold <= self.quarantine_threshold:
            raise ValueError(
                "thresholds must be ordered: monitoring_threshold <= investigation_threshold "
                "<= quarantine_threshold"
            )
        value = self.confidence_days
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"confidence_days must be a number > 0, got {value!r}")
        if not isinstance(self.episode_rules, bool):
            raise ValueError(f"episode_rules must be true or false, got {self.episode_rules!r}")

    @classmethod
    def from_mapping(cls, data: Any) -> ScoringConfig:
        """A config from parsed YAML/JSON: the field names above, ``weights`` as a nested mapping.

        A top-level ``scoring:`` section (as in a repository's ``.flakebot.yml``) is accepted too.
        Unknown keys are errors, so a typo never silently falls back to a default.
        """
        if isinstance(data, Mapping) and set(data) == {"scoring"}:
            data = data["scoring"]
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"a scoring config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown scoring setting(s): {', '.join(map(str, unknown))}")
        values = dict(data)
        weights = values.pop("weights", None)
        if weights is not None:
            if not isinstance(weights, Mapping):
                raise ValueError("weights must be a mapping of component name to weight")
            bad = sorted(set(weights) - set(COMPONENTS))
            if bad:
                known_names = ", ".join(COMPONENTS)
                raise ValueError(f"unknown weight(s): {', '.join(map(str, bad))}; known: {known_names}")
            values["weights"] = Weights(**weights)
        return cls(**values)


# --- the summary kept next to the window ------------------------------------------------------------


@dataclass
class HistorySummary:
    """What a test's whole history says, in a few counters: kept next to the rolling window.

    ``revisions`` holds the outcomes seen for the newest ``RECENT_REVISIONS`` revisions (bit 1 passed,
    bit 2 failed), so a flip is noticed however far apart its pass and its failure are in runs, as long
    as no more than that many other revisions came in between. A flip, once seen, is remembered forever.
    """

    runs: int = 0  # non-skipped runs ever seen
    failures: int = 0
    skipped: int = 0
    last_failure_run: int | None = None  # 1-based index among ``runs``
    flips: int = 0  # revisions that both passed and failed
    last_flip_revision: str | None = None
    last_flip_run: int | None = None
    revisions: dict[str, int] = field(default_factory=dict)
    failing_streak: int = 0  # failures in a row up to the newest run (0 when it passed)
    streak_revision: str | None = None  # the revision of the streak's first failure
    last_pass_revision: str | None = None

    def add(self, run: Run) -> None:
        if run.status == "skipped":
            self.skipped += 1
            return
        self.runs += 1
        bit = 2 if run.failed else 1
        if run.failed:
            self.failures += 1
            self.last_failure_run = self.runs
            if not self.failing_streak:
                self.streak_revision = run.revision
            self.failing_streak += 1
        else:
            self.failing_streak, self.streak_revision = 0, None
            self.last_pass_revision = run.revision
        if run.revision:
            seen = self.revisions.pop(run.revision, 0)
            self.revisions[run.revision] = seen | bit  # re-inserted: newest last
            if seen | bit == 3 and seen != 3:
                self.flips += 1
                self.last_flip_revision = run.revision
                self.last_flip_run = self.runs
            while len(self.revisions) > RECENT_REVISIONS:
                del self.revisions[next(iter(self.revisions))]

    @property
    def passes(self) -> int:
        return self.runs - self.failures

    def passed_on(self, revision: str | None) -> bool:
        """Whether the test passed on ``revision`` (among the recent revisions remembered)."""
        return bool(revision) and bool(self.revisions.get(revision, 0) & 1)  # type: ignore[arg-type]

    @property
    def runs_since_failure(self) -> int:
        """Non-skipped runs since the newest failure (all runs when it never failed)."""
        return self.runs - (self.last_failure_run or 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistorySummary:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def summarize(runs: Iterable[Run], summary: HistorySummary | None = None) -> HistorySummary:
    """Fold ``runs`` (oldest first) into ``summary`` (a new one by default) and return it."""
    summary = summary if summary is not None else HistorySummary()
    for run in runs:
        summary.add(run)
    return summary


# --- the six components (``runs`` are the window, oldest first, no skipped runs) --------------------


def intermittency(runs: Sequence[Run]) -> float:
    """Pass/fail transitions over the possible ones: 1.0 for P F P F, 0.0 for a constant result."""
    transitions = sum(1 for a, b in itertools.pairwise(runs) if a.failed != b.failed)
    return transitions / max(1, len(runs) - 1)


def rerun_pass_rate(runs: Sequence[Run]) -> float | None:
    """Share of re-runs (attempt > 1) that passed; None without re-runs."""
    reruns = [run for run in runs if run.attempt > 1]
    if not reruns:
        return None
    return sum(1 for run in reruns if not run.failed) / len(reruns)


def failure_clustering(runs: Sequence[Run]) -> float | None:
    """How evenly the failures are spread: 1 regular, about 0.5 at random, towards 0 in bursts.

    The document's name and direction are kept (high when the gaps between failures vary little
    relative to their mean), with three fixes: None with fewer than three failures (two failures make
    one gap, which the document scored 1.0); ``1 / (1 + CV)`` instead of ``max(0, 1 − CV)``, which
    scored random failures, the commonest flaky pattern, as 0; and the gaps from the window's first
    run to the first failure and from the last failure to the window's last run count too, so a streak
    inside a window of passes is seen as the burst it is. Gaps are measured in time when every run has
    a timestamp, in runs otherwise.
    """
    failures = [index for index, run in enumerate(runs) if run.failed]
    if len(failures) < 3:
        return None
    if all(run.created_at for run in runs):
        times = [run.created_at.timestamp() for run in runs]  # type: ignore[union-attr]
        points = sorted(times[index] for index in failures)
        start, end = min(times), max(times)
    else:
        points = [float(index) for index in failures]
        start, end = 0.0, float(len(runs) - 1)
    gaps = [points[0] - start, *(b - a for a, b in itertools.pairwise(points)), end - points[-1]]
    mean = statistics.fmean(gaps)
    if mean == 0:
        return 0.0  # every run at the same moment
    return 1 / (1 + statistics.pstdev(gaps) / mean)


_MESSAGE_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "TIMESTAMP"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "UUID"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "0xADDRESS"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{12,}\b", re.I), "HEX"),
    (re.compile(r"/[\w\-./]+"), "PATH"),
    (re.compile(r"\b(expected|actual):?\s*\S+", re.I), r"\1: VALUE"),
    (re.compile(r"\d+(?:\.\d+)?"), "N"),  # every other number: line numbers, ports, counts, durations
    (re.compile(r"\s+"), " "),
]


def normalize_message(message: str) -> str:
    """A failure message with its run-specific details (times, ids, paths, numbers) replaced."""
    text = message[:MAX_MESSAGE_CHARS]
    for pattern, replacement in _MESSAGE_RULES:
        text = pattern.sub(replacement, text)
    return text.strip().lower()


def message_variance(runs: Sequence[Run]) -> float | None:
    """(distinct normalised messages − 1) / (failures with a message − 1); None with fewer than two."""
    messages = [normalize_message(run.message) for run in runs if run.failed and run.message]
    if len(messages) < 2:
        return None
    return (len(set(messages)) - 1) / (len(messages) - 1)


def fail_success_ratio(runs: Sequence[Run]) -> float:
    """1 − exp(−3 × failure rate): the failure rate with diminishing returns."""
    if not runs:
        return 0.0
    rate = sum(1 for run in runs if run.failed) / len(runs)
    return 1 - math.exp(-3 * rate)


def consecutive_failure_penalty(runs: Sequence[Run]) -> float:
    """min(1, 2 × longest failure streak / runs): 1 once half the window is one streak."""
    if not runs:
        return 0.0
    longest = streak = 0
    for run in runs:
        streak = streak + 1 if run.failed else 0
        longest = max(longest, streak)
    return min(1.0, 2 * longest / len(runs))


def components_of(runs: Sequence[Run]) -> dict[str, float | None]:
    return {
        "intermittency": intermittency(runs),
        "rerun_pass_rate": rerun_pass_rate(runs),
        "failure_clustering": failure_clustering(runs),
        "message_variance": message_variance(runs),
        "fail_success_ratio": fail_success_ratio(runs),
        "consecutive_failure_penalty": consecutive_failure_penalty(runs),
    }


def combine(components: Mapping[str, float | None], weights: Weights) -> float:
    """Weighted mean of the measured main components, then the multiplicative streak penalty."""
    measured = [(getattr(weights, name), components[name]) for name in MAIN_COMPONENTS]
    measured = [(w, value) for w, value in measured if value is not None]
    total = sum(w for w, _ in measured)
    if total == 0:
        return 0.0
    score = sum(w * value for w, value in measured) / total  # type: ignore[operator]
    penalty = components["consecutive_failure_penalty"] or 0.0
    score *= 1 - weights.consecutive_failure_penalty * penalty
    return max(0.0, min(1.0, score))


# --- confidence ------------------------------------------------------------------------------------


def confidence_factors(runs: Sequence[Run], config: ScoringConfig) -> dict[str, float]:
    """Data quantity, time span and data quality, each 0..1."""
    count = len(runs)
    quantity = min(1.0, count / config.confidence_runs)
    times = [run.created_at for run in runs if run.created_at is not None]
    if count < 2:
        span = 0.0
    elif len(times) < 2:
        span = UNKNOWN_SPAN_FACTOR
    else:
        days = (max(times) - min(times)).total_seconds() / 86400
        span = min(1.0, days / config.confidence_days)
    failures = [run for run in runs if run.failed]
    quality = 0.5
    if not failures or any(run.message for run in failures):
        quality += 0.2  # nothing to explain, or failures explain themselves
    if not failures or any(run.attempt > 1 for run in runs):
        quality += 0.2  # nothing to re-run, or re-runs were seen
    if any((run.time or 0) > 0 for run in runs):
        quality += 0.1
    return {"data_quantity": quantity, "time_span": span, "data_quality": quality}


def confidence_of(factors: Mapping[str, float]) -> float:
    """Geometric mean of the factors: conservative, any factor at 0 makes it 0."""
    product = math.prod(factors.values())
    return product ** (1 / len(factors)) if product > 0 else 0.0


# --- failure episodes -----------------------------------------------------------------------------

PatternName = Literal["passing", "flaky", "bursts", "isolated", "regression", "broken", "failing"]


def failure_episodes(runs: Sequence[Run]) -> list[tuple[int, int]]:
    """Each run of consecutive failures as (index of its first run, length), oldest first."""
    episodes: list[tuple[int, int]] = []
    for index, run in enumerate(runs):
        if not run.failed:
            continue
        if episodes and sum(episodes[-1]) == index:
            episodes[-1] = (episodes[-1][0], episodes[-1][1] + 1)
        else:
            episodes.append((index, 1))
    return episodes


def scatter(runs: Sequence[Run]) -> float | None:
    """Failure episodes seen over the number a random order of the same results forms on average.

    With F failures and S passes in N runs a random order forms F(S + 1)/N episodes on average (the
    runs test of Wald and Wolfowitz). About 1 for failures at random, up to about 2 for strict
    alternation, towards 0 when the failures come in blocks. None with fewer than two failures or
    without a pass: nothing to compare.
    """
    return _scatter(failure_episodes(runs), len(runs))


def _scatter(episodes: Sequence[tuple[int, int]], runs: int) -> float | None:
    failures = sum(length for _, length in episodes)
    passes = runs - failures
    if failures < 2 or not passes:
        return None
    return len(episodes) / (failures * (passes + 1) / runs)


def entropy(runs: Sequence[Run]) -> float:
    """Shannon entropy of the pass/fail outcome in bits (0 constant, 1 at a 50% failure rate)."""
    if not runs:
        return 0.0
    rate = sum(1 for run in runs if run.failed) / len(runs)
    if rate in (0.0, 1.0):
        return 0.0
    return -(rate * math.log2(rate) + (1 - rate) * math.log2(1 - rate))


def streak_chance(length: int, failures: int, runs: int) -> float:
    """How likely ``length`` failures in a row are by chance for a test that failed ``failures`` of
    ``runs`` other runs: p^length, p by Laplace's rule (failures + 1) / (runs + 2), so a test never seen
    failing is not taken to be unable to fail."""
    rate = (max(0, failures) + 1) / (max(0, runs) + 2)
    return rate**length


@dataclass(frozen=True)
class Episodes:
    """What the failure episodes of a window (and the summary's streak) say; see :func:`episodes_of`."""

    pattern: PatternName
    episodes: int  # runs of consecutive failures in the window
    scatter: float | None
    entropy: float
    streak: int  # failures in a row up to the newest run, over the whole history
    streak_revision: str | None  # the revision of the streak's first failure
    passes_before: int  # passes before the streak, over the whole history
    last_pass_revision: str | None
    block: tuple[Run, Run, Run] | None = None  # regression: its first and last failure, the pass after


def episodes_of(window: Sequence[Run], summary: HistorySummary) -> Episodes:
    """Classify a window's failures by their episodes, first matching pattern wins:

    * ``failing``: failing up to now and never passed; ``passing``: no failure in the window;
    * ``broken``: a streak of at least two failures up to now that the test's earlier failure rate makes
      less likely than ``BREAK_CHANCE``, starting on a revision that never passed: broken since it;
    * one episode: ``regression`` when it is such an unlikely block with passes after it, else
      ``isolated`` (too little to tell);
    * several episodes: ``flaky`` when scattered (``scatter`` at least ``MIN_SCATTER``), else ``bursts``.
    """
    trailing = 0
    for run in reversed(window):
        if not run.failed:
            break
        trailing += 1
    if window and trailing == len(window) and summary.failing_streak >= trailing:
        streak, start = summary.failing_streak, summary.streak_revision  # longer than the window
    else:
        streak, start = trailing, (window[-trailing].revision if trailing else None)
    runs_before = max(0, summary.runs - streak)
    failures_before = min(runs_before, max(0, summary.failures - streak))
    passes_before = runs_before - failures_before
    found = failure_episodes(window)
    figures = {
        "episodes": len(found),
        "scatter": _scatter(found, len(window)),
        "entropy": entropy(window),
        "streak": streak,
        "streak_revision": start,
        "passes_before": passes_before,
        "last_pass_revision": summary.last_pass_revision if streak else None,
    }
    if streak and not passes_before:
        return Episodes("failing", **figures)
    if not found:
        return Episodes("passing", **figures)
    if (
        streak >= 2
        and streak_chance(streak, failures_before, runs_before) < BREAK_CHANCE
        and not summary.passed_on(start)
    ):
        return Episodes("broken", **figures)
    if len(found) == 1:
        first, length = found[0]
        after = first + length
        if (
            after < len(window)
            and length >= 2
            and streak_chance(length, summary.failures - length, summary.runs - length) < BREAK_CHANCE
        ):
            block = (window[first], window[after - 1], window[after])
            return Episodes("regression", **figures, block=block)
        return Episodes("isolated", **figures)
    if figures["scatter"] is not None and figures["scatter"] >= MIN_SCATTER:
        return Episodes("flaky", **figures)
    return Episodes("bursts", **figures)


def _revision(revision: str | None) -> str:
    return f"revision {revision}" if revision else "an unrecorded revision"


# --- recommendation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    action: ActionName
    reason: str
    priority: Priority


def recommend(
    score: float,
    confidence: float,
    *,
    runs: int,
    failures: int,
    flips: int,
    runs_since_flip: int | None,
    config: ScoringConfig,
    episodes: Episodes | None = None,
) -> Recommendation:
    """The action for a test, first matching rule wins (see docs/scoring.md, "Recommendation").

    Without ``episodes`` (or with ``config.episode_rules`` off) these are the document's rules alone.
    """
    enough = runs >= config.min_runs
    found = episodes if config.episode_rules else None
    pattern = found.pattern if found else None
    if found and pattern == "broken":
        return Recommendation("investigate", _broken_reason(found), "high")
    if enough and failures == runs:
        return Recommendation("investigate", "fails on every run", "high")
    seed_may_flag = pattern != "regression"  # a fixed regression is not flaky, whatever its score
    if (
        seed_may_flag
        and enough
        and score >= config.quarantine_threshold
        and confidence >= config.min_confidence_for_quarantine
    ):
        return Recommendation(
            "quarantine", f"flakiness score {score:.2f} with confidence {confidence:.2f}", "critical"
        )
    if (
        seed_may_flag
        and enough
        and score >= config.investigation_threshold
        and confidence >= config.min_confidence_for_action
    ):
        if score >= config.quarantine_threshold:
            reason = f"flakiness score {score:.2f}, but confidence {confidence:.2f} is too low to quarantine"
            return Recommendation("investigate", reason, "high")
        return Recommendation(
            "investigate", f"flakiness score {score:.2f} with confidence {confidence:.2f}", "medium"
        )
    if flips and failures:
        return Recommendation(
            "investigate",
            f"passed and failed on the same revision; failed {failures} of the last {runs} runs",
            "medium",
        )
    if found and pattern == "flaky" and enough:
        reason = (
            f"failed {failures} of the last {runs} runs in {found.episodes} separate episodes, "
            f"scattered as by chance (scatter {found.scatter:.2f}); flakiness score {score:.2f}"
        )
        return Recommendation("investigate", reason, "medium")
    if not enough:
        return Recommendation("monitor", f"only {runs} runs, {config.min_runs} needed for a verdict", "low")
    if found and found.block and not flips:
        first, last, after = found.block
        length = failures
        reason = (
            f"a fixed regression, not flaky: failed {length} runs in a row from {_revision(first.revision)}"
            f" to {_revision(last.revision)}, passes again since {_revision(after.revision)}"
        )
        return Recommendation("stable", reason, "low")
    if score >= config.monitoring_threshold:
        if score >= config.investigation_threshold:
            reason = f"flakiness score {score:.2f}, but confidence {confidence:.2f} is too low to act"
        else:
            reason = f"some instability: flakiness score {score:.2f}"
        return Recommendation("monitor", reason, "low")
    if flips:
        return Recommendation(
            "monitor",
            f"passed and failed on the same revision {runs_since_flip} runs ago; "
            f"no failure in the last {runs} runs",
            "low",
        )
    if found and found.streak:
        where = "on" if found.streak == 1 else "since"
        reason = (
            f"failed its latest {_runs(found.streak)} ({where} {_revision(found.streak_revision)}): "
            "too few in a row to tell a break from bad luck yet"
        )
        return Recommendation("monitor", reason, "low")
    if failures:
        reason = f"flakiness score {score:.2f}: {failures} failure(s) in the last {runs} runs"
    else:
        reason = f"no failure in the last {runs} runs"
    return Recommendation("stable", reason, "low")


def _runs(count: int) -> str:
    return "run" if count == 1 else f"{count} runs"


def _broken_reason(found: Episodes) -> str:
    reason = f"failing since {_revision(found.streak_revision)}: {found.streak} runs in a row"
    if found.last_pass_revision:
        return reason + f", last passed on {_revision(found.last_pass_revision)}"
    return reason + f", after {found.passes_before} passing run(s)"


# --- the score -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlakeScore:
    score: float
    confidence: float
    components: dict[str, float | None]  # the six; None when not measurable
    recommendation: Recommendation
    runs: int  # runs scored (the window, skipped runs left out)
    failures: int  # failures among them
    confidence_factors: dict[str, float]
    total_runs: int  # the whole history (from the summary)
    total_failures: int
    flips: int  # revisions that both passed and failed, ever
    last_flip_revision: str | None
    runs_since_failure: int
    broken: bool  # failed every run of a window of at least min_runs: a real failure, not flakiness
    # what the failure episodes say (docs/scoring.md, "Main-branch histories"); figures, whatever the
    # config's episode_rules
    pattern: PatternName = "passing"  # passing|flaky|bursts|isolated|regression|broken|failing
    broken_since: str | None = None  # pattern broken: the revision of the first failure of the streak
    failing_streak: int = 0  # failures in a row up to the newest run, over the whole history
    last_pass_revision: str | None = None  # while failing_streak > 0: the newest revision that passed
    episodes: int = 0  # runs of consecutive failures in the window
    scatter: float | None = None  # episodes / those a random order would form; None under 2 failures
    entropy: float = 0.0  # of the pass/fail outcome, bits

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "score": rounded(self.score),
            "confidence": rounded(self.confidence),
            "components": {name: rounded(value) for name, value in self.components.items()},
            "recommendation": asdict(self.recommendation),
            "runs": self.runs,
            "failures": self.failures,
            "confidence_factors": {name: rounded(v) for name, v in self.confidence_factors.items()},
            "total_runs": self.total_runs,
            "total_failures": self.total_failures,
            "flips": self.flips,
            "last_flip_revision": self.last_flip_revision,
            "runs_since_failure": self.runs_since_failure,
            "broken": self.broken,
            "pattern": self.pattern,
            "broken_since": self.broken_since,
            "failing_streak": self.failing_streak,
            "last_pass_revision": self.last_pass_revision,
            "episodes": self.episodes,
            "scatter": rounded(self.scatter),
            "entropy": rounded(self.entropy),
        }


DEFAULT_CONFIG = ScoringConfig()


def score_runs(
    runs: Iterable[Run], config: ScoringConfig = DEFAULT_CONFIG, summary: HistorySummary | None = None
) -> FlakeScore:
    """Score a test's runs (oldest first): the newest ``config.window`` non-skipped runs count.

    ``summary`` describes the test's whole history *including* these runs (what the store keeps next
    to the window); without it, it is built from ``runs``, which then should be the whole history.
    """
    runs = list(runs)
    if summary is None:
        summary = summarize(runs)
    window = [run for run in runs if run.status != "skipped"][-config.window :]
    components = components_of(window)
    score = combine(components, config.weights)
    factors = confidence_factors(window, config)
    confidence = confidence_of(factors)
    failures = sum(1 for run in window if run.failed)
    runs_since_flip = None if summary.last_flip_run is None else summary.runs - summary.last_flip_run
    found = episodes_of(window, summary)
    recommendation = recommend(
        score,
        confidence,
        runs=len(window),
        failures=failures,
        flips=summary.flips,
        runs_since_flip=runs_since_flip,
        config=config,
        episodes=found,
    )
    return FlakeScore(
        score=score,
        confidence=confidence,
        components=components,
        recommendation=recommendation,
        runs=len(window),
        failures=failures,
        confidence_factors=factors,
        total_runs=summary.runs,
        total_failures=summary.failures,
        flips=summary.flips,
        last_flip_revision=summary.last_flip_revision,
        runs_since_failure=summary.runs_since_failure,
        broken=len(window) >= config.min_runs and failures == len(window),
        pattern=found.pattern,
        broken_since=found.streak_revision if found.pattern == "broken" else None,
        failing_streak=found.streak,
        last_pass_revision=found.last_pass_revision,
        episodes=found.episodes,
        scatter=found.scatter,
        entropy=found.entropy,
    )


class History:
    """One test's rolling window and summary, fed one run at a time as the store keeps them: how a
    test is scored after every run (the main-branch tests and benchmark replay histories with it)."""

    def __init__(self, config: ScoringConfig = DEFAULT_CONFIG, summary: HistorySummary | None = None):
        self.config = config
        self.window: deque[Run] = deque(maxlen=config.window)
        self.summary = summary if summary is not None else HistorySummary()

    def add(self, run: Run) -> None:
        self.summary.add(run)
        if run.status != "skipped":
            self.window.append(run)

    def score(self) -> FlakeScore:
        return score_runs(self.window, self.config, self.summary)
