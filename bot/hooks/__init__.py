"""Webhook handlers, one module per concern, each with its own router.

A delivery reaches them from the durable queue (``bot/queue.py``), never from the HTTP request:
:func:`dispatch` parses the stored body and calls every handler registered for its event.

* ``runs``      finished CI runs → the pipeline (GitHub ``workflow_run``/``check_suite``, GitLab
                ``Pipeline Hook``/``Job Hook``)
* ``outcomes``  what happened to a change afterwards (merged: its failures were flake evidence)
* ``chatops``   ``/flake`` commands in PR/MR comments
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from gidgethub import routing, sansio

from bot.context import Context
from bot.forge import github_payloads, gitlab_payloads
from bot.forge.base import Forge
from bot.queue import PermanentError
from bot.store import Delivery

GitLabHandler = Callable[[dict[str, Any], Context, Forge], Awaitable[None]]


class GitLabRouter:
    """gidgethub's Router in miniature, for GitLab's ``X-Gitlab-Event`` names."""

    def __init__(self, *others: GitLabRouter):
        self.handlers: dict[str, list[GitLabHandler]] = defaultdict(list)
        for other in others:
            for event, handlers in other.handlers.items():
                self.handlers[event].extend(handlers)

    def register(self, event: str) -> Callable[[GitLabHandler], GitLabHandler]:
        def decorate(handler: GitLabHandler) -> GitLabHandler:
            self.handlers[event].append(handler)
            return handler

        return decorate

    async def dispatch(self, event: str, payload: dict[str, Any], ctx: Context, forge: Forge) -> None:
        for handler in self.handlers.get(event, []):
            await handler(payload, ctx, forge)


def _routers() -> tuple[routing.Router, GitLabRouter]:
    from bot.hooks import chatops, outcomes, runs

    modules = (runs, outcomes, chatops)
    return routing.Router(*(m.github for m in modules)), GitLabRouter(*(m.gitlab for m in modules))


GITHUB_EVENTS = frozenset({"workflow_run", "check_suite", "pull_request", "issue_comment"})
GITLAB_EVENTS = frozenset({"Pipeline Hook", "Job Hook", "Note Hook", "Merge Request Hook"})


async def dispatch(ctx: Context, forges: dict[str, Forge], delivery: Delivery) -> None:
    """Process one stored delivery (the queue's handler)."""
    forge = forges.get(delivery.forge)
    if forge is None:
        raise PermanentError(f"{delivery.forge} is not configured on this flakebot")
    try:
        payload = json.loads(delivery.payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"the stored body is not JSON: {exc}") from exc
    github, gitlab = _routers()
    try:
        if delivery.forge == "github":
            event = sansio.Event(payload, event=delivery.event, delivery_id=delivery.delivery_id)
            await github.dispatch(event, ctx, forge)
        else:
            await gitlab.dispatch(delivery.event, payload, ctx, forge)
    except (github_payloads.PayloadError, gitlab_payloads.PayloadError) as exc:
        raise PermanentError(f"malformed {delivery.event} payload: {exc}") from exc
