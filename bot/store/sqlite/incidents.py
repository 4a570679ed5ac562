"""Infrastructure incidents on SQLite: each failure's signature by change, the incidents, and the
failures set aside for them."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bot.incidents import Incident, Occurrence
from bot.scoring import summarize
from bot.store.base import IncidentStore
from bot.store.records import HistoryRun
from bot.store.rows import INCIDENT_COLUMNS, incident, incident_row, kept_since, occurrence, occurrence_row
from bot.store.sqlite.db import SQLiteDB, now_iso
from bot.store.sqlite.history import RUN_COLUMNS


class SQLiteIncidents(SQLiteDB, IncidentStore):
    def record_occurrences(self, repo: str, occurrences: Sequence[Occurrence]) -> int:
        added = 0
        with self.db.conn:
            for o in occurrences:
                added += self.db.execute(
                    "INSERT OR IGNORE INTO incident_occurrences (repo, signature, change, run_id, attempt, job, test, "
                    "at, url, change_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [repo, *occurrence_row(o)],
                ).rowcount
            self.db.execute(
                "DELETE FROM incident_occurrences WHERE repo = ? AND at < ? AND signature NOT IN "
                "(SELECT signature FROM incidents WHERE repo = ? AND state = 'open')",
                [repo, kept_since(), repo],
            )
        return added

    def occurrences(self, repo: str, signatures: Sequence[str], since: str) -> list[Occurrence]:
        if not signatures:
            return []
        rows = self._rows(
            "SELECT signature, change, run_id, attempt, job, test, at, url, change_url FROM incident_occurrences "  # noqa: S608
            f"WHERE repo = ? AND at >= ? AND signature IN ({', '.join('?' * len(signatures))}) ORDER BY at DESC, id DESC",
            [repo, since, *signatures],
        )
        return [occurrence(row) for row in rows]

    def save_incident(self, repo: str, incident: Incident) -> None:
        with self.db.conn:
            self.db["incidents"].upsert(incident_row(repo, incident), pk=("repo", "signature"))

    def incidents(self, repo: str | None = None, state: str | None = None) -> list[Incident]:
        rows = self._rows(
            f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE (:repo IS NULL OR repo = :repo) "  # noqa: S608
            "AND (:state IS NULL OR state = :state) ORDER BY state = 'open' DESC, coalesce(last_seen, opened_at) DESC",
            {"repo": repo or None, "state": state or None},
        )
        return [incident(row) for row in rows]

    def set_aside_runs(
        self, repo: str, runs: Sequence[tuple[int, int, str, str]], message: str
    ) -> list[tuple[str, str]]:
        touched: set[tuple[str, str]] = set()
        with self.db.conn:
            for run_id, attempt, job, test in runs:
                cursor = self.db.execute(
                    "UPDATE runs SET status = 'skipped', message = ? WHERE repo = ? AND run_id = ? AND attempt = ? "
                    "AND job = ? AND test = ? AND status IN ('failed', 'error')",
                    [message, repo, run_id, attempt, job, test],
                )
                if cursor.rowcount:
                    touched.add((test, job))
            for test, job in touched:  # the summary again, from the whole history as it is now
                rows = self._rows(
                    f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE repo = ? AND test = ? AND job = ? ORDER BY id",  # noqa: S608
                    [repo, test, job],
                )
                summary = summarize(HistoryRun(**row).as_scoring_run() for row in rows)
                self.db.execute(
                    "UPDATE tests SET summary = ?, updated_at = ? WHERE repo = ? AND test = ? AND job = ?",
                    [json.dumps(summary.to_dict()), now_iso(), repo, test, job],
                )
        return sorted(touched)
