"""The schema, as numbered migrations for both backends, applied in order when a store is opened.

Each migration is one step of the schema, written for SQLite and for PostgreSQL side by side so the
two stay in step; the database records the steps it has (table ``schema_migrations``). Opening a store
applies the missing ones, each in its own transaction (on PostgreSQL under an advisory lock, so
instances starting together apply each once). A database with a step this flakebot does not know was
written by a newer flakebot, and is refused rather than misread.

To change the schema, add a migration at the end; never edit one that was released. JSON is kept as
text in both backends (the store reads and writes whole documents).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import sqlite_utils


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    sqlite: str
    postgres: str


def _sqlite_first_release(conn: sqlite3.Connection) -> None:
    """The tables of the releases before numbered migrations, made or completed (a database of an
    older release gains the columns added since)."""
    db = sqlite_utils.Database(conn)
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
            "verdict": str, "url": str, "created_at": str,
        },
        pk="id", not_null={"repo", "test", "status", "run_id", "attempt", "job"}, if_not_exists=True,
    )  # fmt: skip
    db["runs"].create_index(["repo", "run_id", "attempt", "job", "test"], unique=True, if_not_exists=True)
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
        pk="id", not_null={"repo", "test", "run_id", "attempt", "job"}, if_not_exists=True,
    )  # fmt: skip
    db["failures"].create_index(["repo", "run_id", "attempt", "job", "test"], unique=True, if_not_exists=True)
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
         "override": str, "override_by": str, "override_at": str},
        pk=("repo", "test"), if_not_exists=True,
    )  # fmt: skip
    db["replies"].create(
        {"repo": str, "number": int, "user": str, "kind": str, "at": str},
        pk=("repo", "number", "user", "kind"), if_not_exists=True,
    )  # fmt: skip
    for table, column in (("failures", "labelled_at"), ("quarantine", "override"), ("quarantine", "override_by"),
                          ("quarantine", "override_at"), ("failures", "judgement")):  # fmt: skip
        if column not in db[table].columns_dict:
            db[table].add_column(column, str)
    db["locks"].create({"name": str, "owner": str, "until": float}, pk="name", if_not_exists=True)


_POSTGRES_FIRST_RELEASE = """
CREATE TABLE deliveries (
    id bigserial PRIMARY KEY, forge text NOT NULL, delivery_id text NOT NULL, event text NOT NULL,
    payload bytea, status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL DEFAULT 0, lease_until double precision,
    received_at double precision, finished_at double precision, error text, owner text,
    UNIQUE (forge, delivery_id));
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE TABLE runs (
    id bigserial PRIMARY KEY, repo text NOT NULL, test text NOT NULL, status text NOT NULL,
    run_id bigint NOT NULL, attempt integer NOT NULL, job text NOT NULL, revision text, branch text,
    duration double precision, message text, verdict text, url text, created_at text,
    UNIQUE (repo, run_id, attempt, job, test));
CREATE INDEX runs_test ON runs (repo, test, job, id);
CREATE INDEX runs_revision ON runs (repo, test, job, revision);
CREATE INDEX runs_job ON runs (repo, job);
CREATE TABLE tests (
    repo text NOT NULL, test text NOT NULL, job text NOT NULL, summary text, score text, updated_at text,
    PRIMARY KEY (repo, test, job));
CREATE TABLE failures (
    id bigserial PRIMARY KEY, repo text NOT NULL, test text NOT NULL, log text, run_id bigint NOT NULL,
    attempt integer NOT NULL, job text NOT NULL, revision text, change_number bigint, model text,
    verdict text, url text, created_at text, merged integer, passed_on_retry integer, label text,
    labelled_by text, labelled_at text, judgement text,
    UNIQUE (repo, run_id, attempt, job, test));
CREATE INDEX failures_revision ON failures (repo, revision);
CREATE INDEX failures_change ON failures (repo, change_number);
CREATE TABLE changes (
    repo text NOT NULL, number bigint NOT NULL, state text, updated_at text, PRIMARY KEY (repo, number));
CREATE TABLE change_runs (
    repo text NOT NULL, number bigint NOT NULL, name text NOT NULL, run_id bigint, sha text,
    attempt integer, url text, event text, passed integer, updated_at text, PRIMARY KEY (repo, number, name));
CREATE TABLE quarantine (
    repo text NOT NULL, test text NOT NULL, number bigint, url text, state text, since text, updated_at text,
    override text, override_by text, override_at text, PRIMARY KEY (repo, test));
CREATE TABLE replies (
    repo text NOT NULL, number bigint NOT NULL, "user" text NOT NULL, kind text NOT NULL, at text,
    PRIMARY KEY (repo, number, "user", kind));
CREATE TABLE locks (name text PRIMARY KEY, owner text, until double precision);
"""

_MODELS_AND_RERUNS = """
CREATE TABLE reruns (
    repo text NOT NULL, run_id {bigint} NOT NULL, attempt integer NOT NULL, state text NOT NULL,
    asked_at text, updated_at text, PRIMARY KEY (repo, run_id, attempt));
CREATE TABLE model_versions (
    scope text NOT NULL, version text NOT NULL, meta text NOT NULL, model {bytes} NOT NULL, trial text,
    created_at text, PRIMARY KEY (scope, version));
CREATE TABLE model_trials (
    id {serial} PRIMARY KEY, scope text NOT NULL, version text NOT NULL, figures text NOT NULL, added_at text,
    FOREIGN KEY (scope, version) REFERENCES model_versions (scope, version) ON DELETE CASCADE);
CREATE INDEX model_trials_version ON model_trials (scope, version, id);
CREATE TABLE model_active (
    scope text PRIMARY KEY, version text NOT NULL, activated_at text,
    FOREIGN KEY (scope, version) REFERENCES model_versions (scope, version));
CREATE TABLE model_retrains (scope text PRIMARY KEY, outcome text NOT NULL, at text);
"""

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "the first release: queue, history, failures, changes, quarantine, replies, locks",
        sqlite="first release",
        postgres=_POSTGRES_FIRST_RELEASE,
    ),
    Migration(
        2,
        "re-runs asked for (resumed runs never re-run twice); model versions, trials, the active one",
        sqlite=_MODELS_AND_RERUNS.format(bigint="integer", bytes="blob", serial="integer"),
        postgres=_MODELS_AND_RERUNS.format(bigint="bigint", bytes="bytea", serial="bigserial"),
    ),
]
LATEST = MIGRATIONS[-1].version


def newer_than_known(versions: set[int]) -> str | None:
    """The refusal for a database with steps this flakebot does not know (written by a newer one)."""
    unknown = sorted(v for v in versions if v > LATEST)
    if not unknown:
        return None
    return (
        f"the database has schema version {unknown[-1]}, written by a newer flakebot; this one knows up to "
        f"{LATEST}. Upgrade flakebot (docs/deploy.md, 'Upgrades'), or restore a backup made for this version"
    )


def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply the missing migrations to an SQLite database; returns the versions applied."""
    from bot.store import StoreError

    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, what TEXT, applied_at TEXT)"
    )
    have = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    if refusal := newer_than_known(have):
        raise StoreError(refusal)
    applied = []
    for step in MIGRATIONS:
        if step.version in have:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", [step.version]).fetchone():
                conn.execute("ROLLBACK")  # another process applied it meanwhile
                continue
            if step.version == 1:
                _sqlite_first_release(conn)
            else:
                for statement in step.sqlite.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, what, applied_at) VALUES (?, ?, datetime('now'))",
                [step.version, step.what],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(step.version)
    return applied
