"""The durable queue and the named locks, on SQLite."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.store.base import LockStore, QueueStore
from bot.store.records import Delivery
from bot.store.sqlite.db import SQLiteDB


class SQLiteQueue(SQLiteDB, QueueStore, LockStore):
    def enqueue(self, forge: str, delivery_id: str, event: str, payload: bytes) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO deliveries (forge, delivery_id, event, payload, status, attempts, "
                "next_attempt_at, received_at) VALUES (?, ?, ?, ?, 'pending', 0, 0, ?)",
                [forge, delivery_id, event, payload, time.time()],
            )
        return cursor.rowcount == 1

    def claim(
        self, now: float, lease: float, owner: str = "", forges: Sequence[str] | None = None
    ) -> Delivery | None:
        params: dict[str, Any] = {"now": now, "until": now + lease, "owner": owner}
        only = ""
        if forges is not None:
            names = {f"f{i}": forge for i, forge in enumerate(forges)}
            only = f"AND forge IN ({', '.join(':' + n for n in names) or 'NULL'}) "
            params.update(names)
        with self.db.conn:
            rows = self._rows(
                "UPDATE deliveries SET status = 'working', attempts = attempts + 1, lease_until = :until, "  # noqa: S608
                "owner = :owner WHERE id = (SELECT id FROM deliveries WHERE ((status = 'pending' "
                "AND next_attempt_at <= :now) OR (status = 'working' AND lease_until < :now)) "
                f"{only}ORDER BY next_attempt_at, id LIMIT 1) "
                "RETURNING id, forge, delivery_id, event, payload, attempts, status",
                params,
            )
        if not rows:
            return None
        row = rows[0]
        return Delivery(**{**row, "payload": bytes(row["payload"])})

    def finish(self, delivery: int) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE deliveries SET status = 'done', finished_at = ?, lease_until = NULL, payload = X'' "
                "WHERE id = ?",
                [time.time(), delivery],
            )

    def fail(self, delivery: int, error: str, retry_at: float | None) -> None:
        with self.db.conn:
            if retry_at is None:
                self.db.execute(
                    "UPDATE deliveries SET status = 'dead', error = ?, finished_at = ?, lease_until = NULL WHERE id = ?",
                    [error[:2000], time.time(), delivery],
                )
            else:
                self.db.execute(
                    "UPDATE deliveries SET status = 'pending', error = ?, next_attempt_at = ?, lease_until = NULL "
                    "WHERE id = ?",
                    [error[:2000], retry_at, delivery],
                )

    def renew(self, delivery: int, until: float) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE deliveries SET lease_until = ? WHERE id = ? AND status = 'working'", [until, delivery]
            )

    def recover(self, now: float, owners: list[str] | None = None) -> int:
        owners = owners or []
        marks = ", ".join("?" * len(owners)) or "NULL"
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE status = 'working' AND "  # noqa: S608
                f"(lease_until < ? OR owner IN ({marks}))",
                [now, *owners],
            )
            # a lock held for a block of code is "<process owner>/<holder>": gone with its process
            self.db.execute(
                f"DELETE FROM locks WHERE instr(owner, '/') > 0 AND substr(owner, 1, instr(owner, '/') - 1) IN ({marks})",  # noqa: S608
                owners,
            )
        return cursor.rowcount

    def working_owners(self) -> list[str]:
        rows = self._rows(
            "SELECT owner FROM deliveries WHERE status = 'working' AND owner IS NOT NULL UNION "
            "SELECT substr(owner, 1, instr(owner, '/') - 1) FROM locks WHERE instr(owner, '/') > 0"
        )
        return sorted({r["owner"] for r in rows})

    def queue_depth(self) -> int:
        return self.db.execute(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'working')"
        ).fetchone()[0]

    def deliveries(self, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, forge, delivery_id, event, status, attempts, error FROM deliveries"
        return self._rows(
            sql + (" WHERE status = ? ORDER BY id" if status else " ORDER BY id"), [status] if status else []
        )

    def defer(self, delivery: int, reason: str, until: float) -> int:
        with self.db.conn:
            rows = self._rows(
                "UPDATE deliveries SET status = 'pending', attempts = max(0, attempts - 1), error = ?, "
                "next_attempt_at = ?, lease_until = NULL, deferrals = deferrals + 1 WHERE id = ? "
                "RETURNING deferrals",
                [reason[:2000], until, delivery],
            )
        return rows[0]["deferrals"] if rows else 0

    def remember_body(self, forge: str, digest: bytes, now: float, window: float) -> bool:
        with self.db.conn:
            self.db.execute("DELETE FROM webhook_bodies WHERE seen_at < ?", [now - window])
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO webhook_bodies (forge, digest, seen_at) VALUES (?, ?, ?)",
                [forge, digest, now],
            )
        return cursor.rowcount == 1

    def forget_body(self, forge: str, digest: bytes) -> None:
        with self.db.conn:
            self.db.execute("DELETE FROM webhook_bodies WHERE forge = ? AND digest = ?", [forge, digest])

    def try_lock(self, name: str, owner: str, now: float, ttl: float) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT INTO locks (name, owner, until) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
                "WHERE locks.until < ? OR locks.owner = excluded.owner",
                [name, owner, now + ttl, now],
            )
        return cursor.rowcount == 1

    def unlock(self, name: str, owner: str) -> None:
        with self.db.conn:
            self.db.execute("DELETE FROM locks WHERE name = ? AND owner = ?", [name, owner])

    def lock_holder(self, name: str, now: float) -> str | None:
        row = self.db.execute("SELECT owner FROM locks WHERE name = ? AND until >= ?", [name, now]).fetchone()
        return row[0] if row else None
