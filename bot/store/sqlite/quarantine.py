"""Quarantine issues and maintainers' overrides, on SQLite."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.store.base import QuarantineStore
from bot.store.sqlite.db import SQLiteDB, now_iso


class SQLiteQuarantine(SQLiteDB, QuarantineStore):
    def set_quarantine(
        self,
        repo: str,
        test: str,
        *,
        number: int | None,
        url: str | None,
        state: str,
        jobs: Sequence[str] | None = None,
        expires_at: str | None = None,
    ) -> None:
        with self.db.conn:
            existing = self.db.execute(
                "SELECT since, state FROM quarantine WHERE repo = ? AND test = ?", [repo, test]
            ).fetchone()
            since = existing[0] if existing and existing[1] != "closed" and state != "closed" else now_iso()
            self.db["quarantine"].upsert(
                {"repo": repo, "test": test, "number": number, "url": url, "state": state, "since": since,
                 "updated_at": now_iso(), "jobs": json.dumps(list(jobs)) if jobs is not None else None,
                 "expires_at": expires_at},
                pk=("repo", "test"),
            )  # fmt: skip

    def quarantined(self, repo: str | None = None) -> list[dict[str, Any]]:
        where, params = ("AND repo = ?", [repo]) if repo else ("", [])
        rows = self._rows(
            f"SELECT repo, test, number, url, state, since, jobs, expires_at FROM quarantine "  # noqa: S608
            f"WHERE state != 'closed' {where} ORDER BY repo, test",
            params,
        )
        for row in rows:
            row["jobs"] = json.loads(row["jobs"]) if row["jobs"] else None
        return rows

    def set_override(self, repo: str, test: str, override: str | None, who: str | None) -> None:
        if override not in ("quarantine", "unquarantine", None):
            raise ValueError(f"override must be quarantine or unquarantine, not {override!r}")
        now = now_iso()
        with self.db.conn:
            self.db.execute(
                "INSERT INTO quarantine (repo, test, state, since, updated_at, override, override_by, override_at) "
                "VALUES (?, ?, 'closed', ?, ?, ?, ?, ?) ON CONFLICT (repo, test) DO UPDATE SET "
                "override = excluded.override, override_by = excluded.override_by, "
                "override_at = excluded.override_at, updated_at = excluded.updated_at",
                [repo, test, now, now, override, who if override else None, now if override else None],
            )

    def overrides(self, repo: str) -> dict[str, dict[str, Any]]:
        rows = self._rows(
            "SELECT test, override, override_by, override_at FROM quarantine WHERE repo = ? AND override IS NOT NULL",
            [repo],
        )
        return {
            r["test"]: {"override": r["override"], "by": r["override_by"], "at": r["override_at"]}
            for r in rows
        }
