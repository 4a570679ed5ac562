"""Test history on PostgreSQL: every judged run, each test's summary and score.

A run is added to its test's summary under the summary row's lock (``SELECT … FOR UPDATE``), tests in
a fixed order, so instances recording runs of the same tests at once neither lose an update nor
deadlock.
"""

from __future__ import annotations

import json
from typing import Any

from bot.scoring import HistorySummary
from bot.store.base import AsyncHistoryStore
from bot.store.postgres.db import PostgresDB, now_iso
from bot.store.records import HistoryRun

RUN_COLUMNS = ("test", "status", "run_id", "attempt", "job", "revision", "branch", "duration", "message",
               "verdict", "url", "created_at", "retry")  # fmt: skip
_SELECT_RUN = ", ".join(RUN_COLUMNS)


class PostgresHistory(PostgresDB, AsyncHistoryStore):
    async def repos(self) -> list[str]:
        return [
            r["repo"]
            for r in await self._rows('SELECT repo FROM tests GROUP BY repo ORDER BY repo COLLATE "C"')
        ]

    async def record_runs(self, repo: str, runs: list[HistoryRun]) -> list[HistoryRun]:
        """Four statements whatever the number of runs: the new runs, the summaries' rows made and
        locked (in a fixed order), the summaries written back."""
        if not runs:
            return []
        now = now_iso()
        async with self.pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO runs (repo, {_SELECT_RUN}) VALUES (%s, {', '.join(['%s'] * len(RUN_COLUMNS))}) "  # noqa: S608
                    "ON CONFLICT DO NOTHING RETURNING 1 AS added",
                    [
                        [
                            repo,
                            *(
                                getattr(run, k) or now if k == "created_at" else getattr(run, k)
                                for k in RUN_COLUMNS
                            ),
                        ]
                        for run in runs
                    ],
                    returning=True,
                )
                flags = []
                while True:
                    flags.append(bool(await cursor.fetchone()))
                    if not cursor.nextset():
                        break
            added = [run for run, new in zip(runs, flags, strict=True) if new]
            if not added:
                return []
            keys = sorted({(run.test, run.job) for run in added})
            tests, jobs = [k[0] for k in keys], [k[1] for k in keys]
            await conn.execute(
                "INSERT INTO tests (repo, test, job, updated_at) SELECT %s, t, j, %s FROM unnest(%s::text[], %s::text[]) "
                "AS k(t, j) ON CONFLICT DO NOTHING",
                [repo, now, tests, jobs],
            )
            rows = await (
                await conn.execute(
                    "SELECT test, job, summary FROM tests WHERE repo = %s AND (test, job) IN "
                    "(SELECT * FROM unnest(%s::text[], %s::text[])) ORDER BY test, job FOR UPDATE",
                    [repo, tests, jobs],
                )
            ).fetchall()
            summaries = {
                (r["test"], r["job"]): HistorySummary.from_dict(json.loads(r["summary"]))
                if r["summary"]
                else HistorySummary()
                for r in rows
            }
            for run in added:
                summaries[(run.test, run.job)].add(run.as_scoring_run())
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "UPDATE tests SET summary = %s, updated_at = %s WHERE repo = %s AND test = %s AND job = %s",
                    [[json.dumps(summaries[k].to_dict()), now, repo, *k] for k in keys],
                )
        return added

    async def window(
        self, repo: str, test: str, job: str, limit: int, branch: str | None
    ) -> list[HistoryRun]:
        rows = await self._rows(
            f"SELECT {_SELECT_RUN} FROM runs WHERE repo = %(repo)s AND test = %(test)s AND job = %(job)s"  # noqa: S608
            " AND (branch = %(branch)s OR revision IN (SELECT revision FROM runs WHERE repo = %(repo)s AND "
            "test = %(test)s AND job = %(job)s AND revision IS NOT NULL GROUP BY revision HAVING count(*) > 1))"
            " ORDER BY id DESC LIMIT %(limit)s",
            {"repo": repo, "test": test, "job": job, "branch": branch, "limit": limit},
        )
        return [HistoryRun(**row) for row in reversed(rows)]

    async def score_inputs(
        self, repo: str, keys: list[tuple[str, str]], limit: int, branch: str | None
    ) -> list[tuple[list[HistoryRun], HistorySummary]]:
        tests, jobs = [k[0] for k in keys], [k[1] for k in keys]
        rows = await self._rows(
            f"SELECT k.n, {', '.join('w.' + c for c in RUN_COLUMNS)} FROM unnest(%(tests)s::text[], %(jobs)s::text[]) "  # noqa: S608
            "WITH ORDINALITY AS k(t, j, n), LATERAL (SELECT * FROM runs WHERE repo = %(repo)s AND test = k.t AND "
            "job = k.j AND (branch = %(branch)s OR revision IN (SELECT revision FROM runs r WHERE r.repo = %(repo)s "
            "AND r.test = k.t AND r.job = k.j AND r.revision IS NOT NULL GROUP BY r.revision HAVING count(*) > 1)) "
            "ORDER BY id DESC LIMIT %(limit)s) w",
            {"tests": tests, "jobs": jobs, "repo": repo, "branch": branch, "limit": limit},
        )
        windows: list[list[HistoryRun]] = [[] for _ in keys]
        for row in rows:
            windows[row.pop("n") - 1].append(HistoryRun(**row))
        summaries = await self._rows(
            "SELECT k.n, s.summary FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS k(t, j, n) "
            "JOIN tests s ON s.repo = %s AND s.test = k.t AND s.job = k.j",
            [tests, jobs, repo],
        )
        found = {r["n"] - 1: r["summary"] for r in summaries}
        return [
            (
                windows[i][::-1],
                HistorySummary.from_dict(json.loads(found[i])) if found.get(i) else HistorySummary(),
            )
            for i in range(len(keys))
        ]

    async def save_scores(self, repo: str, scores: list[tuple[str, str, dict[str, Any]]]) -> None:
        now = now_iso()
        async with self.pool.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "UPDATE tests SET score = %s, updated_at = %s WHERE repo = %s AND test = %s AND job = %s",
                [[json.dumps(score), now, repo, test, job] for test, job, score in scores],
            )

    async def summary(self, repo: str, test: str, job: str) -> HistorySummary:
        row = await self._one(
            "SELECT summary FROM tests WHERE repo = %s AND test = %s AND job = %s", [repo, test, job]
        )
        return (
            HistorySummary.from_dict(json.loads(row["summary"]))
            if row and row["summary"]
            else HistorySummary()
        )

    async def save_score(self, repo: str, test: str, job: str, score: dict[str, Any]) -> None:
        await self._exec(
            "UPDATE tests SET score = %s, updated_at = %s WHERE repo = %s AND test = %s AND job = %s",
            [json.dumps(score), now_iso(), repo, test, job],
        )

    async def scores(self, repo: str | None = None) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT t.repo, t.test, t.job, t.score, t.updated_at, q.number AS issue, q.url AS issue_url, "
            "q.state AS quarantine, q.jobs AS quarantine_jobs, q.expires_at AS quarantine_expires_at, "
            "ARRAY(SELECT r.status FROM runs r WHERE r.repo = t.repo AND r.test = t.test "
            "AND r.job = t.job ORDER BY r.id DESC LIMIT 30) AS recent FROM tests t LEFT JOIN quarantine q "
            "ON q.repo = t.repo AND q.test = t.test WHERE %(repo)s::text IS NULL OR t.repo = %(repo)s",
            {"repo": repo},
        )
        out = [
            {
                **row,
                "score": json.loads(row["score"] or "null"),
                "recent": row["recent"][::-1],
                "quarantine_jobs": json.loads(row["quarantine_jobs"]) if row["quarantine_jobs"] else None,
            }
            for row in rows
        ]
        out.sort(key=lambda r: (-(r["score"] or {}).get("score", 0.0), r["repo"], r["test"], r["job"]))
        return out

    async def tests_of_job(self, repo: str, job: str) -> list[str]:
        rows = await self._rows(
            'SELECT test FROM runs WHERE repo = %s AND job = %s GROUP BY test ORDER BY test COLLATE "C"',
            [repo, job],
        )
        return [r["test"] for r in rows]

    async def recent_failures(self, repo: str, test: str, limit: int) -> list[HistoryRun]:
        rows = await self._rows(
            f"SELECT {_SELECT_RUN} FROM runs WHERE repo = %s AND test = %s "  # noqa: S608
            "AND status IN ('failed', 'error') ORDER BY id DESC LIMIT %s",
            [repo, test, limit],
        )
        return [HistoryRun(**row) for row in rows]

    async def tests_like(self, repo: str, name: str, limit: int = 20) -> list[str]:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = await self._rows(
            "SELECT test FROM tests WHERE repo = %s AND (test = %s OR test LIKE %s ESCAPE '\\') "
            'GROUP BY test ORDER BY test = %s DESC, test COLLATE "C" LIMIT %s',
            [repo, name, "%" + escaped, name, limit],
        )
        return [r["test"] for r in rows]

    async def test_scores(self, repo: str, test: str) -> list[dict[str, Any]]:
        rows = await self._rows(
            'SELECT job, score, updated_at FROM tests WHERE repo = %s AND test = %s ORDER BY job COLLATE "C"',
            [repo, test],
        )
        return [{**row, "score": json.loads(row["score"] or "null")} for row in rows]

    async def has_history(self, repo: str) -> bool:
        return await self._one("SELECT 1 AS found FROM runs WHERE repo = %s LIMIT 1", [repo]) is not None

    async def test_runs(self, repo: str, test: str, job: str) -> list[HistoryRun]:
        rows = await self._rows(
            f"SELECT {_SELECT_RUN} FROM runs WHERE repo = %s AND test = %s AND job = %s ORDER BY id",  # noqa: S608
            [repo, test, job],
        )
        return [HistoryRun(**row) for row in rows]

    async def tests_recorded_since(self, repo: str, at: str) -> list[tuple[str, str]]:
        rows = await self._rows(
            'SELECT test, job FROM tests WHERE repo = %s AND updated_at >= %s ORDER BY test COLLATE "C", job COLLATE "C"',
            [repo, at],
        )
        return [(row["test"], row["job"]) for row in rows]
