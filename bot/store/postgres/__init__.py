"""The store of several instances: PostgreSQL through psycopg 3 and its asynchronous connection pool.

Every call takes a connection from the pool for its statement or its transaction, so no call waits
behind another (the embedded SQLite store has one thread). Each concern of the interface is a module
of this package; this one opens the pool, brings the schema up to date (``bot/store/migrations.py``,
under an advisory lock so instances starting together apply each migration once) and listens for the
deliveries other instances store.

The database is named by a URL, ``postgresql://user:password@host:port/dbname`` (``FLAKEBOT_DATABASE_URL``,
libpq's syntax: ``?sslmode=require``, ``?host=/cloudsql/PROJECT:REGION:INSTANCE`` for a Unix socket,
``?options=-csearch_path%3Dflakebot`` for a schema of its own all work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bot.store import StoreError
from bot.store.adapters import BlockingStore
from bot.store.base import AsyncStore
from bot.store.migrations import MIGRATIONS, newer_than_known
from bot.store.postgres.backfill import PostgresBackfill
from bot.store.postgres.changes import PostgresChanges
from bot.store.postgres.configs import PostgresConfigs
from bot.store.postgres.history import PostgresHistory
from bot.store.postgres.incidents import PostgresIncidents
from bot.store.postgres.models import PostgresModels
from bot.store.postgres.quarantine import PostgresQuarantine
from bot.store.postgres.queue import PostgresQueue, lock_key
from bot.store.postgres.training import PostgresTraining

log = logging.getLogger(__name__)


def describe(url: str) -> str:
    """The database's address without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the database of FLAKEBOT_DATABASE_URL"
    return f"{info.get('user') or ''}@{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


class PostgresStore(
    PostgresQueue,
    PostgresHistory,
    PostgresTraining,
    PostgresChanges,
    PostgresQuarantine,
    PostgresIncidents,
    PostgresBackfill,
    PostgresConfigs,
    PostgresModels,
    AsyncStore,
):
    """Open with :meth:`open`; ``blocking`` is the same store for worker threads."""

    score_batch = 500  # no thread to share: bigger trips

    def __init__(self, url: str, pool: AsyncConnectionPool, schema: str):
        self.url, self.pool, self.schema = url, pool, schema
        self.namespace = schema
        self.channel = f"flakebot_deliveries_{schema}"[:63]
        self.blocking = BlockingStore(self, asyncio.get_running_loop())
        self._wakers: list[Callable[[str], None]] = []
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, max_size: int = 10) -> PostgresStore:
        """Connect, and bring the schema up to date. StoreError when the database cannot be reached or
        was written by a newer flakebot."""
        pool = AsyncConnectionPool(
            url, min_size=1, max_size=max_size, open=False, name="flakebot",
            kwargs={"autocommit": True, "row_factory": dict_row},
        )  # fmt: skip
        try:
            await pool.open(wait=True, timeout=15)
        except Exception as exc:  # PoolTimeout with the server's reason in the log
            await pool.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {describe(url)} (FLAKEBOT_DATABASE_URL): {type(exc).__name__}: "
                f"{exc}. Check that the server runs, the address and the credentials"
            ) from None
        try:
            async with pool.connection() as conn:
                schema = (await (await conn.execute("SELECT current_schema() AS s")).fetchone())["s"]
                await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(url, pool, schema)

    def on_delivery(self, wake: Callable[[str], None]) -> None:
        self._wakers.append(wake)
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="flakebot-store-listen")

    async def _listen(self) -> None:
        """LISTEN on a connection of its own (a pooled one goes back to the pool); reconnects."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    async for notice in conn.notifies():
                        for wake in self._wakers:
                            wake(notice.payload)  # the delivery's forge
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the workers still poll meanwhile
                log.warning("listening for deliveries failed (%s); trying again in 5 s", exc)
                await asyncio.sleep(5)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.pool.close()


async def _migrate(conn: psycopg.AsyncConnection) -> None:
    """Apply the missing migrations, each in a transaction, under an advisory lock of the schema (so
    instances starting together wait for the first and apply nothing twice)."""
    schema = (await (await conn.execute("SELECT current_schema() AS s")).fetchone())["s"]
    key = lock_key(f"{schema}:migrations")
    await conn.execute("SELECT pg_advisory_lock(%s)", [key])
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, what text, applied_at text)"
        )
        rows = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
        have = {r["version"] for r in rows}
        if refusal := newer_than_known(have):
            raise StoreError(refusal)
        for step in MIGRATIONS:
            if step.version in have:
                continue
            async with conn.transaction():
                await conn.execute(step.postgres.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, what, applied_at) VALUES (%s, %s, now()::text)",
                    [step.version, step.what],
                )
            log.info("database schema migrated to version %d: %s", step.version, step.what)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", [key])
