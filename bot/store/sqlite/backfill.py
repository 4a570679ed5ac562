"""Reading a repository's CI history, on SQLite: its backfill, the runs listed and read, and the forge's
answers kept for conditional requests."""

from __future__ import annotations

import json
from typing import Any

from bot.store.base import BackfillStore
from bot.store.records import HistoryRun
from bot.store.rows import backfill_values
from bot.store.sqlite.db import SQLiteDB, now_iso
from bot.store.sqlite.history import RUN_COLUMNS


class SQLiteBackfill(SQLiteDB, BackfillStore):
    def backfill_state(self, repo: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM backfills WHERE repo = ?", [repo])
        if not rows:
            return None
        row = rows[0]
        row["result"] = json.loads(row["result"]) if row["result"] else None
        return row

    def save_backfill(self, repo: str, fields: dict[str, Any], *, only_new: bool = False) -> bool:
        values = backfill_values(fields)
        names = list(values)
        update = "NOTHING" if only_new else "UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in names)
        with self.db.conn:
            cursor = self.db.execute(
                f"INSERT INTO backfills (repo, {', '.join(names)}) VALUES (?, {', '.join('?' * len(names))}) "  # noqa: S608
                f"ON CONFLICT (repo) DO {update}",
                [repo, *values.values()],
            )
        return cursor.rowcount == 1

    def add_backfill_runs(self, repo: str, runs: list[dict[str, Any]]) -> int:
        if not runs:
            return 0
        with self.db.conn:
            for run in runs:
                self.db.execute(
                    "INSERT INTO backfill_runs (repo, run_id, created_at, attempt, state, jobs, run) "
                    "VALUES (?, ?, ?, ?, 'pending', 0, ?) ON CONFLICT (repo, run_id) DO UPDATE SET "
                    "run = excluded.run, created_at = excluded.created_at, attempt = excluded.attempt, "
                    "state = CASE WHEN excluded.attempt > backfill_runs.attempt THEN 'pending' "
                    "ELSE backfill_runs.state END",
                    [repo, run["run_id"], run["created_at"], run["attempt"], json.dumps(run["run"])],
                )
            ids = [run["run_id"] for run in runs]
            return self.db.execute(
                f"SELECT count(*) FROM backfill_runs WHERE repo = ? AND state = 'pending' "  # noqa: S608
                f"AND run_id IN ({', '.join('?' * len(ids))})",
                [repo, *ids],
            ).fetchone()[0]

    def pending_backfill_runs(self, repo: str, since: str, until: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT run_id, created_at, run FROM backfill_runs WHERE repo = ? AND state = 'pending' "
            "AND created_at BETWEEN ? AND ? ORDER BY created_at, run_id",
            [repo, since, until],
        )
        return [{**row, "run": json.loads(row["run"])} for row in rows]

    def finish_backfill_run(self, repo: str, run_id: int, jobs: int) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE backfill_runs SET state = 'done', jobs = ?, read_at = ? WHERE repo = ? AND run_id = ?",
                [jobs, now_iso(), repo, run_id],
            )

    def backfill_counts(self, repo: str, since: str, until: str) -> dict[str, int]:
        row = self.db.execute(
            "SELECT count(*) FILTER (WHERE state = 'done'), coalesce(sum(jobs) FILTER (WHERE state = 'done'), 0), "
            "count(*) FILTER (WHERE state = 'pending') FROM backfill_runs WHERE repo = ? AND created_at BETWEEN ? AND ?",
            [repo, since, until],
        ).fetchone()
        failures = self.db.execute(
            "SELECT count(*) FROM runs r JOIN backfill_runs b ON b.repo = r.repo AND b.run_id = r.run_id "
            "WHERE r.repo = ? AND b.state = 'done' AND b.created_at BETWEEN ? AND ? AND r.status IN ('failed', 'error')",
            [repo, since, until],
        ).fetchone()[0]
        return {"runs": row[0], "jobs": row[1], "failures": failures, "pending": row[2]}

    def backfill_failures(self, repo: str, since: str, until: str) -> list[HistoryRun]:
        rows = self._rows(
            f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)} FROM runs r JOIN backfill_runs b "  # noqa: S608
            "ON b.repo = r.repo AND b.run_id = r.run_id WHERE r.repo = ? AND b.state = 'done' "
            "AND b.created_at BETWEEN ? AND ? AND r.status IN ('failed', 'error') ORDER BY r.test, r.job, r.id",
            [repo, since, until],
        )
        return [HistoryRun(**row) for row in rows]

    def cache_get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM forge_cache WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def cache_put(self, key: str, value: str) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO forge_cache (key, value, at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "value = excluded.value, at = excluded.at",
                [key, value, now_iso()],
            )

    def cache_drop(self, prefix: str) -> int:
        with self.db.conn:
            return self.db.execute(
                "DELETE FROM forge_cache WHERE substr(key, 1, ?) = ?", [len(prefix), prefix]
            ).rowcount
