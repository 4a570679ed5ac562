"""Reading a repository's CI history, on PostgreSQL: its backfill, the runs listed and read, and the
forge's answers kept for conditional requests."""

from __future__ import annotations

import json
from typing import Any

from bot.store.base import AsyncBackfillStore
from bot.store.postgres.db import PostgresDB, now_iso
from bot.store.postgres.history import RUN_COLUMNS
from bot.store.records import HistoryRun
from bot.store.rows import backfill_values


class PostgresBackfill(PostgresDB, AsyncBackfillStore):
    async def backfill_state(self, repo: str) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM backfills WHERE repo = %s", [repo])
        if row is None:
            return None
        return {**row, "result": json.loads(row["result"]) if row["result"] else None}

    async def save_backfill(self, repo: str, fields: dict[str, Any], *, only_new: bool = False) -> bool:
        values = backfill_values(fields)
        names = list(values)
        update = "NOTHING" if only_new else "UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in names)
        return (
            await self._exec(
                f"INSERT INTO backfills (repo, {', '.join(names)}) VALUES (%s, {', '.join(['%s'] * len(names))}) "  # noqa: S608
                f"ON CONFLICT (repo) DO {update}",
                [repo, *values.values()],
            )
            == 1
        )

    async def add_backfill_runs(self, repo: str, runs: list[dict[str, Any]]) -> int:
        if not runs:
            return 0
        async with self.pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO backfill_runs (repo, run_id, created_at, attempt, state, jobs, run) "
                    "VALUES (%s, %s, %s, %s, 'pending', 0, %s) ON CONFLICT (repo, run_id) DO UPDATE SET "
                    "run = excluded.run, created_at = excluded.created_at, attempt = excluded.attempt, "
                    "state = CASE WHEN excluded.attempt > backfill_runs.attempt THEN 'pending' "
                    "ELSE backfill_runs.state END",
                    [[repo, r["run_id"], r["created_at"], r["attempt"], json.dumps(r["run"])] for r in runs],
                )
            row = await (
                await conn.execute(
                    "SELECT count(*) AS n FROM backfill_runs WHERE repo = %s AND state = 'pending' "
                    "AND run_id = ANY(%s)",
                    [repo, [r["run_id"] for r in runs]],
                )
            ).fetchone()
        return int(row["n"]) if row else 0

    async def pending_backfill_runs(self, repo: str, since: str, until: str) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT run_id, created_at, run FROM backfill_runs WHERE repo = %s AND state = 'pending' "
            'AND created_at BETWEEN %s AND %s ORDER BY created_at COLLATE "C", run_id',
            [repo, since, until],
        )
        return [{**row, "run": json.loads(row["run"])} for row in rows]

    async def finish_backfill_run(self, repo: str, run_id: int, jobs: int) -> None:
        await self._exec(
            "UPDATE backfill_runs SET state = 'done', jobs = %s, read_at = %s WHERE repo = %s AND run_id = %s",
            [jobs, now_iso(), repo, run_id],
        )

    async def backfill_counts(self, repo: str, since: str, until: str) -> dict[str, int]:
        row = await self._one(
            "SELECT count(*) FILTER (WHERE state = 'done') AS runs, "
            "coalesce(sum(jobs) FILTER (WHERE state = 'done'), 0) AS jobs, "
            "count(*) FILTER (WHERE state = 'pending') AS pending, "
            "(SELECT count(*) FROM runs r JOIN backfill_runs b ON b.repo = r.repo AND b.run_id = r.run_id "
            "WHERE r.repo = %(repo)s AND b.state = 'done' AND b.created_at BETWEEN %(since)s AND %(until)s "
            "AND r.status IN ('failed', 'error')) AS failures "
            "FROM backfill_runs WHERE repo = %(repo)s AND created_at BETWEEN %(since)s AND %(until)s",
            {"repo": repo, "since": since, "until": until},
        )
        assert row is not None  # an aggregate has one row
        return {"runs": int(row["runs"]), "jobs": int(row["jobs"]), "failures": int(row["failures"]),
                "pending": int(row["pending"])}  # fmt: skip

    async def backfill_failures(self, repo: str, since: str, until: str) -> list[HistoryRun]:
        rows = await self._rows(
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)} FROM runs r JOIN backfill_runs b "  # noqa: S608
            "ON b.repo = r.repo AND b.run_id = r.run_id WHERE r.repo = %s AND b.state = 'done' "
            "AND b.created_at BETWEEN %s AND %s AND r.status IN ('failed', 'error') "
            'ORDER BY r.test COLLATE "C", r.job COLLATE "C", r.id',
            [repo, since, until],
        )
        return [HistoryRun(**row) for row in rows]

    async def cache_get(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM forge_cache WHERE key = %s", [key])
        return row["value"] if row else None

    async def cache_put(self, key: str, value: str) -> None:
        await self._exec(
            "INSERT INTO forge_cache (key, value, at) VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
            "value = excluded.value, at = excluded.at",
            [key, value, now_iso()],
        )

    async def cache_drop(self, prefix: str) -> int:
        return await self._exec("DELETE FROM forge_cache WHERE starts_with(key, %s)", [prefix])
