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
    pull = event.data.get("pull_request") or {}
    sha = (pull.get("head") or {}).get("sha")
    if pull.get("merged") and sha:
        repo = github_payloads.repo_from_payload(event.data).key
        count = await ctx.store.label_merged(repo, sha)
        log.info(
            "%s#%s merged: %d failure(s) of %s are flake evidence", repo, pull.get("number"), count, sha[:7]
        )


@gitlab.register("Merge Request Hook")
async def merge_request_merged(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    attrs = event.data.get("object_attributes") or {}
    sha = (attrs.get("last_commit") or {}).get("id")
    if attrs.get("action") == "merge" and sha:
        repo = gitlab_payloads.repo_from_project(event.data.get("project")).key
        count = await ctx.store.label_merged(repo, sha)
        log.info(
            "%s!%s merged: %d failure(s) of %s are flake evidence", repo, attrs.get("iid"), count, sha[:7]
        )
