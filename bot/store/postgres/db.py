"""What every part of the PostgreSQL backend shares: the connection pool and three helpers."""

from __future__ import annotations

import time
from typing import Any

from psycopg_pool import AsyncConnectionPool


class PostgresDB:
    pool: AsyncConnectionPool

    async def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall() if cursor.description else []

    async def _one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    async def _exec(self, sql: str, params: Any = ()) -> int:
        """Run one statement; the number of rows it changed."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
