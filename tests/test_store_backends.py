"""What the two backends add to the store contract: models in the database, schema migrations, the
SQLite guard, the copy from SQLite into PostgreSQL, and no secret at rest in PostgreSQL either."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from bench.ci_corpus import generate
from bot.cli import cli
from bot.context import ModelProvider
from bot.model import FlakeClassifier
from bot.modelstore import ModelError, ModelStore, retry_threshold
from bot.store import Failure, HistoryRun, StoreError, masked, open_store
from bot.store.migrations import LATEST
from bot.store.sqlite import SQLiteStore
from bot.storedmodels import DatabaseModels, copy_versions

REPO = "github:octo/demo"


@pytest.fixture(scope="module")
def model():
    return FlakeClassifier().fit(list(generate(120, seed=3)))


def test_models_in_the_store_keep_the_meaning_of_a_model_directory(store, model, tmp_path):
    """The same steps on a model directory and in the database give the same versions, trials and
    retry threshold (``modelstore.retry_threshold``)."""
    places = [ModelStore(tmp_path / "model"), DatabaseModels(store, REPO)]
    for models in places:
        with pytest.raises(ModelError, match="flakebot train"):
            models.load()
        first = models.save(model, {"trained_on": {"failures": 120}})
        second = models.save(model, {"note": "candidate"}, activate=False)
        models.write_trial(second, {"precision": 0.95, "retry_threshold": 0.8})
        models.add_trial(second, {"precision": 0.9, "retry_threshold": 0.7, "overlap": True})
        assert models.active_version() == first
        models.activate(second)
        loaded, meta = models.load()
        assert meta["version"] == second and meta["note"] == "candidate"
        assert meta["trial"]["precision"] == 0.95 and meta["trials"][0]["overlap"] is True
        assert retry_threshold(meta) == 0.8 == loaded.retry_threshold_  # the overlapping trial is skipped
        assert [m["version"] for m in models.versions()] == [second, first]
        assert [m["active"] for m in models.versions()] == [True, False]
        with pytest.raises(ModelError, match="no model version"):
            models.activate("nope")
        with pytest.raises(ModelError, match="no model version"):
            models.add_trial("nope", {})
        models.note_retrain({"outcome": "kept"})
        assert models.last_retrain() == {"outcome": "kept"}
    assert DatabaseModels(store, "").active_version() is None  # the shared scope is another
    assert store.model_scopes() == [REPO]


def test_every_instance_serves_the_model_a_retrain_activated_anywhere(store, model):
    instance_a, instance_b = ModelProvider(store), ModelProvider(store)
    shared = DatabaseModels(store, "")
    first = shared.save(model, {})
    assert instance_a.get(REPO)[1]["version"] == first == instance_b.get(REPO)[1]["version"]
    own = instance_a.repo_store(REPO).save(model, {"trained_on": {"source": "flakebot retrain"}})
    assert instance_b.get(REPO)[1]["version"] == own  # the repository's own, seen by the other instance
    assert instance_b.get("github:other/repo")[1]["version"] == first


def test_a_model_directory_is_copied_into_the_database_once(store, model, tmp_path):
    directory = ModelStore(tmp_path / "model")
    old = directory.save(model, {"n": 1})
    directory.write_trial(old, {"retry_threshold": 0.9})
    directory.save(model, {"n": 2}, activate=False)
    directory.activate(old)
    database = DatabaseModels(store, "")
    assert len(copy_versions(directory, database)) == 2
    assert copy_versions(directory, database) == []
    assert database.active_version() == old and retry_threshold(database.meta(old)) == 0.9


def test_a_model_in_the_database_that_cannot_be_loaded_falls_back_to_the_one_active_before(store, model):
    """Hardening 12 with the models in the database: the versions made active are kept
    (``model_activations``), so a broken active version is judged by the one active before it."""
    shared = DatabaseModels(store, "")
    first = shared.save(model, {})
    refused = shared.save(model, {}, activate=False)
    shared.write_trial(refused, {"decision": {"promoted": False}})  # a candidate its trial refused
    second = shared.save(model, {})
    assert shared.earlier_active(second) == [first] and store.model_activations("") == [first, second]
    if hasattr(store, "db"):  # the blob cut short, as a failed write leaves a file
        with store.db.conn:
            store.db.execute("UPDATE model_versions SET model = ? WHERE version = ?", [b"\x1f\x8b", second])
    else:
        with psycopg.connect(store.store.url, autocommit=True) as conn:
            conn.execute("UPDATE model_versions SET model = %s WHERE version = %s", [b"\x1f\x8b", second])
    loaded = ModelProvider(store).load(REPO)
    assert loaded.model is not None and loaded.meta["version"] == first
    assert f"{second} could not be loaded" in loaded.problem and f"previous version {first}" in loaded.problem


def test_a_database_written_by_a_newer_flakebot_is_refused(tmp_path, pg_url):
    SQLiteStore(tmp_path / "flakebot.db").close()
    conn = sqlite3.connect(tmp_path / "flakebot.db")
    conn.execute("INSERT INTO schema_migrations (version, what) VALUES (?, 'from the future')", [LATEST + 1])
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer flakebot"):
        SQLiteStore(tmp_path / "flakebot.db")
    open_store("", pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute(
            "INSERT INTO schema_migrations (version, what) VALUES (%s, 'from the future')", [LATEST + 1]
        )
    try:
        with pytest.raises(StoreError, match="newer flakebot"):
            open_store("", pg_url)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as pg:
            pg.execute("DELETE FROM schema_migrations WHERE version > %s", [LATEST])


def test_a_database_of_the_first_release_is_migrated_on_opening(tmp_path):
    conn = sqlite3.connect(tmp_path / "flakebot.db")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT, until FLOAT)")
    conn.commit()
    conn.close()
    store = SQLiteStore(tmp_path / "flakebot.db")
    assert store.begin_rerun(REPO, 1, 1) is None  # a table of migration 2
    versions = [r[0] for r in store.db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, LATEST + 1))
    store.close()


def test_a_second_service_on_one_sqlite_file_refuses_to_start(tmp_path):
    first = SQLiteStore(tmp_path / "flakebot.db", guard=True)
    code = (
        "import sys; from bot.store.sqlite import SQLiteStore\n"
        "try:\n    SQLiteStore(sys.argv[1], guard=True)\nexcept Exception as exc:\n    print(exc); sys.exit(3)"
    )
    refused = subprocess.run([sys.executable, "-c", code, str(tmp_path / "flakebot.db")], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 3, refused.stderr
    assert f"pid {os.getpid()}" in refused.stdout and "FLAKEBOT_DATABASE_URL" in refused.stdout
    SQLiteStore(tmp_path / "flakebot.db").close()  # the command line may still read it
    first.close()
    SQLiteStore(tmp_path / "flakebot.db", guard=True).close()  # free again


def test_store_migrate_copies_an_sqlite_store_into_postgresql(tmp_path, pg_url, model):
    data = tmp_path / "data"
    sqlite = open_store(data)
    sqlite.enqueue("github", "pending-1", "workflow_run", b'{"x": 1}')
    sqlite.record_runs(REPO, [HistoryRun(test="t", status="failed", run_id=1, job="tests", revision="r1")])
    sqlite.save_score(REPO, "t", "tests", {"score": 0.4})
    sqlite.record_failures(REPO, [Failure(test="t", log="E boom", run_id=1, attempt=1, job="tests", revision="r1",
                                          change_number=3)])  # fmt: skip
    sqlite.label_by_human(REPO, 3, "t", "flake", "octocat")
    sqlite.save_change_state(REPO, 3, {"sections": {"CI": {"sha": "r1"}}})
    sqlite.set_quarantine(REPO, "t", number=9, url="https://x/9", state="open")
    sqlite.remember_reply(REPO, 3, "mallory", "denied")
    sqlite.close()
    version = ModelStore(data / "model").save(model, {"n": 1})
    ModelStore(data / "model" / "repos" / "github" / "octo" / "demo").save(model, {"n": 2})

    result = CliRunner().invoke(cli, ["store", "migrate", "--to", pg_url, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    pg = open_store("", pg_url)
    try:
        assert pg.claim(0.0, 60, "new").delivery_id == "pending-1"
        assert pg.summary(REPO, "t", "tests").runs == 1 and pg.scores(REPO)[0]["score"] == {"score": 0.4}
        (record,) = pg.training_records(REPO)
        assert record["label"] == "flake" and record["pull"] == 3
        assert pg.change_state(REPO, 3) == {"sections": {"CI": {"sha": "r1"}}}
        assert [q["number"] for q in pg.quarantined(REPO)] == [9]
        assert not pg.remember_reply(REPO, 3, "mallory", "denied")
        assert DatabaseModels(pg, "").active_version() == version
        assert DatabaseModels(pg, REPO).load()[1]["n"] == 2
        pg.enqueue("github", "after", "workflow_run", b"{}")  # ids go on after the copied ones
    finally:
        pg.close()
    again = CliRunner().invoke(cli, ["store", "migrate", "--to", pg_url, "--data-dir", str(data)])
    assert again.exit_code == 1 and "already holds flakebot data" in again.output


BEFORE_MIGRATIONS = Path(__file__).parent / "fixtures" / "store" / "before-migrations.sql"


def _reads_what_was_written_before_migrations(store) -> None:
    """What ``tests/fixtures/store/make_before_migrations.py`` wrote, read back with its meaning."""
    test = "tests/t.py::test_a"
    assert [(r.retry, r.status) for r in store.test_runs(REPO, test, "tests")][:2] == [
        (0, "failed"),
        (1, "passed"),
    ]
    (quarantined,) = store.quarantined(REPO)
    assert (quarantined["jobs"], quarantined["expires_at"]) == (["tests"], "2030-01-01T00:00:00Z")
    assert [r["label"] for r in store.training_records(REPO)] == ["real"]  # the weak label
    assert store.backfill_state(REPO)["result"] == {"runs": 1}
    assert store.backfill_counts(REPO, "2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z")["jobs"] == 1
    (incident,) = store.incidents(REPO, "open")
    assert incident.cause == ("connection refused",) and incident.changes == 3
    assert [o.change for o in store.occurrences(REPO, [incident.signature], "2024-01-01T00:00:00Z")] == ["#3"]
    assert (
        store.cache_get("https://api.github.com/repos/octo/demo/actions/runs") == '["etag", null, [], null]'
    )
    assert store.change_state(REPO, 3) == {"sections": {"CI": {"sha": "r2"}}}
    assert store.last_config(REPO)["text"] == "retry:\n  enabled: false\n"
    assert not store.remember_body("github", b"\x01" * 32, 1_700_000_100.0, 600.0)  # seen 100 s before
    assert store.deliveries("pending")[0]["error"] == "GitHub asks to wait 120 s"
    assert store.defer(1, "again", 4_000_000_100.0) == 2  # its deferral before migrations counted
    # the key of step 4 holds: another try within the job is a row of its own, the same one is not
    again = HistoryRun(test, "passed", 41, 1, "tests", "r1", "main", retry=2)
    assert store.record_runs(REPO, [again]) == [again] and store.record_runs(REPO, [again]) == []


def test_a_store_written_before_numbered_migrations_is_migrated_and_copied_whole(tmp_path, pg_url):
    """An SQLite file of flakebot before numbered migrations, with the backfill's and the incidents'
    tables and columns made by its one module, opens on the migrated schema, and ``flakebot store
    migrate`` copies every table of it into PostgreSQL."""
    from bot.commands.store import TABLES

    for name in ("opened", "copied"):
        (tmp_path / name).mkdir()
        with sqlite3.connect(tmp_path / name / "flakebot.db") as conn:
            conn.executescript(BEFORE_MIGRATIONS.read_text())
    sqlite = SQLiteStore(tmp_path / "opened" / "flakebot.db")
    try:
        versions = [r[0] for r in sqlite.db.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, LATEST + 1))
        assert set(sqlite.db.table_names()) - {"schema_migrations", "meta"} == set(TABLES)  # none left behind
        _reads_what_was_written_before_migrations(sqlite)
        assert sqlite.begin_rerun(REPO, 41, 1) is None  # a table of migration 2
    finally:
        sqlite.close()

    data = tmp_path / "copied"
    result = CliRunner().invoke(cli, ["store", "migrate", "--to", pg_url, "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(data / "flakebot.db") as source, psycopg.connect(pg_url) as target:
        for table in TABLES:
            cursor = source.execute(f"SELECT * FROM {table}")  # noqa: S608
            names = ", ".join(f'"{c[0]}"' for c in cursor.description)
            copied = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                      for row in target.execute(f"SELECT {names} FROM {table}")]  # noqa: S608  # fmt: skip
            assert sorted(copied, key=repr) == sorted(cursor.fetchall(), key=repr), table
    store = open_store("", pg_url)
    try:
        _reads_what_was_written_before_migrations(store)
    finally:
        store.close()


def test_nothing_secret_reaches_postgresql(pg_url, monkeypatch):
    secret = "webhook-secret-" + "q7" * 10
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", secret)
    store = open_store("", pg_url)
    test = f"tests/t.py::test_hook[{secret}-AKIAIOSFODNN7EXAMPLE]"
    store.record_runs(
        REPO, [HistoryRun(test=test, status="failed", run_id=1, job="j", message=f"token={secret}")]
    )
    store.record_failures(REPO, [Failure(test=test, log=f"token={secret}", run_id=1, attempt=1, job="j",
                                         revision="r", change_number=1)])  # fmt: skip
    store.save_change_state(REPO, 1, {"sections": {"CI": {"failures": [{"test": test}]}}})
    store.set_quarantine(REPO, test, number=1, url=None, state="open")
    store.save_model(REPO, "v1", {"why": secret}, b"model")
    assert store.tests_like(REPO, test) == [masked(test)]
    store.close()
    with psycopg.connect(pg_url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]  # fmt: skip
        dump = "\n".join(str(row) for t in tables for row in conn.execute(f"SELECT * FROM {t}"))  # noqa: S608
    assert test.split("[")[0] in dump  # the rows are there...
    assert secret not in dump and "AKIAIOSFODNN7EXAMPLE" not in dump  # ...without the secrets


def test_the_command_line_reads_the_database_of_flakebot_database_url(pg_url, tmp_path, model, monkeypatch):
    store = open_store("", pg_url)
    store.record_runs(REPO, [HistoryRun(test="t", status="failed", run_id=1, job="tests")])
    store.save_score(REPO, "t", "tests", {"score": 0.5, "recommendation": {"action": "watch"}})
    first = DatabaseModels(store, "").save(model, {"trained_on": {"failures": 120}})
    second = DatabaseModels(store, "").save(model, {"trained_on": {"failures": 150}})
    store.close()
    monkeypatch.setenv("FLAKEBOT_DATABASE_URL", pg_url)
    runner, empty = CliRunner(), str(tmp_path / "no-data-here")
    listed = runner.invoke(cli, ["models", "--data-dir", empty])
    assert listed.exit_code == 0 and f"* {second}" in listed.output and first in listed.output
    assert runner.invoke(cli, ["rollback", first, "--data-dir", empty]).exit_code == 0
    scores = runner.invoke(cli, ["scores", "--data-dir", empty, "--json"])
    assert scores.exit_code == 0 and '"t"' in scores.output
    store = open_store("", pg_url)
    assert DatabaseModels(store, "").active_version() == first
    store.close()


def test_answering_webhooks_only_needs_a_database_that_workers_share():
    from bot.config import ConfigError, Settings

    settings = Settings(github_webhook_secret="s" * 20, github_token="t" * 20, workers=0)
    with pytest.raises(ConfigError, match="FLAKEBOT_DATABASE_URL"):
        settings.check_for_serving()
    Settings(github_webhook_secret="s" * 20, github_token="t" * 20, workers=0,
             database_url="postgresql://x@h/db").check_for_serving()  # fmt: skip
