"""Each repository's settings file as last read, on PostgreSQL."""

from __future__ import annotations

from typing import Any

from bot.store.base import AsyncConfigStore
from bot.store.postgres.db import PostgresDB, now_iso


class PostgresConfigs(PostgresDB, AsyncConfigStore):
    async def remember_config(self, repo: str, text: str | None) -> None:
        await self._exec(
            "INSERT INTO repo_configs (repo, text, read_at) VALUES (%s, %s, %s) ON CONFLICT (repo) DO UPDATE "
            "SET text = excluded.text, read_at = excluded.read_at",
            [repo, text, now_iso()],
        )

    async def last_config(self, repo: str) -> dict[str, Any] | None:
        return await self._one("SELECT text, read_at FROM repo_configs WHERE repo = %s", [repo])
