"""Between the two interfaces: a synchronous store awaited (:class:`ThreadedStore`, SQLite in the
service) and an asynchronous one called from plain code (:class:`BlockingStore`, PostgreSQL on the
command line and in the service's worker threads)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.store.base import AsyncStore, Store


class ThreadedStore(AsyncStore):
    """A synchronous :class:`Store` (SQLite) awaited: its calls run on one dedicated thread, so the
    event loop never waits on the disk (SQLite writes one at a time anyway)."""

    delegates = True  # the wrapped store masks

    def __init__(self, store: Store, lock_lease: float = 120.0):
        self.store = self.blocking = store
        self.lock_lease = lock_lease  # the queue's lease: a dead holder's lock expires as its delivery's does
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flakebot-store")

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(fn, *args, **kwargs))

    async def batch(self, fn: Callable[[Store], Any]) -> Any:
        return await self._call(fn, self.store)

    async def score_inputs(
        self, repo: str, keys: list[tuple[str, str]], limit: int, branch: str | None
    ) -> Any:
        def read(store: Store) -> Any:
            return [(store.window(repo, t, j, limit, branch), store.summary(repo, t, j)) for t, j in keys]

        return await self._call(read, self.store)

    async def save_scores(self, repo: str, scores: list[tuple[str, str, dict[str, Any]]]) -> None:
        def save(store: Store) -> None:
            for test, job, score in scores:
                store.save_score(repo, test, job, score)

        await self._call(save, self.store)

    async def training_records(self, repo: str | None = None) -> list[dict[str, Any]]:
        return await self._call(lambda: list(self.store.training_records(repo)))

    @contextlib.asynccontextmanager
    async def hold(self, name: str, owner: str, wait: float) -> AsyncIterator[None]:
        """A lock row that lasts ``lock_lease`` seconds, renewed while held: a holder that dies leaves
        it for at most that long, as its delivery's lease (at once when its process is found dead at a
        start on the same host: ``recover``)."""
        deadline = time.monotonic() + wait
        while not await self.try_lock(name, owner, time.time(), self.lock_lease):
            if time.monotonic() > deadline:
                raise TimeoutError(f"lock {name} is still held by {await self.lock_holder(name, time.time())} "
                                   f"after {wait:.0f}s")  # fmt: skip
            await asyncio.sleep(0.05)

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lock_lease / 3)
                await self.try_lock(name, owner, time.time(), self.lock_lease)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            await self.unlock(name, owner)

    async def aclose(self) -> None:
        await self._call(self.store.close)
        self._thread.shutdown(wait=True)


def _threaded(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def call(self: ThreadedStore, *args: Any, **kwargs: Any) -> Any:
        return await self._call(getattr(self.store, name), *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = getattr(Store, name).__doc__
    return call


for _name in AsyncStore.__abstractmethods__ - set(vars(ThreadedStore)):
    setattr(ThreadedStore, _name, _threaded(_name))
ThreadedStore.__abstractmethods__ = frozenset()


class BlockingStore(Store):
    """An asynchronous store called from plain code: each call runs on the store's event loop (the
    service's, or a loop of its own on a thread for the command line) and waits for the answer.
    Never call it on that loop itself."""

    delegates = True  # the wrapped store masks

    def __init__(self, store: Any, loop: asyncio.AbstractEventLoop, thread: threading.Thread | None = None):
        self.store, self.loop, self._thread = store, loop, thread

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def training_records(self, repo: str | None = None) -> Any:
        return iter(self._run(self.store.training_records(repo)))

    def close(self) -> None:
        if self._thread is None:
            return  # the service's store: closed with the service
        self._run(self.store.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()

    @classmethod
    def start(cls, opener: Callable[[], Coroutine[Any, Any, Any]]) -> BlockingStore:
        """Open an asynchronous store on an event loop of its own, in a daemon thread."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="flakebot-store-loop", daemon=True)
        thread.start()
        try:
            store = asyncio.run_coroutine_threadsafe(opener(), loop).result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            raise
        return cls(store, loop, thread)


def _blocking(name: str) -> Callable[..., Any]:
    def call(self: BlockingStore, *args: Any, **kwargs: Any) -> Any:
        return self._run(getattr(self.store, name)(*args, **kwargs))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = getattr(Store, name).__doc__
    return call


for _name in Store.__abstractmethods__ - set(vars(BlockingStore)):
    setattr(BlockingStore, _name, _blocking(_name))
BlockingStore.__abstractmethods__ = frozenset()
