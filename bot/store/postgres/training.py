"""The failures kept for retraining, on PostgreSQL, with their labels."""

from __future__ import annotations

import json
from typing import Any

from bot.store.base import AsyncTrainingStore
from bot.store.postgres.db import PostgresDB, now_iso
from bot.store.records import Failure, WeakLabel, change_failure, training_record


class PostgresTraining(PostgresDB, AsyncTrainingStore):
    async def record_failures(self, repo: str, failures: list[Failure]) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            for f in failures:
                await conn.execute(
                    "INSERT INTO failures (repo, test, log, run_id, attempt, job, revision, change_number, model, "
                    "verdict, url, created_at, judgement) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    [repo, f.test, f.log, f.run_id, f.attempt, f.job, f.revision, f.change_number,
                     json.dumps(f.model), f.verdict, f.url, f.created_at or now_iso(), json.dumps(f.judgement)],
                )  # fmt: skip

    async def label_merged(self, repo: str, revision: str) -> int:
        return await self._exec(
            "UPDATE failures SET merged = 1, labelled_at = %s WHERE repo = %s AND revision = %s",
            [now_iso(), repo, revision],
        )

    async def label_passed_on_retry(
        self, repo: str, run_id: int, before_attempt: int, tests: list[str] | None, job: str | None = None
    ) -> int:
        if tests is not None and not tests:
            return 0
        return await self._exec(
            "UPDATE failures SET passed_on_retry = 1, labelled_at = %(now)s WHERE repo = %(repo)s AND "
            "run_id = %(run)s AND attempt < %(before)s AND (%(job)s::text IS NULL OR job = %(job)s) "
            "AND (%(all)s OR test = ANY(%(tests)s))",
            {"now": now_iso(), "repo": repo, "run": run_id, "before": before_attempt, "job": job,
             "all": tests is None, "tests": tests or []},
        )  # fmt: skip

    async def label_by_human(self, repo: str, change_number: int, test: str, label: str, who: str) -> int:
        if label not in ("flake", "real"):
            raise ValueError(f"label must be flake or real, not {label!r}")
        return await self._exec(
            "UPDATE failures SET label = %s, labelled_by = %s, labelled_at = %s "
            "WHERE repo = %s AND change_number = %s AND test = %s",
            [label, who, now_iso(), repo, change_number, test],
        )

    async def failures_of_change(self, repo: str, change_number: int) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT test, job, run_id, attempt, revision, verdict, model, url, label, labelled_by, merged, "
            "passed_on_retry, created_at, judgement FROM failures WHERE repo = %s AND change_number = %s ORDER BY id",
            [repo, change_number],
        )
        return [change_failure(row) for row in rows]

    async def training_records(self, repo: str | None = None) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT id, repo, test, log, job, revision, change_number, created_at, merged, passed_on_retry, label, "
            "url, weak_label FROM failures WHERE %(repo)s::text IS NULL OR repo = %(repo)s ORDER BY id",
            {"repo": repo},
        )
        return [training_record(row) for row in rows]

    async def last_labelled(self) -> dict[str, str]:
        rows = await self._rows(
            "SELECT repo, max(labelled_at) AS at FROM failures WHERE labelled_at IS NOT NULL GROUP BY repo"
        )
        return {r["repo"]: r["at"] for r in rows}

    async def label_weak(self, repo: str, labels: list[WeakLabel]) -> int:
        if wrong := [w.label for w in labels if w.label not in ("flake", "real")]:
            raise ValueError(f"label must be flake or real, not {wrong[0]!r}")
        if not labels:
            return 0
        columns = zip(*((w.run_id, w.attempt, w.job, w.test, w.label, w.rule) for w in labels), strict=True)
        return await self._exec(
            "UPDATE failures f SET weak_label = w.label, weak_rule = w.rule, labelled_at = %s FROM "
            "unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[]) "
            "AS w(run_id, attempt, job, test, label, rule) WHERE f.repo = %s AND f.run_id = w.run_id "
            "AND f.attempt = w.attempt AND f.job = w.job AND f.test = w.test AND f.weak_label IS DISTINCT FROM w.label",
            [now_iso(), *(list(column) for column in columns), repo],
        )
