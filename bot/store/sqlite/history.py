"""Test history on SQLite: every judged run, each test's summary and score."""

from __future__ import annotations

import json
from typing import Any

from bot.scoring import HistorySummary
from bot.store.base import HistoryStore
from bot.store.records import HistoryRun
from bot.store.sqlite.db import SQLiteDB, now_iso

RUN_COLUMNS = ("test", "status", "run_id", "attempt", "job", "revision", "branch", "duration", "message",
               "verdict", "url", "created_at", "retry")  # fmt: skip


class SQLiteHistory(SQLiteDB, HistoryStore):
    def repos(self) -> list[str]:
        return [r["repo"] for r in self._rows("SELECT DISTINCT repo FROM tests ORDER BY repo")]

    def record_runs(self, repo: str, runs: list[HistoryRun]) -> list[HistoryRun]:
        added: list[HistoryRun] = []
        with self.db.conn:
            for run in runs:
                values = {k: getattr(run, k) for k in RUN_COLUMNS}
                values["created_at"] = values["created_at"] or now_iso()
                cursor = self.db.execute(
                    f"INSERT OR IGNORE INTO runs (repo, {', '.join(RUN_COLUMNS)}) "  # noqa: S608
                    f"VALUES (?, {', '.join('?' * len(RUN_COLUMNS))})",
                    [repo, *values.values()],
                )
                if cursor.rowcount != 1:
                    continue
                added.append(run)
                summary = self.summary(repo, run.test, run.job)
                summary.add(run.as_scoring_run())
                self.db.execute(
                    "INSERT INTO tests (repo, test, job, summary, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (repo, test, job) DO UPDATE SET summary = excluded.summary, "
                    "updated_at = excluded.updated_at",
                    [repo, run.test, run.job, json.dumps(summary.to_dict()), now_iso()],
                )
        return added

    def window(self, repo: str, test: str, job: str, limit: int, branch: str | None) -> list[HistoryRun]:
        rows = self._rows(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE repo = :repo AND test = :test AND job = :job"  # noqa: S608
            " AND (branch = :branch OR revision IN (SELECT revision FROM runs WHERE repo = :repo AND test = :test"
            " AND job = :job AND revision IS NOT NULL GROUP BY revision HAVING count(*) > 1))"
            " ORDER BY id DESC LIMIT :limit",
            {"repo": repo, "test": test, "job": job, "branch": branch, "limit": limit},
        )
        return [HistoryRun(**row) for row in reversed(rows)]

    def summary(self, repo: str, test: str, job: str) -> HistorySummary:
        row = self.db.execute(
            "SELECT summary FROM tests WHERE repo = ? AND test = ? AND job = ?", [repo, test, job]
        ).fetchone()
        return HistorySummary.from_dict(json.loads(row[0])) if row and row[0] else HistorySummary()

    def save_score(self, repo: str, test: str, job: str, score: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE tests SET score = ?, updated_at = ? WHERE repo = ? AND test = ? AND job = ?",
                [json.dumps(score), now_iso(), repo, test, job],
            )

    def scores(self, repo: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE t.repo = ?", [repo]) if repo else ("", [])
        rows = self._rows(
            f"SELECT t.repo, t.test, t.job, t.score, t.updated_at, q.number AS issue, q.url AS issue_url, "  # noqa: S608
            f"q.state AS quarantine, q.jobs AS quarantine_jobs, q.expires_at AS quarantine_expires_at "
            f"FROM tests t LEFT JOIN quarantine q ON q.repo = t.repo AND q.test = t.test {where}",
            params,
        )
        out = []
        for row in rows:
            row["quarantine_jobs"] = json.loads(row["quarantine_jobs"]) if row["quarantine_jobs"] else None
            score = json.loads(row.pop("score") or "null")
            recent = self._rows(
                "SELECT status FROM runs WHERE repo = ? AND test = ? AND job = ? ORDER BY id DESC LIMIT 30",
                [row["repo"], row["test"], row["job"]],
            )
            out.append({**row, "score": score, "recent": [r["status"] for r in reversed(recent)]})
        out.sort(key=lambda r: (-(r["score"] or {}).get("score", 0.0), r["repo"], r["test"], r["job"]))
        return out

    def tests_of_job(self, repo: str, job: str) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT test FROM runs WHERE repo = ? AND job = ? ORDER BY test", [repo, job]
        )
        return [r["test"] for r in rows]

    def recent_failures(self, repo: str, test: str, limit: int) -> list[HistoryRun]:
        rows = self._rows(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE repo = ? AND test = ? "  # noqa: S608
            "AND status IN ('failed', 'error') ORDER BY id DESC LIMIT ?",
            [repo, test, limit],
        )
        return [HistoryRun(**row) for row in rows]

    def tests_like(self, repo: str, name: str, limit: int = 20) -> list[str]:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rows(
            "SELECT DISTINCT test FROM tests WHERE repo = ? AND (test = ? OR test LIKE ? ESCAPE '\\') "
            "ORDER BY test = ? DESC, test LIMIT ?",
            [repo, name, "%" + escaped, name, limit],
        )
        return [r["test"] for r in rows]

    def test_scores(self, repo: str, test: str) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT job, score, updated_at FROM tests WHERE repo = ? AND test = ? ORDER BY job", [repo, test]
        )
        return [{**row, "score": json.loads(row["score"] or "null")} for row in rows]

    def has_history(self, repo: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE repo = ? LIMIT 1", [repo]).fetchone() is not None

    def test_runs(self, repo: str, test: str, job: str) -> list[HistoryRun]:
        rows = self._rows(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE repo = ? AND test = ? AND job = ? ORDER BY id",  # noqa: S608
            [repo, test, job],
        )
        return [HistoryRun(**row) for row in rows]

    def tests_recorded_since(self, repo: str, at: str) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT test, job FROM tests WHERE repo = ? AND updated_at >= ? ORDER BY test, job", [repo, at]
        ).fetchall()
        return [(row[0], row[1]) for row in rows]
