"""Stage 3, judge: each failure's final verdict from the flake model, known issues and its history.

:func:`classify` asks the repository's flake model (its own, else the shared one; the repository's
``threshold:`` when it sets one) for a :class:`ModelVerdict` per failure, :data:`NO_MODEL` when none has
been trained. :func:`judge` combines each with the known-issue patterns and the test's history into a
:class:`Judgement` (the rules are ``bot.verdict.final_verdict``'s, pure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from bot.context import Context
from bot.normalize import failing_part
from bot.run.history import TestHistory
from bot.run.results import NO_MODEL, UNLOADABLE_MODEL, Judgement, ModelVerdict, TestResult
from bot.run.scope import RunScope
from bot.verdict import final_verdict

EXCERPT_LINES = 25


async def classify(scope: RunScope, failures: list[TestResult]) -> list[ModelVerdict]:
    """The flake model's verdict on each failure (in the order given)."""
    if not failures:
        return []
    model = await scope.model()
    if model is None:
        return [NO_MODEL if scope.model_problem is None else UNLOADABLE_MODEL] * len(failures)
    with scope.ctx.metrics.classify_seconds.time():
        explained = await asyncio.to_thread(model.explain, [f.as_record() for f in failures])
    verdicts = [ModelVerdict.from_explain(v) for v in explained]
    threshold = scope.config.threshold
    return verdicts if threshold is None else [v.with_threshold(threshold) for v in verdicts]


def judge(
    scope: RunScope,
    failures: list[TestResult],
    verdicts: list[ModelVerdict],
    histories: Mapping[tuple[str, str], TestHistory],
) -> list[Judgement]:
    """The judgement of each failure; ``histories`` include this run (``history.record``)."""
    judgements = []
    for failure, model in zip(failures, verdicts, strict=True):
        history = histories.get(failure.key)
        issue = known_issue(scope.ctx, failure)
        verdict = final_verdict(
            model.as_dict(),
            history.score if history else None,
            known_issue=issue,
            infra_reason=failure.infra,
            passed_on_revision=history is not None and history.passed_on_revision,
            default_branch_failing=history.default_branch_failing if history else None,
            config=scope.config.scoring,
        )
        judgements.append(Judgement(test=failure.test, job=failure.job, job_url=failure.job_url or scope.run.html_url,
                                    verdict=verdict, model=model, known_issue=issue, lines=failure.lines,
                                    excerpt=excerpt_of(failure.log)))  # fmt: skip
        scope.ctx.metrics.failures.labels(scope.run.repo.forge, verdict.verdict).inc()
    return judgements


def known_issue(ctx: Context, failure: TestResult) -> dict[str, Any] | None:
    """The known issue the failure's log matches (``FLAKEBOT_KNOWN_ISSUES``), if any."""
    if ctx.known_issues is None:
        return None
    match = ctx.known_issues.match(failure.log)
    return {"issue": match.issue, "slug": match.slug} if match else None


def excerpt_of(text: str) -> str:
    """What the comment shows of a failure's log: the end of its failing part (the lines the model
    read, without CI markup)."""
    return "\n".join(failing_part(text)[-EXCERPT_LINES:])
