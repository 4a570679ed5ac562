"""The schema, as numbered migrations for both backends, applied in order when a store is opened.

Each migration is one step of the schema, written for SQLite and for PostgreSQL side by side so the
two stay in step; the database records the steps it has (table ``schema_migrations``). Opening a store
applies the missing ones, each in its own transaction (on PostgreSQL under an advisory lock, so
instances starting together apply each once). A database with a step this flakebot does not know was
written by a newer flakebot, and is refused rather than misread.

To change the schema, add a migration at the end; never edit one that was released. JSON is kept as
text in both backends (the store reads and writes whole documents).

SQLite files made before numbered migrations (flakebot's releases up to the backfill, the incidents and
hardening 15, whose one module made or completed its tables at each start) may hold any of the tables
and columns of steps 1, 3, 4 and 5 already: those steps are written for SQLite as code that makes what
is missing and keeps what is there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    sqlite: str | Callable[[sqlite3.Connection], None]  # statements, or code for steps an old file may hold
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
    if "retry" not in db["runs"].columns_dict:  # a file of a later release has the key of step 4 instead
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


def _sqlite_backfill(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
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


_POSTGRES_BACKFILL = """
CREATE TABLE backfills (
    repo text PRIMARY KEY, status text, days integer, since text, until text, requested_by text,
    started_at text, updated_at text, finished_at text, result text);
CREATE TABLE backfill_runs (
    repo text NOT NULL, run_id bigint NOT NULL, created_at text, attempt integer, state text, jobs integer,
    run text, read_at text, PRIMARY KEY (repo, run_id));
CREATE INDEX backfill_runs_pending ON backfill_runs (repo, state, created_at);
CREATE TABLE forge_cache (key text PRIMARY KEY, value text, at text);
ALTER TABLE failures ADD COLUMN weak_label text, ADD COLUMN weak_rule text;
"""


def _sqlite_scope_and_incidents(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    if "retry" not in db["runs"].columns_dict:
        db["runs"].add_column("retry", int, not_null_default=0)
    db.execute("DROP INDEX IF EXISTS idx_runs_repo_run_id_attempt_job_test")
    db["runs"].create_index(
        ["repo", "run_id", "attempt", "job", "test", "retry"], unique=True, if_not_exists=True
    )
    for column in ("jobs", "expires_at"):
        if column not in db["quarantine"].columns_dict:
            db["quarantine"].add_column(column, str)
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


_POSTGRES_SCOPE_AND_INCIDENTS = """
ALTER TABLE runs ADD COLUMN retry integer NOT NULL DEFAULT 0;
ALTER TABLE runs DROP CONSTRAINT runs_repo_run_id_attempt_job_test_key;
ALTER TABLE runs ADD CONSTRAINT runs_one_row UNIQUE (repo, run_id, attempt, job, test, retry);
ALTER TABLE quarantine ADD COLUMN jobs text, ADD COLUMN expires_at text;
CREATE TABLE incident_occurrences (
    id bigserial PRIMARY KEY, repo text NOT NULL, signature text NOT NULL, change text NOT NULL,
    run_id bigint NOT NULL, attempt integer NOT NULL, job text NOT NULL, test text NOT NULL, at text NOT NULL,
    url text, change_url text, UNIQUE (repo, signature, run_id, attempt, job, test));
CREATE INDEX incident_occurrences_recent ON incident_occurrences (repo, signature, at);
CREATE TABLE incidents (
    repo text NOT NULL, signature text NOT NULL, state text NOT NULL, cause text, test text, number bigint,
    url text, opened_at text, last_seen text, closed_at text, changes integer, occurrences integer,
    sample text, updated_at text, PRIMARY KEY (repo, signature));
"""


def _sqlite_hardening(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    if "deferrals" not in db["deliveries"].columns_dict:
        db["deliveries"].add_column("deferrals", int, not_null_default=0)
    db["webhook_bodies"].create(
        {"forge": str, "digest": bytes, "seen_at": float}, pk=("forge", "digest"), if_not_exists=True
    )
    db["webhook_bodies"].create_index(["seen_at"], if_not_exists=True)
    db["repo_configs"].create({"repo": str, "text": str, "read_at": str}, pk="repo", if_not_exists=True)
    db["model_activations"].create(
        {"id": int, "scope": str, "version": str, "at": str}, pk="id", not_null={"scope", "version"},
        if_not_exists=True,
    )  # fmt: skip
    db["model_activations"].create_index(["scope", "id"], if_not_exists=True)


_POSTGRES_HARDENING = """
ALTER TABLE deliveries ADD COLUMN deferrals integer NOT NULL DEFAULT 0;
CREATE TABLE webhook_bodies (forge text NOT NULL, digest bytea NOT NULL, seen_at double precision,
    PRIMARY KEY (forge, digest));
CREATE INDEX webhook_bodies_seen ON webhook_bodies (seen_at);
CREATE TABLE repo_configs (repo text PRIMARY KEY, text text, read_at text);
CREATE TABLE model_activations (id bigserial PRIMARY KEY, scope text NOT NULL, version text NOT NULL, at text);
CREATE INDEX model_activations_scope ON model_activations (scope, id);
"""

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "the first release: queue, history, failures, changes, quarantine, replies, locks",
        sqlite=_sqlite_first_release,
        postgres=_POSTGRES_FIRST_RELEASE,
    ),
    Migration(
        2,
        "re-runs asked for (resumed runs never re-run twice); model versions, trials, the active one",
        sqlite=_MODELS_AND_RERUNS.format(bigint="integer", bytes="blob", serial="integer"),
        postgres=_MODELS_AND_RERUNS.format(bigint="bigint", bytes="bytea", serial="bigserial"),
    ),
    Migration(
        3,
        "backfill: a repository's CI history read (backfills, backfill_runs), the forge's answers kept for "
        "conditional requests (forge_cache), weak labels of failures",
        sqlite=_sqlite_backfill,
        postgres=_POSTGRES_BACKFILL,
    ),
    Migration(
        4,
        "quarantine scope and incidents: re-runs within a job (runs.retry, in the runs' key), the jobs and "
        "expiry of a quarantine, failures' signatures by change and infrastructure incidents",
        sqlite=_sqlite_scope_and_incidents,
        postgres=_POSTGRES_SCOPE_AND_INCIDENTS,
    ),
    Migration(
        5,
        "hardening (issue 15): waits a forge asked for (deliveries.deferrals), signed bodies seen lately "
        "(webhook_bodies), each repository's settings as last read (repo_configs), the model versions made "
        "active (model_activations: what to fall back on)",
        sqlite=_sqlite_hardening,
        postgres=_POSTGRES_HARDENING,
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
            if callable(step.sqlite):
                step.sqlite(conn)
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
