"""The durable queue and the named locks, on PostgreSQL.

A claim takes the oldest due delivery with ``FOR UPDATE SKIP LOCKED`` (workers of every instance claim
at once without waiting on each other), a delivery whose lease ran out included; storing a delivery
notifies the channel ``flakebot_deliveries_<schema>`` so idle workers of every instance wake up
(``PostgresStore.on_delivery``). A lock held for a block of code is a session advisory lock on a
connection of its own: it is released when the block ends, and by the server when the holder's
connection ends, however its process ended.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from bot.store.base import AsyncLockStore, AsyncQueueStore
from bot.store.postgres.db import PostgresDB
from bot.store.records import Delivery


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key of a lock name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class PostgresQueue(PostgresDB, AsyncQueueStore, AsyncLockStore):
    channel: str  # LISTEN/NOTIFY channel of this schema's deliveries
    namespace: str  # advisory lock keys are the database's: names are prefixed with the schema

    async def enqueue(self, forge: str, delivery_id: str, event: str, payload: bytes) -> bool:
        rows = await self._rows(
            "WITH stored AS (INSERT INTO deliveries (forge, delivery_id, event, payload, received_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (forge, delivery_id) DO NOTHING RETURNING id) "
            "SELECT id, pg_notify(%s, %s) FROM stored",
            [forge, delivery_id, event, payload, time.time(), self.channel, forge],
        )
        return bool(rows)

    async def claim(
        self, now: float, lease: float, owner: str = "", forges: Sequence[str] | None = None
    ) -> Delivery | None:
        row = await self._one(
            "UPDATE deliveries SET status = 'working', attempts = attempts + 1, lease_until = %(until)s, "
            "owner = %(owner)s WHERE id = (SELECT id FROM deliveries WHERE ((status = 'pending' AND "
            "next_attempt_at <= %(now)s) OR (status = 'working' AND lease_until < %(now)s)) "
            "AND (%(any)s OR forge = ANY(%(forges)s)) ORDER BY next_attempt_at, id LIMIT 1 "
            "FOR UPDATE SKIP LOCKED) RETURNING id, forge, delivery_id, event, payload, attempts, status",
            {
                "now": now,
                "until": now + lease,
                "owner": owner,
                "any": forges is None,
                "forges": list(forges or []),
            },
        )
        return None if row is None else Delivery(**{**row, "payload": bytes(row["payload"])})

    async def renew(self, delivery: int, until: float) -> None:
        await self._exec(
            "UPDATE deliveries SET lease_until = %s WHERE id = %s AND status = 'working'", [until, delivery]
        )

    async def finish(self, delivery: int) -> None:
        await self._exec(
            "UPDATE deliveries SET status = 'done', finished_at = %s, lease_until = NULL, payload = '' "
            "WHERE id = %s",
            [time.time(), delivery],
        )

    async def fail(self, delivery: int, error: str, retry_at: float | None) -> None:
        if retry_at is None:
            await self._exec(
                "UPDATE deliveries SET status = 'dead', error = %s, finished_at = %s, lease_until = NULL "
                "WHERE id = %s",
                [error[:2000], time.time(), delivery],
            )
        else:
            await self._exec(
                "UPDATE deliveries SET status = 'pending', error = %s, next_attempt_at = %s, lease_until = NULL "
                "WHERE id = %s",
                [error[:2000], retry_at, delivery],
            )

    async def recover(self, now: float, owners: list[str] | None = None) -> int:
        return await self._exec(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE status = 'working' "
            "AND (lease_until < %s OR owner = ANY(%s))",
            [now, owners or []],
        )  # advisory locks die with their connections: none to release

    async def working_owners(self) -> list[str]:
        rows = await self._rows(
            "SELECT DISTINCT owner FROM deliveries WHERE status = 'working' AND owner IS NOT NULL ORDER BY owner"
        )
        return [r["owner"] for r in rows]

    async def queue_depth(self) -> int:
        row = await self._one("SELECT count(*) AS n FROM deliveries WHERE status IN ('pending', 'working')")
        return int(row["n"]) if row else 0

    async def deliveries(self, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, forge, delivery_id, event, status, attempts, error FROM deliveries"
        if status:
            return await self._rows(sql + " WHERE status = %s ORDER BY id", [status])
        return await self._rows(sql + " ORDER BY id")

    async def defer(self, delivery: int, reason: str, until: float) -> int:
        row = await self._one(
            "UPDATE deliveries SET status = 'pending', attempts = greatest(0, attempts - 1), error = %s, "
            "next_attempt_at = %s, lease_until = NULL, deferrals = deferrals + 1 WHERE id = %s RETURNING deferrals",
            [reason[:2000], until, delivery],
        )
        return int(row["deferrals"]) if row else 0

    async def remember_body(self, forge: str, digest: bytes, now: float, window: float) -> bool:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM webhook_bodies WHERE seen_at < %s", [now - window])
            cursor = await conn.execute(
                "INSERT INTO webhook_bodies (forge, digest, seen_at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [forge, digest, now],
            )
            return cursor.rowcount == 1

    async def forget_body(self, forge: str, digest: bytes) -> None:
        await self._exec("DELETE FROM webhook_bodies WHERE forge = %s AND digest = %s", [forge, digest])

    # --- locks ---------------------------------------------------------------------------------------
    async def try_lock(self, name: str, owner: str, now: float, ttl: float) -> bool:
        return (
            await self._exec(
                "INSERT INTO locks (name, owner, until) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
                "SET owner = excluded.owner, until = excluded.until "
                "WHERE locks.until < %s OR locks.owner = excluded.owner",
                [name, owner, now + ttl, now],
            )
            == 1
        )

    async def unlock(self, name: str, owner: str) -> None:
        await self._exec("DELETE FROM locks WHERE name = %s AND owner = %s", [name, owner])

    async def lock_holder(self, name: str, now: float) -> str | None:
        row = await self._one("SELECT owner FROM locks WHERE name = %s AND until >= %s", [name, now])
        return row["owner"] if row else None

    @contextlib.asynccontextmanager
    async def hold(self, name: str, owner: str, wait: float) -> AsyncIterator[None]:
        key = lock_key(f"{self.namespace}:{name}")
        async with self.pool.connection() as conn:
            await conn.execute(
                "SELECT set_config('lock_timeout', %s, false)", [f"{max(1, int(wait * 1000))}ms"]
            )
            try:
                await conn.execute("SELECT pg_advisory_lock(%s)", [key])
            except psycopg.errors.LockNotAvailable:
                raise TimeoutError(f"lock {name} is still held after {wait:.0f}s") from None
            finally:
                await conn.execute("SELECT set_config('lock_timeout', '0', false)")
            try:
                yield
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", [key])
                except BaseException:
                    await conn.close()  # the pool drops it, and the server releases the lock
                    raise
