"""Workers that process stored webhook deliveries, with bounded retries.

The webhook endpoint only stores a delivery and answers (milliseconds); these workers take deliveries
from the store one at a time, each for a lease, and finish them. A delivery whose processing raises is
tried again later with exponential back-off (30 s, 2 min, 8 min, 32 min, 2 h) and given up after
``max_attempts`` (it stays in the store as ``dead`` with its error, for ``flakebot``'s operator). A
forge's rate limit (:class:`~bot.forge.base.RateLimited`) is no failed attempt: the delivery waits in
the queue as long as the forge asks, no worker held, and then goes on. Only a definitive answer is not
retried: a forge's 4xx other than a rate limit, or a :class:`PermanentError`
(a malformed payload, a forge that is not configured). Any other exception, a ``ValueError`` or a
``KeyError`` from a bug in a handler included, is tried again with back-off: a fix deployed meanwhile
still gets the delivery.
Each claim is a lease renewed while the work goes on. A delivery whose lease ran out (its process
died) is claimed again by any live worker of any instance sharing the database, while they run; at
start-up, those a crashed process of this host left half-done are put back at once, with the locks it
held. A process's owner id carries a token of its own start, so a restarted process whose pid is the
same (PID 1 in a container) still knows its predecessor's work for a dead process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from bot.context import Context
from bot.forge.base import ForgeError, RateLimited
from bot.store import Delivery
from bot.store.owner import dead_local_owners, process_owner

__all__ = ["PermanentError", "Queue", "backoff", "dead_local_owners", "is_permanent", "process_owner"]

log = logging.getLogger(__name__)

Handler = Callable[[Delivery], Awaitable[None]]


MAX_DEFERRALS = 48  # rate-limit waits before a delivery is given up (an hour's reset each: two days)


class PermanentError(Exception):
    """Processing this delivery again cannot succeed (malformed payload, unknown repository...)."""


def backoff(attempts: int, base: float = 30.0, cap: float = 7200.0) -> float:
    return min(cap, base * 4 ** max(0, attempts - 1))


def is_permanent(exc: BaseException) -> bool:
    """Whether trying the delivery again cannot succeed: only definitive answers are (a rate limit,
    whatever its status, is not one)."""
    if isinstance(exc, PermanentError):
        return True
    if isinstance(exc, RateLimited):
        return False
    if isinstance(exc, ForgeError) and exc.status is not None:
        return 400 <= exc.status < 500 and exc.status not in (408, 409, 425, 429)
    return False


class Queue:
    """``forges`` limits the workers to deliveries of those forges: the webhook queue takes
    ``("github", "gitlab")`` and flakebot's own jobs (``"internal"``, bot/jobs.py) have a queue of their
    own, so a long retrain never holds up webhook handling."""

    def __init__(self, ctx: Context, handler: Handler, *, workers: int = 2, lease: float = 120.0,
                 timeout: float = 1800.0, max_attempts: int = 6, poll: float = 1.0,
                 forges: tuple[str, ...] | None = None):  # fmt: skip
        self.ctx = ctx
        self.forges = forges
        self.handler = handler
        self.workers = workers
        self.lease = lease
        self.timeout = timeout
        self.owner = process_owner()
        self.max_attempts = max_attempts
        self.poll = poll
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.busy = 0

    async def start(self) -> None:
        self.ctx.store.on_delivery(self._stored)  # deliveries stored by any instance (PostgreSQL)
        dead = dead_local_owners(await self.ctx.store.working_owners())
        recovered = await self.ctx.store.recover(time.time(), dead)
        if recovered:
            log.warning("resuming %d delivery(ies) left unfinished by the previous process", recovered)
        self._tasks = [
            asyncio.create_task(self._work(i), name=f"flakebot-worker-{i}") for i in range(self.workers)
        ]
        await self._update_depth()

    def notify(self) -> None:
        """A delivery was stored: wake an idle worker."""
        self._wake.set()

    def _stored(self, forge: str) -> None:
        if self.forges is None or forge in self.forges:
            self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _renew(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            await self.ctx.store.renew(delivery.id, time.time() + self.lease)

    async def _update_depth(self) -> None:
        self.ctx.metrics.queue_depth.set(await self.ctx.store.queue_depth())

    async def _defer(self, delivery: Delivery, exc: RateLimited) -> None:
        """Wait as the forge asks, then go on: the attempt does not count; only a forge that never lets
        up (:data:`MAX_DEFERRALS` waits) gets the delivery given up."""
        reason = f"rate limited: {exc}"
        times = await self.ctx.store.defer(delivery.id, reason, time.time() + exc.wait)
        if times > MAX_DEFERRALS:
            log.error("giving up on %s delivery %s (%s): rate limited %d times: %s", delivery.forge,
                      delivery.delivery_id, delivery.event, times, exc)  # fmt: skip
            await self.ctx.store.fail(delivery.id, f"rate limited {times} times: {exc}", None)
            return
        log.warning("%s delivery %s (%s) waits %.0fs as the forge asks (rate limited, %d time(s)): %s",
                    delivery.forge, delivery.delivery_id, delivery.event, exc.wait, times, exc)  # fmt: skip

    async def _work(self, number: int) -> None:
        while not self._stopping:
            delivery = await self.ctx.store.claim(time.time(), self.lease, self.owner, self.forges)
            if delivery is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
                continue
            await self.process(delivery)

    async def process(self, delivery: Delivery) -> None:
        """Run the handler on one claimed delivery and record the outcome."""
        self.busy += 1
        start = time.perf_counter()
        heartbeat = asyncio.create_task(self._renew(delivery))
        try:
            await asyncio.wait_for(self.handler(delivery), timeout=self.timeout)
        except asyncio.CancelledError:
            raise  # shutting down: the lease runs out and the delivery is resumed later
        except RateLimited as exc:  # the forge asks to wait: the delivery waits in the queue, not a worker
            await self._defer(delivery, exc)
        except Exception as exc:  # the queue must survive any handler failure
            self.ctx.metrics.errors.labels(delivery.forge).inc()
            reason = f"{type(exc).__name__}: {exc}"
            # a forge that failed or refused says all in its message; anything else may be a bug
            trace = not isinstance(exc, ForgeError | PermanentError | TimeoutError)
            if is_permanent(exc) or delivery.attempts >= self.max_attempts:
                log.error("giving up on %s delivery %s (%s) after %d attempt(s): %s", delivery.forge,
                          delivery.delivery_id, delivery.event, delivery.attempts, reason, exc_info=trace)  # fmt: skip
                await self.ctx.store.fail(delivery.id, reason, None)
            else:
                wait = backoff(delivery.attempts)
                log.warning("%s delivery %s (%s) failed, retrying in %.0fs: %s", delivery.forge,
                            delivery.delivery_id, delivery.event, wait, reason, exc_info=trace)  # fmt: skip
                await self.ctx.store.fail(delivery.id, reason, time.time() + wait)
        else:
            await self.ctx.store.finish(delivery.id)
        finally:
            heartbeat.cancel()
            self.busy -= 1
            self.ctx.metrics.pipeline_seconds.observe(time.perf_counter() - start)
            await self._update_depth()
