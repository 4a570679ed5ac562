"""Finished CI runs go through the pipeline."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context
from bot.forge import github_payloads, gitlab_payloads
from bot.forge.base import Forge
from bot.hooks import GitLabRouter
from bot.pipeline import handle_run, repo_key

log = logging.getLogger(__name__)
github = routing.Router()
gitlab = GitLabRouter()


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
async def pipeline_finished(payload: dict[str, Any], ctx: Context, forge: Forge) -> None:
    run = gitlab_payloads.run_from_pipeline_hook(payload)
    if run is not None:  # None: still running, or neither failed nor successful
        await handle_run(ctx, forge, run)


@gitlab.register("Job Hook")
async def job_finished(payload: dict[str, Any], ctx: Context, forge: Forge) -> None:
    """A retried job that passed on the same commit: its earlier failures were flaky (recorded at once;
    the Pipeline Hook that follows does the analysis)."""
    event = gitlab_payloads.job_from_job_hook(payload)
    if event is not None and event.kind == "retry-passed":
        count = await ctx.store.label_passed_on_retry(
            repo_key(event.repo), event.pipeline_id, event.retries + 1, None, job=event.job.name
        )
        log.info(
            "%s job %s passed on retry: %d earlier failure(s) recorded as flaky",
            event.repo.full_name,
            event.job.name,
            count,
        )
