"""What to do about a finished CI run: one pure function of its judged failures, the repository's
settings and the attempt number. No I/O; the run's flow (``bot/run/flow.py``) carries the decision out.

Rules:

* **retry** the run's failed jobs only when every failure is a flake, a known issue or an
  infrastructure failure, none is part of an open infrastructure incident (the same failure in many
  changes at once: a re-run would fail again, ``bot/incidents.py``), the run is below the retry budget (``retry.max_attempts`` attempts in total,
  3 by default), retries are enabled and the repository's settings are valid. Never for a real or an
  unknown failure; never when no failure could be identified. A flake the log model found is retried
  only above the model's **retry threshold** — the flake probability at which its trial on held-out
  failures reached the chosen precision (`bot.trial`); a model never trialled retries nothing.
* **comment** on the change(s) of the run when commenting is enabled (always in safe mode: the
  comment is where the settings error is shown).
* **quarantine** is not decided here: which issue to open, update or close follows the tests' history
  (``bot.quarantine.plan_quarantine``, carried out by ``bot/run/quarantine.py``).
* **dry run** (repository or service setting): the same decision, marked so nothing is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.config import RepoConfig
from bot.run.results import Judgement
from bot.verdict import RETRY_VERDICTS


@dataclass(frozen=True)
class Decision:
    retry: bool
    retry_reason: str
    comment: bool
    dry_run: bool
    counts: Mapping[str, int]


def sure_enough_to_retry(failure: Judgement) -> bool:
    """A flake is sure enough to re-run its job unless the log model alone called it one with a flake
    probability at or below the model's retry threshold (or with no threshold: never trialled)."""
    if failure.verdict.verdict != "flake" or failure.verdict.rule != "model":
        return True
    threshold, p = failure.model.retry_threshold, failure.model.flake_probability
    return threshold is not None and p is not None and p > threshold


def _unsure_reason(unsure: Sequence[Judgement]) -> str:
    thresholds = {f.model.retry_threshold for f in unsure}
    if thresholds == {None}:
        return (
            f"{len(unsure)} flake(s) were called so by a log model that was never trialled on failures it "
            "did not learn from, and such a model re-runs nothing (`flakebot trial`, `/flake retrain`)"
        )
    top = max(f.model.flake_probability or 0.0 for f in unsure)
    limit = min(t for t in thresholds if t is not None)
    return (
        f"{len(unsure)} flake(s) are not sure enough to re-run: flake probability up to {top:.0%}, "
        f"but the model re-runs only above {limit:.0%}, where its trial reached the chosen precision"
    )


def decide(
    failures: Sequence[Judgement],
    config: RepoConfig,
    attempt: int,
    *,
    dry_run: bool = False,
) -> Decision:
    counts = Counter(f.verdict.verdict for f in failures)
    blocking = {v: n for v, n in counts.items() if v not in RETRY_VERDICTS}
    if not failures:
        retry, reason = False, "no failed test could be identified in the failed jobs"
    elif config.safe_mode:
        retry, reason = False, config.safe_reason
    elif not config.retry_enabled:
        retry, reason = False, "automatic retries are turned off in the repository's settings"
    elif incident := [f for f in failures if f.verdict.verdict == "incident"]:
        numbers = sorted(
            {f"#{f.incident['number']}" for f in incident if f.incident and f.incident.get("number")}
        )
        which = f" ({', '.join(numbers)})" if numbers else ""
        retry, reason = (
            False,
            f"{len(incident)} failure(s) are part of an open infrastructure incident{which}: retries pause "
            "while it lasts (they would fail again)",
        )
    elif blocking:
        what = ", ".join(f"{n} {v}" for v, n in sorted(blocking.items()))
        retry, reason = (
            False,
            f"not every failure is a flake ({what}): real, broken and unknown failures are never retried",
        )
    elif unsure := [f for f in failures if not sure_enough_to_retry(f)]:
        retry, reason = False, _unsure_reason(unsure)
    elif attempt >= config.max_attempts:
        retry, reason = (
            False,
            f"this was attempt {attempt} of {config.max_attempts}: the retry budget is spent",
        )
    else:
        retry = True
        reason = f"every failure is a flake, a known issue or an infrastructure failure (attempt {attempt + 1} of {config.max_attempts})"
    return Decision(
        retry=retry,
        retry_reason=reason,
        comment=config.comment or config.safe_mode,
        dry_run=dry_run or config.dry_run,
        counts=dict(counts),
    )
