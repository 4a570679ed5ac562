"""The failures kept for retraining, on SQLite, with their labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from bot.store.base import TrainingStore
from bot.store.records import Failure, WeakLabel, change_failure, training_record
from bot.store.sqlite.db import SQLiteDB, now_iso


class SQLiteTraining(SQLiteDB, TrainingStore):
    def record_failures(self, repo: str, failures: list[Failure]) -> None:
        with self.db.conn:
            for f in failures:
                self.db.execute(
                    "INSERT OR IGNORE INTO failures (repo, test, log, run_id, attempt, job, revision, change_number, "
                    "model, verdict, url, created_at, judgement) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [repo, f.test, f.log, f.run_id, f.attempt, f.job, f.revision, f.change_number,
                     json.dumps(f.model), f.verdict, f.url, f.created_at or now_iso(), json.dumps(f.judgement)],
                )  # fmt: skip

    def label_merged(self, repo: str, revision: str) -> int:
        with self.db.conn:
            return self.db.execute(
                "UPDATE failures SET merged = 1, labelled_at = ? WHERE repo = ? AND revision = ?",
                [now_iso(), repo, revision],
            ).rowcount

    def label_passed_on_retry(
        self, repo: str, run_id: int, before_attempt: int, tests: list[str] | None, job: str | None = None
    ) -> int:
        sql = "UPDATE failures SET passed_on_retry = 1, labelled_at = ? WHERE repo = ? AND run_id = ? AND attempt < ?"
        params: list[Any] = [now_iso(), repo, run_id, before_attempt]
        if job is not None:
            sql += " AND job = ?"
            params.append(job)
        if tests is not None:
            if not tests:
                return 0
            sql += f" AND test IN ({', '.join('?' * len(tests))})"
            params += tests
        with self.db.conn:
            return self.db.execute(sql, params).rowcount

    def label_by_human(self, repo: str, change_number: int, test: str, label: str, who: str) -> int:
        if label not in ("flake", "real"):
            raise ValueError(f"label must be flake or real, not {label!r}")
        with self.db.conn:
            return self.db.execute(
                "UPDATE failures SET label = ?, labelled_by = ?, labelled_at = ? "
                "WHERE repo = ? AND change_number = ? AND test = ?",
                [label, who, now_iso(), repo, change_number, test],
            ).rowcount

    def failures_of_change(self, repo: str, change_number: int) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT test, job, run_id, attempt, revision, verdict, model, url, label, labelled_by, merged, "
            "passed_on_retry, created_at, judgement FROM failures WHERE repo = ? AND change_number = ? ORDER BY id",
            [repo, change_number],
        )
        return [change_failure(row) for row in rows]

    def training_records(self, repo: str | None = None) -> Iterator[dict[str, Any]]:
        where, params = ("WHERE repo = ?", [repo]) if repo else ("", [])
        for row in self.db.query(
            f"SELECT id, repo, test, log, job, revision, change_number, created_at, merged, passed_on_retry, label, "  # noqa: S608
            f"url, weak_label FROM failures {where} ORDER BY id",
            params,
        ):
            yield training_record(row)

    def last_labelled(self) -> dict[str, str]:
        rows = self._rows(
            "SELECT repo, max(labelled_at) AS at FROM failures WHERE labelled_at IS NOT NULL GROUP BY repo"
        )
        return {r["repo"]: r["at"] for r in rows}

    def label_weak(self, repo: str, labels: list[WeakLabel]) -> int:
        if wrong := [w.label for w in labels if w.label not in ("flake", "real")]:
            raise ValueError(f"label must be flake or real, not {wrong[0]!r}")
        changed, now = 0, now_iso()
        with self.db.conn:
            for w in labels:
                changed += self.db.execute(
                    "UPDATE failures SET weak_label = ?, weak_rule = ?, labelled_at = ? WHERE repo = ? AND run_id = ? "
                    "AND attempt = ? AND job = ? AND test = ? AND weak_label IS NOT ?",
                    [w.label, w.rule, now, repo, w.run_id, w.attempt, w.job, w.test, w.label],
                ).rowcount
        return changed
