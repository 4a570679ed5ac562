"""One finished CI run, top to bottom: the stages in the order they run, and nothing else.

    scope → collect → classify → history → judge → incidents → decide → act (retry, quarantine, training
    data, comment)

Each stage is a module of ``bot/run/`` with typed inputs and outputs (``results.py``); the decision is
the pure ``bot.decide``. A failed run goes through every stage. A green run records its passes, marks
the failures of earlier attempts of the same commit as flaky (strong evidence for retraining), lets
the quarantine issues of tests that are stable again close, and says "passed" in the comment's section
of its workflow if it had one.

A repository seen for the first time with no model and no history gets a backfill of its CI history
queued (``bot/run/backfill.py``; a job, the webhook never waits for it), and while it runs the comment
says why the verdicts are unknown.

Every stage tolerates the forge: what cannot be read becomes a note for the comment, never a retry; a
step that fails for good raises, and the durable queue retries the whole delivery with back-off (every
action is idempotent: notes are found by marker, issues by marker and title, runs and failures are
stored once). Each stage's time goes to ``flakebot_step_seconds`` (fetch, split, classify, score, act).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.comment import run_section
from bot.context import Context
from bot.decide import Decision, decide
from bot.forge.base import Forge, ForgeError, RateLimited, Run
from bot.run import backfill, comments, history, incidents, judge, quarantine, training
from bot.run.collect import Collected, collect
from bot.run.scope import RunScope

log = logging.getLogger(__name__)


async def handle_run(ctx: Context, forge: Forge, run: Run) -> Decision | None:
    """Process one finished run (``hooks/runs.py`` calls this for workflow_run and Pipeline Hook)."""
    await backfill.on_first_sight(ctx, run.repo)  # no model, no history: read its history (a job)
    scope = await RunScope.open(ctx, forge, run)  # its settings and jobs, once
    if run.failed:
        return await failed_run(scope)
    await green_run(scope)
    return None


async def failed_run(scope: RunScope) -> Decision:
    collected = await collect(scope)  # logs and test reports → test results
    failures = collected.failures
    with scope.step("classify"):
        verdicts = await judge.classify(scope, failures)  # the flake model's verdict on each failure
    with scope.step("score"):
        # history first, so that each failure is judged with a history that includes it
        recorded = await history.record(scope, collected.results)
        relabelled = await training.label_retried_passes(scope, recorded.passes)
        judgements = judge.judge(scope, failures, verdicts, recorded.tests)
        # many changes failing the same way at once: an incident (set aside from the scores, not retried)
        checked = await incidents.check(scope, failures, judgements, recorded)
        judgements, recorded = checked.judgements, checked.recorded
        decision = decide(judgements, scope.config, scope.attempt, dry_run=scope.dry_run)
    log.info("%s run %s attempt %s: %s; retry: %s", scope.run.repo.full_name, scope.run.id, scope.attempt,
             dict(decision.counts), decision.retry_reason)  # fmt: skip
    with scope.step("act"):
        actions = await notes(scope, collected, checked, relabelled)  # what the comment says first
        actions.append(await rerun(scope, decision))
        actions += await quarantine.update(scope, recorded.scores)
        changes = [c.number for c in await scope.changes()] if decision.comment else scope.run.change_numbers
        await training.keep(scope, failures, judgements, changes[0] if changes else None)
        if decision.comment:
            shown = replace(scope.run, attempt=scope.attempt)  # GitLab has attempts per job only
            await comments.post(scope, run_section(shown, judgements, decision, actions))
    return decision


async def notes(
    scope: RunScope, collected: Collected, checked: incidents.Checked, relabelled: int
) -> list[str]:
    """The comment's lines about what this run could not read and what else was learnt from it."""
    problems = [*collected.notes, *([scope.model_problem] if scope.model_problem else [])]
    lines = [f"Note: {note}." for note in problems] + await backfill.reading_note(scope)
    lines += checked.actions
    if rerun_within := {(r.test, r.job) for r in collected.passed_on_retry}:
        lines.append(
            f"{len(rerun_within)} test(s) failed and then passed when the test runner re-ran them within their "
            "job: recorded in their history as flaky (a pass and a failure on one commit), not judged here."
        )
    if relabelled:
        lines.append(
            f"{relabelled} failure(s) of an earlier attempt passed on this one: they are recorded as flaky."
        )
    return lines


async def green_run(scope: RunScope) -> None:
    collected = await collect(scope)  # passes from the test reports, when the run has some
    with scope.step("score"):
        recorded = await history.record(scope, collected.results)
    with scope.step("act"):
        actions = []
        if relabelled := await training.label_passed_attempt(scope):
            actions.append(
                f"Attempt {scope.attempt} passed: the {relabelled} earlier failure(s) are recorded as flaky."
            )
        actions += await quarantine.update(scope, recorded.scores)
        await incidents.close_quiet(scope)
        if scope.config.comment or scope.config.safe_mode:
            await comments.mark_passed(scope, actions)


async def rerun(scope: RunScope, decision: Decision) -> str:
    """Re-run the failed jobs when the decision says so; what was done, for the comment."""
    if not decision.retry:
        return f"Did not re-run: {decision.retry_reason}."
    if decision.dry_run:
        return f"Dry run: would have re-run the failed jobs: {decision.retry_reason}."
    try:
        await scope.rerun_failed_jobs()  # once per attempt, even across a crash (False: made before it)
    except RateLimited:
        raise  # not "could not": the queue defers the run and it is decided again after the wait
    except ForgeError as exc:
        return f"Could not re-run the failed jobs: {exc}."
    return f"Re-ran the failed jobs: {decision.retry_reason}."
