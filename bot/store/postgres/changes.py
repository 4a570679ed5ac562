"""Each change's comment state, judged runs, replies and re-runs, on PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from bot.store.base import AsyncChangeStore
from bot.store.postgres.db import PostgresDB, now_iso
from bot.store.records import ChangeRun


class PostgresChanges(PostgresDB, AsyncChangeStore):
    async def change_state(self, repo: str, number: int) -> dict[str, Any]:
        row = await self._one("SELECT state FROM changes WHERE repo = %s AND number = %s", [repo, number])
        return json.loads(row["state"]) if row else {}

    async def save_change_state(self, repo: str, number: int, state: dict[str, Any]) -> None:
        await self._exec(
            "INSERT INTO changes (repo, number, state, updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (repo, number) "
            "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            [repo, number, json.dumps(state), now_iso()],
        )

    async def save_change_run(self, repo: str, number: int, run: ChangeRun) -> None:
        values = {**asdict(run), "passed": int(run.passed)}
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM change_runs WHERE repo = %s AND number = %s AND sha != %s",
                [repo, number, run.sha],
            )
            await conn.execute(
                "INSERT INTO change_runs (repo, number, name, run_id, sha, attempt, url, event, passed, updated_at) "
                "VALUES (%(repo)s, %(number)s, %(name)s, %(run_id)s, %(sha)s, %(attempt)s, %(url)s, %(event)s, "
                "%(passed)s, %(now)s) ON CONFLICT (repo, number, name) DO UPDATE SET run_id = excluded.run_id, "
                "sha = excluded.sha, attempt = excluded.attempt, url = excluded.url, event = excluded.event, "
                "passed = excluded.passed, updated_at = excluded.updated_at",
                {**values, "repo": repo, "number": number, "now": now_iso()},
            )

    async def change_runs(self, repo: str, number: int) -> list[ChangeRun]:
        rows = await self._rows(
            "SELECT name, run_id, sha, attempt, url, event, passed FROM change_runs WHERE repo = %s AND number = %s "
            'ORDER BY run_id DESC, name COLLATE "C"',
            [repo, number],
        )
        return [ChangeRun(**{**row, "passed": bool(row["passed"])}) for row in rows]

    async def remember_reply(self, repo: str, number: int, user: str, kind: str) -> bool:
        return (
            await self._exec(
                'INSERT INTO replies (repo, number, "user", kind, at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING',
                [repo, number, user, kind, now_iso()],
            )
            == 1
        )

    async def forget_reply(self, repo: str, number: int, user: str, kind: str) -> None:
        await self._exec(
            'DELETE FROM replies WHERE repo = %s AND number = %s AND "user" = %s AND kind = %s',
            [repo, number, user, kind],
        )

    async def begin_rerun(self, repo: str, run_id: int, attempt: int) -> str | None:
        row = await self._one(
            "WITH asked AS (INSERT INTO reruns (repo, run_id, attempt, state, asked_at, updated_at) "
            "VALUES (%(repo)s, %(run)s, %(attempt)s, 'asked', %(now)s, %(now)s) ON CONFLICT DO NOTHING RETURNING 1) "
            "SELECT (SELECT count(*) FROM asked) AS asked, (SELECT state FROM reruns WHERE repo = %(repo)s AND "
            "run_id = %(run)s AND attempt = %(attempt)s) AS state",
            {"repo": repo, "run": run_id, "attempt": attempt, "now": now_iso()},
        )
        return None if row is None or row["asked"] else row["state"]

    async def end_rerun(self, repo: str, run_id: int, attempt: int, outcome: str) -> None:
        await self._exec(
            "UPDATE reruns SET state = %s, updated_at = %s WHERE repo = %s AND run_id = %s AND attempt = %s",
            [outcome, now_iso(), repo, run_id, attempt],
        )
