"""Finished CI runs go through the run path (``bot/run/flow.py``)."""

from __future__ import annotations

import logging

from gidgethub import sansio

from bot.context import Context
from bot.forge import github_payloads, gitlab_payloads
from bot.forge.base import Forge
from bot.hooks.router import Router
from bot.run.flow import handle_run

log = logging.getLogger(__name__)
github, gitlab = Router(), Router()


@github.register("workflow_run", action="completed")
async def workflow_run_completed(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    await handle_run(ctx, forge, github_payloads.run_from_workflow_run(event.data))


@github.register("check_suite", action="completed")
async def check_suite_completed(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    run = github_payloads.run_from_check_suite(event.data)
    if run is None:
        log.debug("check suite of GitHub Actions: its workflow_run event covers it")
        return
    await handle_run(ctx, forge, run)


@gitlab.register("Pipeline Hook")
async def pipeline_finished(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    run = gitlab_payloads.run_from_pipeline_hook(event.data)
    if run is not None:  # None: still running, or neither failed nor successful
        await handle_run(ctx, forge, run)


@gitlab.register("Job Hook")
async def job_finished(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    """A retried job that passed on the same commit: its earlier failures were flaky (recorded at once;
    the Pipeline Hook that follows does the analysis)."""
    job = gitlab_payloads.job_from_job_hook(event.data)
    if job is not None and job.kind == "retry-passed":
        count = await ctx.store.label_passed_on_retry(
            job.repo.key, job.pipeline_id, job.retries + 1, None, job=job.job.name
        )
        log.info(
            "%s job %s passed on retry: %d earlier failure(s) recorded as flaky",
            job.repo.full_name,
            job.job.name,
            count,
        )
