"""Each repository's settings file as last read, on SQLite."""

from __future__ import annotations

from typing import Any

from bot.store.base import ConfigStore
from bot.store.sqlite.db import SQLiteDB, now_iso


class SQLiteConfigs(SQLiteDB, ConfigStore):
    def remember_config(self, repo: str, text: str | None) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO repo_configs (repo, text, read_at) VALUES (?, ?, ?) ON CONFLICT (repo) DO UPDATE "
                "SET text = excluded.text, read_at = excluded.read_at",
                [repo, text, now_iso()],
            )

    def last_config(self, repo: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT text, read_at FROM repo_configs WHERE repo = ?", [repo])
        return rows[0] if rows else None
