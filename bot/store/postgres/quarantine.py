"""Quarantine issues and maintainers' overrides, on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.store.base import AsyncQuarantineStore
from bot.store.postgres.db import PostgresDB, now_iso


class PostgresQuarantine(PostgresDB, AsyncQuarantineStore):
    async def set_quarantine(
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
        now = now_iso()
        await self._exec(
            "INSERT INTO quarantine (repo, test, number, url, state, since, updated_at, jobs, expires_at) "
            "VALUES (%(repo)s, %(test)s, %(number)s, %(url)s, %(state)s, %(now)s, %(now)s, %(jobs)s, %(expires)s) "
            "ON CONFLICT (repo, test) DO UPDATE SET number = excluded.number, url = excluded.url, "
            "state = excluded.state, updated_at = excluded.updated_at, jobs = excluded.jobs, "
            "expires_at = excluded.expires_at, since = CASE WHEN quarantine.state != "
            "'closed' AND excluded.state != 'closed' THEN quarantine.since ELSE excluded.since END",
            {"repo": repo, "test": test, "number": number, "url": url, "state": state, "now": now,
             "jobs": json.dumps(list(jobs)) if jobs is not None else None, "expires": expires_at},
        )  # fmt: skip

    async def quarantined(self, repo: str | None = None) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT repo, test, number, url, state, since, jobs, expires_at FROM quarantine WHERE state != 'closed' "
            'AND (%(repo)s::text IS NULL OR repo = %(repo)s) ORDER BY repo COLLATE "C", test COLLATE "C"',
            {"repo": repo},
        )
        for row in rows:
            row["jobs"] = json.loads(row["jobs"]) if row["jobs"] else None
        return rows

    async def set_override(self, repo: str, test: str, override: str | None, who: str | None) -> None:
        if override not in ("quarantine", "unquarantine", None):
            raise ValueError(f"override must be quarantine or unquarantine, not {override!r}")
        now = now_iso()
        await self._exec(
            "INSERT INTO quarantine (repo, test, state, since, updated_at, override, override_by, override_at) "
            "VALUES (%s, %s, 'closed', %s, %s, %s, %s, %s) ON CONFLICT (repo, test) DO UPDATE SET "
            "override = excluded.override, override_by = excluded.override_by, "
            "override_at = excluded.override_at, updated_at = excluded.updated_at",
            [repo, test, now, now, override, who if override else None, now if override else None],
        )

    async def overrides(self, repo: str) -> dict[str, dict[str, Any]]:
        rows = await self._rows(
            "SELECT test, override, override_by, override_at FROM quarantine WHERE repo = %s AND override IS NOT NULL",
            [repo],
        )
        return {
            r["test"]: {"override": r["override"], "by": r["override_by"], "at": r["override_at"]}
            for r in rows
        }
