"""Infrastructure incidents on PostgreSQL: each failure's signature by change, the incidents, and the
failures set aside for them (the same rows and meaning as on SQLite: ``bot/store/sqlite/incidents.py``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.incidents import Incident, Occurrence
from bot.scoring import summarize
from bot.store.base import AsyncIncidentStore
from bot.store.postgres.db import PostgresDB, now_iso
from bot.store.postgres.history import RUN_COLUMNS
from bot.store.records import HistoryRun
from bot.store.rows import INCIDENT_COLUMNS, incident, incident_row, kept_since, occurrence, occurrence_row


class PostgresIncidents(PostgresDB, AsyncIncidentStore):
    async def record_occurrences(self, repo: str, occurrences: Sequence[Occurrence]) -> int:
        columns = [list(c) for c in zip(*(occurrence_row(o) for o in occurrences), strict=True)] or [[]] * 9
        async with self.pool.connection() as conn, conn.transaction():
            added = (
                await conn.execute(
                    "INSERT INTO incident_occurrences (repo, signature, change, run_id, attempt, job, test, at, url, "
                    "change_url) SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::int[], "
                    "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING",
                    [repo, *columns],
                )
            ).rowcount
            await conn.execute(
                "DELETE FROM incident_occurrences WHERE repo = %s AND at < %s AND signature NOT IN "
                "(SELECT signature FROM incidents WHERE repo = %s AND state = 'open')",
                [repo, kept_since(), repo],
            )
        return added

    async def occurrences(self, repo: str, signatures: Sequence[str], since: str) -> list[Occurrence]:
        if not signatures:
            return []
        rows = await self._rows(
            "SELECT signature, change, run_id, attempt, job, test, at, url, change_url FROM incident_occurrences "
            "WHERE repo = %s AND at >= %s AND signature = ANY(%s) ORDER BY at DESC, id DESC",
            [repo, since, list(signatures)],
        )
        return [occurrence(row) for row in rows]

    async def save_incident(self, repo: str, incident: Incident) -> None:
        row = incident_row(repo, incident)
        names = list(row)
        await self._exec(
            f"INSERT INTO incidents ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "  # noqa: S608
            "ON CONFLICT (repo, signature) DO UPDATE SET "
            + ", ".join(f"{n} = excluded.{n}" for n in names if n not in ("repo", "signature")),
            list(row.values()),
        )

    async def incidents(self, repo: str | None = None, state: str | None = None) -> list[Incident]:
        rows = await self._rows(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE (%(repo)s::text IS NULL OR repo = %(repo)s) "  # noqa: S608
            "AND (%(state)s::text IS NULL OR state = %(state)s) "
            "ORDER BY state = 'open' DESC, coalesce(last_seen, opened_at) DESC",
            {"repo": repo or None, "state": state or None},
        )
        return [incident(row) for row in rows]

    async def set_aside_runs(
        self, repo: str, runs: Sequence[tuple[int, int, str, str]], message: str
    ) -> list[tuple[str, str]]:
        if not runs:
            return []
        run_ids, attempts, jobs, tests = (list(c) for c in zip(*runs, strict=True))
        async with self.pool.connection() as conn, conn.transaction():
            changed = await (
                await conn.execute(
                    "UPDATE runs r SET status = 'skipped', message = %s FROM unnest(%s::bigint[], %s::int[], "
                    "%s::text[], %s::text[]) AS a(run_id, attempt, job, test) WHERE r.repo = %s AND "
                    "r.run_id = a.run_id AND r.attempt = a.attempt AND r.job = a.job AND r.test = a.test "
                    "AND r.status IN ('failed', 'error') RETURNING r.test, r.job",
                    [message, run_ids, attempts, jobs, tests, repo],
                )
            ).fetchall()
            touched = sorted({(row["test"], row["job"]) for row in changed})
            for test, job in touched:  # the summary again, from the whole history as it is now
                rows = await (
                    await conn.execute(
                        f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE repo = %s AND test = %s AND job = %s "  # noqa: S608
                        "ORDER BY id",
                        [repo, test, job],
                    )
                ).fetchall()
                summary = summarize(HistoryRun(**row).as_scoring_run() for row in rows)
                await conn.execute(
                    "UPDATE tests SET summary = %s, updated_at = %s WHERE repo = %s AND test = %s AND job = %s",
                    [json.dumps(summary.to_dict()), now_iso(), repo, test, job],
                )
        return touched
