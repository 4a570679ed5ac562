"""Reading webhook bodies before they are authenticated, in bounded memory (docs/hardening.md, 5).

A GitHub delivery's signature covers its body, so the body must be read before anything is known about
the sender. Whoever can reach ``POST /github`` can make flakebot read; what it may hold is bounded:

* a body declared longer than the cap (``Content-Length`` over GitHub's 25 MB) is refused before any
  of it is read (413), and so is one that turns out longer than it said;
* the bytes held by all requests not yet authenticated together never exceed one budget
  (:class:`ByteBudget`): a request whose next chunk does not fit waits for room, and gives up with 503
  after :data:`BUDGET_WAIT` seconds; its bytes are released once its signature is checked, either way;
* a body must arrive within :data:`READ_DEADLINE` seconds (GitHub itself gives up after 10), or 408.

aiohttp reads ahead of the handler only up to its small per-connection buffer (about 64 KB) and then
stops reading from the socket, so what is not yet taken from the stream costs next to nothing.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

READ_DEADLINE = 30.0  # seconds for a whole body to arrive
BUDGET_WAIT = 10.0  # seconds a request waits for room in the budget before 503


class BodyRefused(Exception):
    """The body was not read (in full): ``status`` and ``reason`` are the answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ByteBudget:
    """At most ``limit`` bytes held, across all the requests that hold some."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._room = asyncio.Condition()

    async def take(self, size: int, wait: float) -> None:
        """Hold ``size`` more bytes, waiting up to ``wait`` seconds for room (TimeoutError)."""
        async with self._room:
            async with asyncio.timeout(wait):
                await self._room.wait_for(lambda: self.used + size <= self.limit)
            self.used += size

    async def give(self, size: int) -> None:
        if size:
            async with self._room:
                self.used -= size
                self._room.notify_all()


def refuse_declared(request: web.Request, max_bytes: int) -> None:
    """413 before reading when the request says its body is longer than ``max_bytes``."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyRefused(
            413, f"the body is {declared} bytes, over the {max_bytes} bytes a delivery may have"
        )


async def read_unauthenticated(request: web.Request, budget: ByteBudget, max_bytes: int) -> bytes:
    """The body of a request whose sender is not yet known, read within the budget and the deadline."""
    refuse_declared(request, max_bytes)
    chunks: list[bytes] = []  # joined once at the end: no copies while it grows
    held = 0
    try:
        async with asyncio.timeout(READ_DEADLINE):
            async for chunk in request.content.iter_any():
                if held + len(chunk) > max_bytes:
                    raise BodyRefused(413, f"the body is over the {max_bytes} bytes a delivery may have")
                try:
                    await budget.take(len(chunk), BUDGET_WAIT)
                except TimeoutError:
                    raise BodyRefused(503, "too many deliveries are being read: try again later") from None
                chunks.append(chunk)
                held += len(chunk)
        return b"".join(chunks)
    except TimeoutError:
        raise BodyRefused(408, f"the body did not arrive within {READ_DEADLINE:.0f} s") from None
    finally:
        chunks.clear()
        await budget.give(held)
