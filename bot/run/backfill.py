"""A run of the past, read for a backfill through the run path's own stages; and the service's part.

:func:`read_run` reads every attempt of one finished run as the service would have read it live, one
:class:`RunScope` per attempt: ``collect`` (logs streamed and split by ``bot.split``; the test reports
with the last attempt, as they are the run's), ``history.record`` (passes too, scored once at the end of
the backfill), and the failures kept for training with their failing part, without a verdict (none was
given). Nothing is written to the forge.

In the service (``bot/run/flow.py``): :func:`on_first_sight` queues a backfill of a repository that has
no model and no history yet, and :func:`reading_note` is the comment's line saying that verdicts are
unknown because the history is still being read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from bot.config import RepoConfig
from bot.context import Context
from bot.forge.base import Forge, Job, Repo, Run
from bot.run import history
from bot.run.collect import collect
from bot.run.results import TestResult
from bot.run.scope import RunScope
from bot.run.training import kept_log
from bot.status import SUCCESS_CONCLUSION
from bot.store import Failure

log = logging.getLogger(__name__)

ACTIVE = ("queued", "listing", "reading", "labelling", "training")  # a backfill's unfinished statuses


@dataclass
class RunRead:
    jobs: int = 0  # of every attempt
    notes: list[str] = field(default_factory=list)  # what could not be read


def iso(value: str | None) -> str | None:
    """An API time as ``YYYY-MM-DDTHH:MM:SSZ`` (GitLab adds milliseconds, webhooks other forms)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attempts(run: Run, jobs: list[Job]) -> list[tuple[Run, list[Job]]]:
    """The run's attempts, oldest first: each as a :class:`Run` of that attempt (failed when one of its
    jobs failed, dated by its last finished job) with its jobs."""
    by_attempt: dict[int, list[Job]] = {}
    for job in jobs:
        by_attempt.setdefault(job.attempt, []).append(job)
    out = []
    for number in sorted(by_attempt):
        mine = by_attempt[number]
        failed = next((j.conclusion for j in mine if j.failed), None)
        finished = [t for j in mine if (t := iso(j.completed_at))]
        out.append((replace(run, attempt=number, conclusion=failed or SUCCESS_CONCLUSION,
                            created_at=max(finished) if finished else run.created_at), mine))  # fmt: skip
    return out


async def read_run(ctx: Context, forge: Forge, run: Run, config: RepoConfig) -> RunRead:
    """Read every attempt of ``run`` into the history and the training data (the tests it touched are
    scored by the caller, once for the whole backfill)."""
    jobs = await forge.list_all_jobs(run)
    read = RunRead(jobs=len(jobs))
    every = attempts(run, jobs)
    for number, (attempt, mine) in enumerate(every, start=1):
        scope = RunScope(ctx, forge, attempt, mine, config)
        collected = await collect(scope, reports=number == len(every))
        await history.record(scope, collected.results, score=False)
        read.notes += collected.notes
        await keep(scope, collected.failures)
    return read


async def keep(scope: RunScope, failures: list[TestResult]) -> None:
    """The attempt's failures, kept for training as the service keeps them, without a verdict. A
    failure whose log could not be read (expired, deleted) teaches nothing and is not kept."""
    model, run = await scope.model(), scope.run
    kept, seen = [], set()
    for failure in failures:
        text = kept_log(model, failure)
        if failure.key in seen or not text.strip():
            continue
        seen.add(failure.key)
        job = scope.job(failure.job)
        kept.append(Failure(test=failure.test, log=text, run_id=run.id, attempt=job.attempt if job else run.attempt,
                            job=failure.job, revision=run.sha,
                            change_number=run.change_numbers[0] if run.change_numbers else None,
                            url=failure.job_url, created_at=run.created_at))  # fmt: skip
    if kept:
        await scope.ctx.store.record_failures(scope.repo, kept)


# --- in the service -------------------------------------------------------------------------------


async def on_first_sight(ctx: Context, repo: Repo) -> bool:
    """Queue a backfill of a repository the service sees for the first time with no model and no
    history (``FLAKEBOT_BACKFILL_DAYS``; off: never). True when one was queued."""
    from bot.jobs import request_backfill

    days = ctx.settings.backfill_days
    if not days or await ctx.store.backfill_state(repo.key) is not None:
        return False
    if await asyncio.to_thread(ctx.models.active, repo.key) is not None or await ctx.store.has_history(
        repo.key
    ):
        return False
    queued = await request_backfill(ctx, repo, days=days, asked_by=None)
    if queued:
        log.info("%s: first run seen, no model and no history: backfill of %d days queued", repo.key, days)
    return queued


async def reading_note(scope: RunScope) -> list[str]:
    """The comment's line while the repository's history is still being read and no model judges it."""
    if await scope.model() is not None:
        return []
    state = await scope.ctx.store.backfill_state(scope.repo)
    if state is None or state["status"] not in ACTIVE:
        return []
    return [
        f"Verdicts are unknown because flakebot is still reading the last {state['days']} days of this "
        "repository's CI history; a first model learns from it when it is done."
    ]
