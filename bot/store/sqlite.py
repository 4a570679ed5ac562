"""The embedded store: one SQLite file through sqlite-utils.

WAL journal, so ``flakebot scores`` can read while the service writes; ``synchronous=NORMAL``: a
delivery acknowledged is on disk as far as the operating system is concerned, so a crash or a
``kill -9`` of flakebot loses nothing (a power cut may lose the last transactions).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from bot.incidents import Incident, Occurrence
from bot.scoring import HistorySummary, parse_time, summarize
from bot.store import ChangeRun, Delivery, Failure, HistoryRun, Store, StoreError, WeakLabel

OCCURRENCES_KEPT_DAYS = (
    7  # failures' signatures older than this are forgotten (unless their incident is open)
)

SCHEMA_VERSION = 1
_RUN_COLUMNS = ("test", "status", "run_id", "attempt", "job", "revision", "branch", "duration", "message",
                "verdict", "url", "created_at", "retry")  # fmt: skip


def _refuse_an_empty_file(path: Path) -> None:
    """SQLite takes a zero-byte file for a new database; for flakebot it is one that lost its data (a
    failed copy or restore, a full disk), and going on would drop all history without a word."""
    if path.is_file() and path.stat().st_size == 0:
        raise StoreError(
            f"{path} is empty (0 bytes): flakebot's database, with the test history, the comments' and "
            "quarantines' state and the deliveries already handled, was probably truncated (a failed copy "
            "or restore, a full disk). flakebot does not start on it, as that would lose all of this without "
            f"a word. Restore it from a backup; to start afresh on purpose, delete it (rm {path}) and "
            "flakebot makes a new one"
        )


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _time(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


class SQLiteStore(Store):
    def __init__(self, path: str | Path):
        self.path = str(path)
        _refuse_an_empty_file(Path(path))
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self.db = sqlite_utils.Database(conn)
            self._create()
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            raise StoreError(
                f"{path} is not a readable flakebot database ({exc}). Restore it from a backup, or move it "
                "away to start afresh (flakebot then makes a new, empty one)"
            ) from exc

    # --- schema --------------------------------------------------------------------------------
    def _create(self) -> None:
        db = self.db
        db["deliveries"].create(
            {
                "id": int, "forge": str, "delivery_id": str, "event": str, "payload": bytes,
                "status": str, "attempts": int, "next_attempt_at": float, "lease_until": float,
                "received_at": float, "finished_at": float, "error": str, "owner": str,
            },
            pk="id", not_null={"forge", "delivery_id", "event", "status"},
            defaults={"status": "pending", "attempts": 0, "next_attempt_at": 0.0},
            if_not_exists=True,
        )  # fmt: skip
        db["deliveries"].create_index(["forge", "delivery_id"], unique=True, if_not_exists=True)
        db["deliveries"].create_index(["status", "next_attempt_at"], if_not_exists=True)

        db["runs"].create(
            {
                "id": int, "repo": str, "test": str, "status": str, "run_id": int, "attempt": int,
                "job": str, "revision": str, "branch": str, "duration": float, "message": str,
                "verdict": str, "url": str, "created_at": str, "retry": int,
            },
            pk="id", not_null={"repo", "test", "status", "run_id", "attempt", "job", "retry"},
            defaults={"retry": 0}, if_not_exists=True,
        )  # fmt: skip
        # issue 13: ``retry``, the test runner's own re-runs of a test within one job (JUnit flaky reruns):
        # a failed run and the pass that followed are two rows of the same run, attempt and job
        if "retry" not in db["runs"].columns_dict:
            db["runs"].add_column("retry", int, not_null_default=0)
        db.execute("DROP INDEX IF EXISTS idx_runs_repo_run_id_attempt_job_test")
        db["runs"].create_index(
            ["repo", "run_id", "attempt", "job", "test", "retry"], unique=True, if_not_exists=True
        )
        db["runs"].create_index(["repo", "test", "job", "id"], if_not_exists=True)
        db["runs"].create_index(["repo", "test", "job", "revision"], if_not_exists=True)
        db["runs"].create_index(["repo", "job"], if_not_exists=True)

        db["tests"].create(
            {"repo": str, "test": str, "job": str, "summary": str, "score": str, "updated_at": str},
            pk=("repo", "test", "job"), if_not_exists=True,
        )  # fmt: skip

        db["failures"].create(
            {
                "id": int, "repo": str, "test": str, "log": str, "run_id": int, "attempt": int,
                "job": str, "revision": str, "change_number": int, "model": str, "verdict": str,
                "url": str, "created_at": str, "merged": int, "passed_on_retry": int, "label": str,
                "labelled_by": str, "labelled_at": str, "judgement": str,
            },
            pk="id", not_null={"repo", "test", "run_id", "attempt", "job"},
            if_not_exists=True,
        )  # fmt: skip
        db["failures"].create_index(
            ["repo", "run_id", "attempt", "job", "test"], unique=True, if_not_exists=True
        )
        db["failures"].create_index(["repo", "revision"], if_not_exists=True)
        db["failures"].create_index(["repo", "change_number"], if_not_exists=True)

        db["changes"].create(
            {"repo": str, "number": int, "state": str, "updated_at": str},
            pk=("repo", "number"),
            if_not_exists=True,
        )
        db["change_runs"].create(
            {"repo": str, "number": int, "name": str, "run_id": int, "sha": str, "attempt": int, "url": str,
             "event": str, "passed": int, "updated_at": str},
            pk=("repo", "number", "name"), if_not_exists=True,
        )  # fmt: skip
        db["quarantine"].create(
            {"repo": str, "test": str, "number": int, "url": str, "state": str, "since": str, "updated_at": str,
             "override": str, "override_by": str, "override_at": str, "jobs": str, "expires_at": str},
            pk=("repo", "test"), if_not_exists=True,
        )  # fmt: skip
        db["replies"].create(
            {"repo": str, "number": int, "user": str, "kind": str, "at": str},
            pk=("repo", "number", "user", "kind"), if_not_exists=True,
        )  # fmt: skip
        # columns added after the first release: databases made before them gain them here
        # issue 13: quarantine.jobs (JSON list of the jobs it is quarantined in; NULL: every job) and
        # quarantine.expires_at (ISO-8601; NULL: never)
        for table, column in (("failures", "labelled_at"), ("quarantine", "override"),
                              ("quarantine", "override_by"), ("quarantine", "override_at"),
                              ("failures", "judgement"), ("quarantine", "jobs"),
                              ("quarantine", "expires_at")):  # fmt: skip
            if column not in db[table].columns_dict:
                db[table].add_column(column, str)
        # issue 13, infrastructure incidents: each failure's signature in each change, and the incidents
        db["incident_occurrences"].create(
            {"id": int, "repo": str, "signature": str, "change": str, "run_id": int, "attempt": int, "job": str,
             "test": str, "at": str, "url": str, "change_url": str},
            pk="id", not_null={"repo", "signature", "change", "run_id", "attempt", "job", "test", "at"},
            if_not_exists=True,
        )  # fmt: skip
        db["incident_occurrences"].create_index(
            ["repo", "signature", "run_id", "attempt", "job", "test"], unique=True, if_not_exists=True
        )
        db["incident_occurrences"].create_index(["repo", "signature", "at"], if_not_exists=True)
        db["incidents"].create(
            {"repo": str, "signature": str, "state": str, "cause": str, "test": str, "number": int, "url": str,
             "opened_at": str, "last_seen": str, "closed_at": str, "changes": int, "occurrences": int,
             "sample": str, "updated_at": str},
            pk=("repo", "signature"), not_null={"repo", "signature", "state"}, if_not_exists=True,
        )  # fmt: skip
        if "deferrals" not in db["deliveries"].columns_dict:  # hardening (issue 15): rate-limit waits
            db["deliveries"].add_column("deferrals", int, not_null_default=0)
        db["locks"].create({"name": str, "owner": str, "until": float}, pk="name", if_not_exists=True)
        # hardening (issue 15): signed webhook bodies seen lately (replays)
        db["webhook_bodies"].create(
            {"forge": str, "digest": bytes, "seen_at": float}, pk=("forge", "digest"), if_not_exists=True
        )
        db["webhook_bodies"].create_index(["seen_at"], if_not_exists=True)
        # hardening (issue 15): each repository's settings file as last read
        db["repo_configs"].create({"repo": str, "text": str, "read_at": str}, pk="repo", if_not_exists=True)
        self._create_backfill()
        db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
        db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")

    def _create_backfill(self) -> None:
        """The tables of reading a repository's CI history (``flakebot backfill``)."""
        db = self.db
        db["backfills"].create(
            {"repo": str, "status": str, "days": int, "since": str, "until": str, "requested_by": str,
             "started_at": str, "updated_at": str, "finished_at": str, "result": str},
            pk="repo", if_not_exists=True,
        )  # fmt: skip
        db["backfill_runs"].create(
            {"repo": str, "run_id": int, "created_at": str, "attempt": int, "state": str, "jobs": int,
             "run": str, "read_at": str},
            pk=("repo", "run_id"), if_not_exists=True,
        )  # fmt: skip
        db["backfill_runs"].create_index(["repo", "state", "created_at"], if_not_exists=True)
        db["forge_cache"].create({"key": str, "value": str, "at": str}, pk="key", if_not_exists=True)
        for column in ("weak_label", "weak_rule"):
            if column not in db["failures"].columns_dict:
                db["failures"].add_column(column, str)

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    # --- the durable queue -----------------------------------------------------------------------
    def enqueue(self, forge: str, delivery_id: str, event: str, payload: bytes) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO deliveries (forge, delivery_id, event, payload, status, attempts, "
                "next_attempt_at, received_at) VALUES (?, ?, ?, ?, 'pending', 0, 0, ?)",
                [forge, delivery_id, event, payload, time.time()],
            )
        return cursor.rowcount == 1

    def claim(
        self, now: float, lease: float, owner: str = "", forges: Sequence[str] | None = None
    ) -> Delivery | None:
        params: dict[str, Any] = {"now": now, "until": now + lease, "owner": owner}
        only = ""
        if forges is not None:
            names = {f"f{i}": forge for i, forge in enumerate(forges)}
            only = f"AND forge IN ({', '.join(':' + n for n in names) or 'NULL'}) "
            params.update(names)
        with self.db.conn:
            rows = self._rows(
                "UPDATE deliveries SET status = 'working', attempts = attempts + 1, lease_until = :until, "  # noqa: S608
                "owner = :owner WHERE id = (SELECT id FROM deliveries WHERE status = 'pending' "
                f"AND next_attempt_at <= :now {only}ORDER BY next_attempt_at, id LIMIT 1) "
                "RETURNING id, forge, delivery_id, event, payload, attempts, status",
                params,
            )
        if not rows:
            return None
        row = rows[0]
        return Delivery(**{**row, "payload": bytes(row["payload"])})

    def finish(self, delivery: int) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE deliveries SET status = 'done', finished_at = ?, lease_until = NULL, payload = X'' "
                "WHERE id = ?",
                [time.time(), delivery],
            )

    def fail(self, delivery: int, error: str, retry_at: float | None) -> None:
        with self.db.conn:
            if retry_at is None:
                self.db.execute(
                    "UPDATE deliveries SET status = 'dead', error = ?, finished_at = ?, lease_until = NULL WHERE id = ?",
                    [error[:2000], time.time(), delivery],
                )
            else:
                self.db.execute(
                    "UPDATE deliveries SET status = 'pending', error = ?, next_attempt_at = ?, lease_until = NULL "
                    "WHERE id = ?",
                    [error[:2000], retry_at, delivery],
                )

    def renew(self, delivery: int, until: float) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE deliveries SET lease_until = ? WHERE id = ? AND status = 'working'", [until, delivery]
            )

    def recover(self, now: float, owners: list[str] | None = None) -> int:
        owners = owners or []
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE status = 'working' AND "  # noqa: S608
                f"(lease_until < ? OR owner IN ({', '.join('?' * len(owners)) or 'NULL'}))",
                [now, *owners],
            )
        return cursor.rowcount

    def working_owners(self) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT owner FROM deliveries WHERE status = 'working' AND owner IS NOT NULL"
        )
        return [r["owner"] for r in rows]

    def queue_depth(self) -> int:
        return self.db.execute(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'working')"
        ).fetchone()[0]

    def deliveries(self, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, forge, delivery_id, event, status, attempts, error FROM deliveries"
        return self._rows(
            sql + (" WHERE status = ? ORDER BY id" if status else " ORDER BY id"), [status] if status else []
        )

    # --- repositories ------------------------------------------------------------------------------
    def repos(self) -> list[str]:
        return [r["repo"] for r in self._rows("SELECT DISTINCT repo FROM tests ORDER BY repo")]

    # --- test history ------------------------------------------------------------------------------
    def record_runs(self, repo: str, runs: list[HistoryRun]) -> list[HistoryRun]:
        added: list[HistoryRun] = []
        with self.db.conn:
            for run in runs:
                values = {k: getattr(run, k) for k in _RUN_COLUMNS}
                values["created_at"] = values["created_at"] or _now_iso()
                cursor = self.db.execute(
                    f"INSERT OR IGNORE INTO runs (repo, {', '.join(_RUN_COLUMNS)}) "  # noqa: S608
                    f"VALUES (?, {', '.join('?' * len(_RUN_COLUMNS))})",
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
                    [repo, run.test, run.job, json.dumps(summary.to_dict()), _now_iso()],
                )
        return added

    def window(self, repo: str, test: str, job: str, limit: int, branch: str | None) -> list[HistoryRun]:
        rows = self._rows(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE repo = :repo AND test = :test AND job = :job"  # noqa: S608
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
                [json.dumps(score), _now_iso(), repo, test, job],
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
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE repo = ? AND test = ? "  # noqa: S608
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

    # --- failures kept for retraining --------------------------------------------------------------
    def record_failures(self, repo: str, failures: list[Failure]) -> None:
        with self.db.conn:
            for f in failures:
                self.db.execute(
                    "INSERT OR IGNORE INTO failures (repo, test, log, run_id, attempt, job, revision, change_number, "
                    "model, verdict, url, created_at, judgement) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [repo, f.test, f.log, f.run_id, f.attempt, f.job, f.revision, f.change_number,
                     json.dumps(f.model), f.verdict, f.url, f.created_at or _now_iso(), json.dumps(f.judgement)],
                )  # fmt: skip

    def label_merged(self, repo: str, revision: str) -> int:
        with self.db.conn:
            return self.db.execute(
                "UPDATE failures SET merged = 1, labelled_at = ? WHERE repo = ? AND revision = ?",
                [_now_iso(), repo, revision],
            ).rowcount

    def label_passed_on_retry(
        self, repo: str, run_id: int, before_attempt: int, tests: list[str] | None, job: str | None = None
    ) -> int:
        sql = "UPDATE failures SET passed_on_retry = 1, labelled_at = ? WHERE repo = ? AND run_id = ? AND attempt < ?"
        params: list[Any] = [_now_iso(), repo, run_id, before_attempt]
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
                [label, who, _now_iso(), repo, change_number, test],
            ).rowcount

    def failures_of_change(self, repo: str, change_number: int) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT test, job, run_id, attempt, revision, verdict, model, url, label, labelled_by, merged, "
            "passed_on_retry, created_at, judgement FROM failures WHERE repo = ? AND change_number = ? ORDER BY id",
            [repo, change_number],
        )
        for row in rows:
            row["model"] = json.loads(row["model"] or "{}")
            row["judgement"] = json.loads(row["judgement"] or "{}")
        return rows

    def training_records(self, repo: str | None = None) -> Iterator[dict[str, Any]]:
        where, params = ("WHERE repo = ?", [repo]) if repo else ("", [])
        for row in self.db.query(
            f"SELECT id, repo, test, log, job, revision, change_number, created_at, merged, passed_on_retry, label, "  # noqa: S608
            f"url, weak_label FROM failures {where} ORDER BY id",
            params,
        ):
            # a human label wins; a pass on retry of the same commit is strong flake evidence; then what a
            # backfill inferred from the history (weak)
            label = row["label"] or ("flake" if row["passed_on_retry"] else None) or row["weak_label"]
            record = {
                "status": "failure",
                "test": row["test"],
                "log": row["log"],
                "context": row["job"],
                "revision": row["revision"],
                "date": row["created_at"],
                "merged": True if row["merged"] else None,
                "label": label,
                "repo": row["repo"],
                "failure_id": row["id"],
            }
            if row["change_number"] is not None:
                record["pull"] = row["change_number"]
            if row["url"]:
                record["url"] = row["url"]
            yield record

    def last_labelled(self) -> dict[str, str]:
        rows = self._rows(
            "SELECT repo, max(labelled_at) AS at FROM failures WHERE labelled_at IS NOT NULL GROUP BY repo"
        )
        return {r["repo"]: r["at"] for r in rows}

    # --- reading a repository's CI history (backfill) ----------------------------------------------
    def has_history(self, repo: str) -> bool:
        return self.db.execute("SELECT 1 FROM runs WHERE repo = ? LIMIT 1", [repo]).fetchone() is not None

    def backfill_state(self, repo: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM backfills WHERE repo = ?", [repo])
        if not rows:
            return None
        row = rows[0]
        row["result"] = json.loads(row["result"]) if row["result"] else None
        return row

    def save_backfill(self, repo: str, fields: dict[str, Any], *, only_new: bool = False) -> bool:
        unknown = set(fields) - {"status", "days", "since", "until", "requested_by", "started_at", "finished_at",
                                 "result"}  # fmt: skip
        if unknown:
            raise ValueError(f"not a field of a backfill: {', '.join(sorted(unknown))}")
        values = {**fields, "updated_at": _now_iso()}
        if "result" in values:
            values["result"] = json.dumps(values["result"]) if values["result"] is not None else None
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
            if not ids:
                return 0
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
                [jobs, _now_iso(), repo, run_id],
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
            f"SELECT {', '.join('r.' + c for c in _RUN_COLUMNS)} FROM runs r JOIN backfill_runs b "  # noqa: S608
            "ON b.repo = r.repo AND b.run_id = r.run_id WHERE r.repo = ? AND b.state = 'done' "
            "AND b.created_at BETWEEN ? AND ? AND r.status IN ('failed', 'error') ORDER BY r.test, r.job, r.id",
            [repo, since, until],
        )
        return [HistoryRun(**row) for row in rows]

    def test_runs(self, repo: str, test: str, job: str) -> list[HistoryRun]:
        rows = self._rows(
            f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE repo = ? AND test = ? AND job = ? ORDER BY id",  # noqa: S608
            [repo, test, job],
        )
        return [HistoryRun(**row) for row in rows]

    def tests_recorded_since(self, repo: str, at: str) -> list[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT test, job FROM tests WHERE repo = ? AND updated_at >= ? ORDER BY test, job", [repo, at]
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def label_weak(self, repo: str, labels: list[WeakLabel]) -> int:
        changed, now = 0, _now_iso()
        with self.db.conn:
            for w in labels:
                if w.label not in ("flake", "real"):
                    raise ValueError(f"label must be flake or real, not {w.label!r}")
                changed += self.db.execute(
                    "UPDATE failures SET weak_label = ?, weak_rule = ?, labelled_at = ? WHERE repo = ? AND run_id = ? "
                    "AND attempt = ? AND job = ? AND test = ? AND weak_label IS NOT ?",
                    [w.label, w.rule, now, repo, w.run_id, w.attempt, w.job, w.test, w.label],
                ).rowcount
        return changed

    def cache_get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM forge_cache WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def cache_put(self, key: str, value: str) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO forge_cache (key, value, at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "value = excluded.value, at = excluded.at",
                [key, value, _now_iso()],
            )

    def cache_drop(self, prefix: str) -> int:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.db.conn:
            return self.db.execute(
                "DELETE FROM forge_cache WHERE key LIKE ? ESCAPE '\\'", [escaped + "%"]
            ).rowcount

    # --- comments, quarantine, locks ---------------------------------------------------------------
    def change_state(self, repo: str, number: int) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT state FROM changes WHERE repo = ? AND number = ?", [repo, number]
        ).fetchone()
        return json.loads(row[0]) if row else {}

    def save_change_state(self, repo: str, number: int, state: dict[str, Any]) -> None:
        with self.db.conn:
            self.db["changes"].upsert(
                {"repo": repo, "number": number, "state": json.dumps(state), "updated_at": _now_iso()},
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
                    "updated_at": _now_iso(),
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

    def set_quarantine(
        self,
        repo: str,
        test: str,
        *,
        number: int | None,
        url: str | None,
        state: str,
        jobs: Sequence[str] | None = None,
        expires_at: str | None = None,
    ) -> None:
        with self.db.conn:
            existing = self.db.execute(
                "SELECT since, state FROM quarantine WHERE repo = ? AND test = ?", [repo, test]
            ).fetchone()
            since = existing[0] if existing and existing[1] != "closed" and state != "closed" else _now_iso()
            self.db["quarantine"].upsert(
                {"repo": repo, "test": test, "number": number, "url": url, "state": state, "since": since,
                 "updated_at": _now_iso(), "jobs": json.dumps(list(jobs)) if jobs is not None else None,
                 "expires_at": expires_at},
                pk=("repo", "test"),
            )  # fmt: skip

    def quarantined(self, repo: str | None = None) -> list[dict[str, Any]]:
        where, params = ("AND repo = ?", [repo]) if repo else ("", [])
        rows = self._rows(
            f"SELECT repo, test, number, url, state, since, jobs, expires_at FROM quarantine "  # noqa: S608
            f"WHERE state != 'closed' {where} ORDER BY repo, test",
            params,
        )
        for row in rows:
            row["jobs"] = json.loads(row["jobs"]) if row["jobs"] else None
        return rows

    def set_override(self, repo: str, test: str, override: str | None, who: str | None) -> None:
        if override not in ("quarantine", "unquarantine", None):
            raise ValueError(f"override must be quarantine or unquarantine, not {override!r}")
        now = _now_iso()
        with self.db.conn:
            self.db.execute(
                "INSERT INTO quarantine (repo, test, state, since, updated_at, override, override_by, override_at) "
                "VALUES (?, ?, 'closed', ?, ?, ?, ?, ?) ON CONFLICT (repo, test) DO UPDATE SET "
                "override = excluded.override, override_by = excluded.override_by, "
                "override_at = excluded.override_at, updated_at = excluded.updated_at",
                [repo, test, now, now, override, who if override else None, now if override else None],
            )

    def overrides(self, repo: str) -> dict[str, dict[str, Any]]:
        rows = self._rows(
            "SELECT test, override, override_by, override_at FROM quarantine WHERE repo = ? AND override IS NOT NULL",
            [repo],
        )
        return {
            r["test"]: {"override": r["override"], "by": r["override_by"], "at": r["override_at"]}
            for r in rows
        }

    def remember_reply(self, repo: str, number: int, user: str, kind: str) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO replies (repo, number, user, kind, at) VALUES (?, ?, ?, ?, ?)",
                [repo, number, user, kind, _now_iso()],
            )
        return cursor.rowcount == 1

    def forget_reply(self, repo: str, number: int, user: str, kind: str) -> None:
        with self.db.conn:
            self.db.execute(
                "DELETE FROM replies WHERE repo = ? AND number = ? AND user = ? AND kind = ?",
                [repo, number, user, kind],
            )

    def try_lock(self, name: str, owner: str, now: float, ttl: float) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT INTO locks (name, owner, until) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until "
                "WHERE locks.until < ? OR locks.owner = excluded.owner",
                [name, owner, now + ttl, now],
            )
        return cursor.rowcount == 1

    def unlock(self, name: str, owner: str) -> None:
        with self.db.conn:
            self.db.execute("DELETE FROM locks WHERE name = ? AND owner = ?", [name, owner])

    def lock_holder(self, name: str, now: float) -> str | None:
        row = self.db.execute("SELECT owner FROM locks WHERE name = ? AND until >= ?", [name, now]).fetchone()
        return row[0] if row else None

    # --- infrastructure incidents (issue 13) ----------------------------------------------------------
    def record_occurrences(self, repo: str, occurrences: Sequence[Occurrence]) -> int:
        added = 0
        with self.db.conn:
            for o in occurrences:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO incident_occurrences (repo, signature, change, run_id, attempt, job, test, "
                    "at, url, change_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [repo, o.signature, o.change, o.run_id, o.attempt, o.job, o.test, _iso(o.at), o.url, o.change_url],
                )  # fmt: skip
                added += cursor.rowcount
            kept = _iso(datetime.now(UTC) - timedelta(days=OCCURRENCES_KEPT_DAYS))
            self.db.execute(
                "DELETE FROM incident_occurrences WHERE repo = ? AND at < ? AND signature NOT IN "
                "(SELECT signature FROM incidents WHERE repo = ? AND state = 'open')",
                [repo, kept, repo],
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
        return [Occurrence(**{**row, "at": _time(row["at"])}) for row in rows]

    def save_incident(self, repo: str, incident: Incident) -> None:
        with self.db.conn:
            self.db["incidents"].upsert(
                {"repo": repo, "signature": incident.signature, "state": incident.state,
                 "cause": json.dumps(list(incident.cause)), "test": incident.test, "number": incident.number,
                 "url": incident.url, "opened_at": _iso(incident.opened_at), "last_seen": _iso(incident.last_seen),
                 "closed_at": _iso(incident.closed_at), "changes": incident.changes,
                 "occurrences": incident.occurrences, "sample": incident.sample, "updated_at": _now_iso()},
                pk=("repo", "signature"),
            )  # fmt: skip

    def incidents(self, repo: str | None = None, state: str | None = None) -> list[Incident]:
        where, params = ["1 = 1"], []
        if repo:
            where.append("repo = ?")
            params.append(repo)
        if state:
            where.append("state = ?")
            params.append(state)
        rows = self._rows(
            "SELECT repo, signature, state, cause, test, number, url, opened_at, last_seen, closed_at, changes, "  # noqa: S608
            f"occurrences, sample FROM incidents WHERE {' AND '.join(where)} "
            "ORDER BY state = 'open' DESC, coalesce(last_seen, opened_at) DESC",
            params,
        )
        return [
            Incident(**{**row, "cause": tuple(json.loads(row["cause"] or "[]")), "sample": row["sample"] or "",
                        "opened_at": _time(row["opened_at"]), "last_seen": _time(row["last_seen"]),
                        "closed_at": _time(row["closed_at"]), "changes": row["changes"] or 0,
                        "occurrences": row["occurrences"] or 0})
            for row in rows
        ]  # fmt: skip

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
                    f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs WHERE repo = ? AND test = ? AND job = ? ORDER BY id",  # noqa: S608
                    [repo, test, job],
                )
                summary = summarize(HistoryRun(**row).as_scoring_run() for row in rows)
                self.db.execute(
                    "UPDATE tests SET summary = ?, updated_at = ? WHERE repo = ? AND test = ? AND job = ?",
                    [json.dumps(summary.to_dict()), _now_iso(), repo, test, job],
                )
        return sorted(touched)

    # --- hardening (issue 15): signed bodies seen, each repository's last settings --------------
    def remember_body(self, forge: str, digest: bytes, now: float, window: float) -> bool:
        with self.db.conn:
            self.db.execute("DELETE FROM webhook_bodies WHERE seen_at < ?", [now - window])
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO webhook_bodies (forge, digest, seen_at) VALUES (?, ?, ?)",
                [forge, digest, now],
            )
        return cursor.rowcount == 1

    def forget_body(self, forge: str, digest: bytes) -> None:
        with self.db.conn:
            self.db.execute("DELETE FROM webhook_bodies WHERE forge = ? AND digest = ?", [forge, digest])

    def remember_config(self, repo: str, text: str | None) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO repo_configs (repo, text, read_at) VALUES (?, ?, ?) ON CONFLICT (repo) DO UPDATE "
                "SET text = excluded.text, read_at = excluded.read_at",
                [repo, text, _now_iso()],
            )

    def last_config(self, repo: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT text, read_at FROM repo_configs WHERE repo = ?", [repo])
        return rows[0] if rows else None

    def defer(self, delivery: int, reason: str, until: float) -> int:
        with self.db.conn:
            rows = self._rows(
                "UPDATE deliveries SET status = 'pending', attempts = max(0, attempts - 1), error = ?, "
                "next_attempt_at = ?, lease_until = NULL, deferrals = deferrals + 1 WHERE id = ? "
                "RETURNING deferrals",
                [reason[:2000], until, delivery],
            )
        return rows[0]["deferrals"] if rows else 0

    def close(self) -> None:
        self.db.conn.close()
