"""What to do about a finished CI run: one pure function of its judged failures, the repository's
settings and the attempt number. No I/O; the run's flow (``bot/run/flow.py``) carries the decision out.

Rules:

* **retry** the run's failed jobs only when every failure is a flake, a known issue or an
  infrastructure failure, the run is below the retry budget (``retry.max_attempts`` attempts in total,
  3 by default), retries are enabled and the repository's settings are valid. Never for a real or an
  unknown failure; never when no failure could be identified.
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
        retry, reason = False, "the repository's flakebot settings are not valid"
    elif not config.retry_enabled:
        retry, reason = False, "automatic retries are turned off in the repository's settings"
    elif blocking:
        what = ", ".join(f"{n} {v}" for v, n in sorted(blocking.items()))
        retry, reason = (
            False,
            f"not every failure is a flake ({what}): real and unknown failures are never retried",
        )
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
