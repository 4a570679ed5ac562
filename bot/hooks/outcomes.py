"""What happened to a change afterwards: a merged change's failures on its head commit were flake
evidence (Cockpit's ``merged`` label)."""

from __future__ import annotations

import logging

from gidgethub import sansio

from bot.context import Context
from bot.forge import github_payloads, gitlab_payloads
from bot.forge.base import Forge
from bot.hooks.router import Router

log = logging.getLogger(__name__)
github, gitlab = Router(), Router()


@github.register("pull_request", action="closed")
async def pull_request_closed(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    merged = github_payloads.merged_head(event.data)
    if merged is not None:
        repo, number, sha = merged
        count = await ctx.store.label_merged(repo.key, sha)
        log.info("%s#%s merged: %d failure(s) of %s are flake evidence", repo.key, number, count, sha[:7])


@gitlab.register("Merge Request Hook")
async def merge_request_merged(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    merged = gitlab_payloads.merged_head(event.data)
    if merged is not None:
        repo, iid, sha = merged
        count = await ctx.store.label_merged(repo.key, sha)
        log.info("%s!%s merged: %d failure(s) of %s are flake evidence", repo.key, iid, count, sha[:7])
