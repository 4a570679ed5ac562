"""``flakebot store``: the store itself (``migrate``: from SQLite into PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import click

# the tables ``migrate`` copies, in an order that keeps every reference valid
TABLES = ("deliveries", "runs", "tests", "failures", "changes", "change_runs", "quarantine", "replies", "locks",
          "reruns", "model_versions", "model_trials", "model_active", "model_retrains", "backfills",
          "backfill_runs", "forge_cache", "incident_occurrences", "incidents", "webhook_bodies", "repo_configs",
          "model_activations")  # fmt: skip


@click.group()
def store() -> None:
    """The service's store: SQLite in the data directory, or PostgreSQL (FLAKEBOT_DATABASE_URL)."""


@store.command()
@click.option("--to", "target", required=True, metavar="URL",
              help="The PostgreSQL database: postgresql://user:password@host:port/dbname (its schema is made).")  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FLAKEBOT_DATA_DIR",
              default="data", show_default=True, help="The SQLite store's data directory (also FLAKEBOT_DATA_DIR).")  # fmt: skip
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FLAKEBOT_MODEL",
              help="Model directory whose versions go into the database too (also FLAKEBOT_MODEL; default "
              "DATA_DIR/model).")  # fmt: skip
def migrate(target: str, data_dir: Path, model_dir: Path | None) -> None:
    """Copy an SQLite store (and its model directory) into an empty PostgreSQL database.

    Everything is copied: the queue (deliveries not yet done are processed by the new instances), the
    test history, the failures kept for retraining with their labels, the comments' and quarantines'
    state, the incidents, the backfills (a backfill interrupted goes on where it stopped), and every
    model version (shared and per repository) with its trials and the active one.
    Stop the service first; the database must hold no flakebot data yet (it is refused otherwise, so
    nothing is copied twice). Then start the instances with FLAKEBOT_DATABASE_URL.

    \b
    Example:
      flakebot store migrate --to postgresql://flakebot:PASSWORD@db.internal:5432/flakebot --data-dir /srv/flakebot/data
    """
    from bot.store import is_database_url

    if not is_database_url(target):
        raise click.BadParameter(
            "give a PostgreSQL URL: postgresql://user:password@host:port/dbname", param_hint="--to"
        )
    source_file = data_dir / "flakebot.db"
    if not source_file.is_file():
        raise click.ClickException(f"no SQLite store to copy: {source_file} does not exist (--data-dir)")
    counts = copy_sqlite_to_postgres(source_file, target, model_dir or data_dir / "model")
    for table, count in counts.items():
        click.echo(f"{table:<16} {count:>9}")
    click.echo(
        f"copied {source_file} into the PostgreSQL database: start the instances with FLAKEBOT_DATABASE_URL"
    )


def copy_sqlite_to_postgres(source_file: Path, url: str, model_dir: Path) -> dict[str, int]:
    """Copy every row of every table (ids kept, sequences moved past them) in one transaction, then the
    model directory's versions. Returns the rows copied per table."""
    import sqlite3

    import psycopg

    from bot.store import open_store
    from bot.store.sqlite import SQLiteStore

    SQLiteStore(source_file).close()  # brings the source's schema up to date first
    open_store("", url).close()  # makes the target's schema
    source = sqlite3.connect(f"file:{source_file}?mode=ro", uri=True)
    counts: dict[str, int] = {}
    with psycopg.connect(url) as conn, conn.transaction():
        held = [t for t in TABLES if conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]  # noqa: S608
        if held:
            raise click.ClickException(
                f"the PostgreSQL database already holds flakebot data ({', '.join(held)}): migrate into an empty one"
            )
        for table in TABLES:
            cursor = source.execute(f"SELECT * FROM {table}")  # noqa: S608
            columns = [c[0] for c in cursor.description]
            names = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join(["%s"] * len(columns))
            rows = cursor.fetchall()
            with conn.cursor() as out:
                out.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608
            counts[table] = len(rows)
            if "id" in columns:
                sequence = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT max(id) FROM {table}), 1))"  # noqa: S608
                conn.execute(sequence)
    source.close()
    counts["model versions"] = _copy_model_dir(model_dir, url)
    return counts


def _copy_model_dir(model_dir: Path, url: str) -> int:
    from bot.modelstore import ModelStore, repo_dirs
    from bot.store import open_store
    from bot.storedmodels import DatabaseModels, copy_versions

    if not model_dir.is_dir():
        return 0
    target = open_store("", url)
    try:
        copied = len(copy_versions(ModelStore(model_dir), DatabaseModels(target, "")))
        for repo, folder in repo_dirs(model_dir).items():
            own = ModelStore(folder)
            copied += len(copy_versions(own, DatabaseModels(target, repo)))
            if (last := own.last_retrain()) is not None:
                target.note_model_retrain(repo, last)
        return copied
    finally:
        target.close()
