"""Each change's comment state, judged runs, replies and re-runs, on SQLite."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from bot.store.base import ChangeStore
from bot.store.records import ChangeRun
from bot.store.sqlite.db import SQLiteDB, now_iso


class SQLiteChanges(SQLiteDB, ChangeStore):
    def change_state(self, repo: str, number: int) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT state FROM changes WHERE repo = ? AND number = ?", [repo, number]
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def save_change_state(self, repo: str, number: int, state: dict[str, Any]) -> None:
        with self.db.conn:
            self.db["changes"].upsert(
                {"repo": repo, "number": number, "state": json.dumps(state), "updated_at": now_iso()},
                pk=("repo", "number"),
            )

    def save_change_run(self, repo: str, number: int, run: ChangeRun) -> None:
        with self.db.conn:
            self.db.execute(
                "DELETE FROM change_runs WHERE repo = ? AND number = ? AND sha != ?", [repo, number, run.sha]
            )
            self.db["change_runs"].upsert(
                {
                    "repo": repo,
                    "number": number,
                    **asdict(run),
                    "passed": int(run.passed),
                    "updated_at": now_iso(),
                },
                pk=("repo", "number", "name"),
            )

    def change_runs(self, repo: str, number: int) -> list[ChangeRun]:
        rows = self._rows(
            "SELECT name, run_id, sha, attempt, url, event, passed FROM change_runs WHERE repo = ? AND number = ? "
            "ORDER BY run_id DESC, name",
            [repo, number],
        )
        return [ChangeRun(**{**row, "passed": bool(row["passed"])}) for row in rows]

    def remember_reply(self, repo: str, number: int, user: str, kind: str) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO replies (repo, number, user, kind, at) VALUES (?, ?, ?, ?, ?)",
                [repo, number, user, kind, now_iso()],
            )
        return cursor.rowcount == 1

    def forget_reply(self, repo: str, number: int, user: str, kind: str) -> None:
        with self.db.conn:
            self.db.execute(
                "DELETE FROM replies WHERE repo = ? AND number = ? AND user = ? AND kind = ?",
                [repo, number, user, kind],
            )

    def begin_rerun(self, repo: str, run_id: int, attempt: int) -> str | None:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT INTO reruns (repo, run_id, attempt, state, asked_at, updated_at) "
                "VALUES (?, ?, ?, 'asked', ?, ?) ON CONFLICT DO NOTHING",
                [repo, run_id, attempt, now_iso(), now_iso()],
            )
            if cursor.rowcount == 1:
                return None
            row = self.db.execute(
                "SELECT state FROM reruns WHERE repo = ? AND run_id = ? AND attempt = ?",
                [repo, run_id, attempt],
            ).fetchone()
        return row[0]

    def end_rerun(self, repo: str, run_id: int, attempt: int, outcome: str) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE reruns SET state = ?, updated_at = ? WHERE repo = ? AND run_id = ? AND attempt = ?",
                [outcome, now_iso(), repo, run_id, attempt],
            )
