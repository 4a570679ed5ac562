"""Webhook handlers, one module per concern, each with a router per forge.

A delivery reaches them from the durable queue (``bot/queue.py``), never from the HTTP request:
:func:`dispatch` parses the stored body and calls every handler registered for its event.

* ``runs``      finished CI runs → the run path (``bot/run/flow.py``): GitHub ``workflow_run``/
                ``check_suite``, GitLab ``Pipeline Hook``/``Job Hook``
* ``outcomes``  what happened to a change afterwards (merged: its failures were flake evidence)
* ``chatops``   ``/flake`` commands in PR/MR comments

:data:`ROUTERS` composes each forge's routers once, at import; its events are what ``/github`` and
``/gitlab`` accept (``bot/web.py``), so no other list of wanted events exists.
"""

from __future__ import annotations

import json

from gidgethub import sansio

from bot.context import Context
from bot.forge import github_payloads, gitlab_payloads
from bot.forge.base import Forge
from bot.hooks import chatops, outcomes, runs
from bot.hooks.router import Router
from bot.queue import PermanentError
from bot.store import Delivery

_MODULES = (runs, outcomes, chatops)
ROUTERS: dict[str, Router] = {
    "github": Router(*(m.github for m in _MODULES)),
    "gitlab": Router(*(m.gitlab for m in _MODULES)),
}


async def dispatch(ctx: Context, forges: dict[str, Forge], delivery: Delivery) -> None:
    """Process one stored delivery (the queue's handler)."""
    forge, router = forges.get(delivery.forge), ROUTERS.get(delivery.forge)
    if forge is None or router is None:
        raise PermanentError(f"{delivery.forge} is not configured on this flakebot")
    try:
        payload = json.loads(delivery.payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"the stored body is not JSON: {exc}") from exc
    event = sansio.Event(payload, event=delivery.event, delivery_id=delivery.delivery_id)
    try:
        await router.dispatch(event, ctx, forge)
    except (github_payloads.PayloadError, gitlab_payloads.PayloadError) as exc:
        raise PermanentError(f"malformed {delivery.event} payload: {exc}") from exc
