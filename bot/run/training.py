"""Stage 6, training data: the run's judged failures kept for retraining, and the evidence retries give.

Each failure is kept with its log cut to what the model reads, the model's verdict, the final verdict
and the judgement's evidence (``Store.record_failures``); labels arrive later: a merged change
(``hooks/outcomes.py``), a pass on a retry (here), a maintainer (``/flake flake|real``). The kept
judgements are also what ``/flake explain`` shows (:func:`judgements_of_change`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bot.context import Context
from bot.forge.base import Repo
from bot.normalize import failing_part
from bot.run.results import Judgement, ModelVerdict, TestResult
from bot.run.scope import RunScope
from bot.status import SUCCESS_CONCLUSION
from bot.store import Failure
from bot.verdict import Verdict, log_line


async def keep(
    scope: RunScope, failures: list[TestResult], judgements: list[Judgement], change: int | None
) -> None:
    """Store the run's failures (in ``judgements``' order) as training data of the ``change``."""
    if not failures:
        return
    model, run = await scope.model(), scope.run
    kept = []
    for failure, judgement in zip(failures, judgements, strict=True):
        log = kept_log(model, failure)
        job = scope.job(failure.job)
        kept.append(Failure(test=failure.test, log=log, run_id=run.id, attempt=job.attempt if job else run.attempt,
                            job=failure.job, revision=run.sha, change_number=change, model=judgement.model.as_dict(),
                            verdict=judgement.verdict.verdict, url=failure.job_url,
                            judgement=judgement.evidence()))  # fmt: skip
    await scope.ctx.store.record_failures(scope.repo, kept)


def kept_log(model: Any, failure: TestResult) -> str:
    """What is kept of a failure's log: the failing part the model reads (a model of Cockpit's
    whole-log method keeps the whole log; without a model, flakebot's failing part)."""
    if model is not None:
        return model.slim(failure.as_record())["log"]
    return "\n".join(failing_part(failure.log))


async def label_retried_passes(scope: RunScope, passes: list[TestResult]) -> int:
    """A failed run's retried jobs: the tests that failed on an earlier attempt and passed on this one
    (all of a job that passed) are strong flake evidence, even though the run failed again because of
    other tests. Returns how many stored failures were labelled."""
    passed: dict[str, set[str]] = defaultdict(set)
    for result in passes:
        if result.status == "success":
            passed[result.job].add(result.test)
    store, count = scope.ctx.store, 0
    for job in scope.jobs:
        if job.attempt <= 1:
            continue
        if job.conclusion == SUCCESS_CONCLUSION:
            count += await store.label_passed_on_retry(
                scope.repo, scope.run.id, job.attempt, None, job=job.name
            )
        elif passed.get(job.name):
            tests = sorted(passed[job.name])
            count += await store.label_passed_on_retry(
                scope.repo, scope.run.id, job.attempt, tests, job=job.name
            )
    return count


async def label_passed_attempt(scope: RunScope) -> int:
    """A green run on a later attempt: every failure of its earlier attempts was a flake."""
    if scope.attempt <= 1:
        return 0
    return await scope.ctx.store.label_passed_on_retry(scope.repo, scope.run.id, scope.attempt, None)


@dataclass(frozen=True)
class KeptJudgement:
    """A judgement as the store kept it, with the labels it got since."""

    judgement: Judgement
    run_id: int
    attempt: int
    label: str | None = None  # a maintainer's: flake | real
    labelled_by: str | None = None
    merged: bool = False  # its commit was merged anyway
    passed_on_retry: bool = False


async def judgements_of_change(ctx: Context, repo: Repo, change: int) -> list[KeptJudgement]:
    """The judged failures kept for a change, oldest first."""
    kept = []
    for row in await ctx.store.failures_of_change(repo.key, change):
        model = ModelVerdict.from_explain(row["model"] or {})
        evidence = row.get("judgement") or {}  # kept since flakebot stores judgements; older rows lack it
        verdict = Verdict(row["verdict"] or "unknown", evidence.get("log") or log_line(model.as_dict()),
                          evidence.get("history") or "not recorded with this failure", evidence.get("rule") or "")  # fmt: skip
        lines = evidence.get("lines")
        judgement = Judgement(test=row["test"], job=row["job"], job_url=row["url"] or "", verdict=verdict, model=model,
                              known_issue=evidence.get("known_issue"), lines=tuple(lines) if lines else None,
                              incident=evidence.get("incident"))  # fmt: skip
        kept.append(KeptJudgement(judgement, row["run_id"], row["attempt"], row["label"], row["labelled_by"],
                                  bool(row["merged"]), bool(row["passed_on_retry"])))  # fmt: skip
    return kept
