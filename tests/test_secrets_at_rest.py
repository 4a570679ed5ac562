"""Secrets are masked before anything is stored, not only before it is written out (hardening 11).

The store is read back as bytes on disk (the database and its write-ahead log), so a secret kept in
any table or column, however it got there, fails the test.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.comment import render_comment, run_section
from bot.config import RepoConfig
from bot.decide import decide
from bot.forge.base import Repo, Run
from bot.redact import mask_secrets
from bot.run.results import Judgement
from bot.store import Failure, HistoryRun, masked, open_store
from bot.verdict import Verdict

WEBHOOK_SECRET = "webhook-secret-" + "q7" * 10
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = (WEBHOOK_SECRET, AWS_KEY_ID, AWS_SECRET)
REPO = "github:octo/demo"


@pytest.mark.parametrize(
    "line",
    [
        f"aws secret {AWS_SECRET}",
        f"AWS_SECRET_ACCESS_KEY {AWS_SECRET} exported",
        f"the secret key is '{AWS_SECRET}'",
    ],
)
def test_a_bare_aws_secret_key_after_the_word_secret_is_masked(line):
    out = mask_secrets(line)
    assert AWS_SECRET not in out and "***" in out


def test_a_commit_sha_near_the_word_secret_is_left_alone():
    line = "test_secret_rotation failed at 3484a3fb816e0859fd6e1cea078d76385ff50625"
    assert mask_secrets(line) == line


def test_the_pr_comment_never_shows_a_bare_aws_secret():
    run = Run(repo=Repo("github", "octo/demo"), id=7, sha="abc1234", branch="b", attempt=1,
              conclusion="failure", html_url="https://github.com/octo/demo/actions/runs/7", name="CI")  # fmt: skip
    failure = Judgement(test="tests/t.py::test_s3", job="tests", job_url="",
                        verdict=Verdict("real", "the log matches nothing known", "new", "model"),
                        excerpt=f"E   botocore: aws secret {AWS_SECRET} was rejected")  # fmt: skip
    body = render_comment({"CI": run_section(run, [failure], decide([failure], RepoConfig(), 1), [])})
    assert AWS_SECRET not in body and "botocore: aws secret ***" in body


def on_disk(path) -> bytes:
    """Every byte the store keeps: the database file and its write-ahead log."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def test_nothing_secret_reaches_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    store = open_store(tmp_path)
    test = f"tests/t.py::test_hook[{WEBHOOK_SECRET}-{AWS_KEY_ID}]"
    job = f"deploy ({AWS_KEY_ID})"
    message = f"AssertionError: secret {AWS_SECRET} rejected"
    store.record_runs(REPO, [HistoryRun(test=test, status="failed", run_id=1, job=job, revision="r1",
                                        message=message, url="https://ci/1")])  # fmt: skip
    store.save_score(REPO, test, job, {"score": 0.5, "reason": message})
    store.record_failures(REPO, [Failure(test=test, log=f"E  {message}\ntoken={WEBHOOK_SECRET}", run_id=1,
                                         attempt=1, job=job, revision="r1", change_number=3,
                                         model={"nearest": [{"test": test}], "why": message})])  # fmt: skip
    store.save_change_state(REPO, 3, {"sections": {"CI": {"failures": [{"test": test, "job": job, "excerpt": message}],
                                                          "actions": [f"Opened an issue for `{test}`"]}}})  # fmt: skip
    store.set_quarantine(REPO, test, number=4, url="https://x/4", state="open")
    store.set_override(REPO, test, "quarantine", "octocat")
    store.enqueue("github", "d-1", "workflow_run", b"{}")
    delivery = store.claim(0.0, 60.0)
    store.fail(delivery.id, f"ForgeError: {message} with {WEBHOOK_SECRET}", None)
    path = tmp_path / "flakebot.db"
    store.db.conn.execute("PRAGMA wal_checkpoint(FULL)")

    kept = on_disk(path)
    for secret in SECRETS:
        assert secret.encode() not in kept, secret
    dump = "\n".join(sqlite3.connect(path).iterdump())
    assert all(secret not in dump for secret in SECRETS)

    # what was stored is found again by the names the run path knows (masked the same way)
    assert store.summary(REPO, test, job).runs == 1
    assert store.tests_like(REPO, test) == [masked(test)]
    assert [f.message for f in store.recent_failures(REPO, test, 5)] == [masked(message)]
    assert store.label_by_human(REPO, 3, test, "flake", "octocat") == 1
    assert store.overrides(REPO)[masked(test)]["override"] == "quarantine"
    assert masked(test) == "tests/t.py::test_hook[***-***]"
    store.close()


def test_masking_copies_structures_and_leaves_bytes_and_numbers(monkeypatch):
    monkeypatch.setenv("GITLAB_TOKEN", "glt-" + "z" * 20)
    value = {"a": ["x", ("glt-" + "z" * 20, 3)], "b": b"glt-zzzz", "c": 1.5}
    assert masked(value) == {"a": ["x", ("***", 3)], "b": b"glt-zzzz", "c": 1.5}
    assert value["a"][1][0].startswith("glt-")  # the caller's value is untouched


def test_nothing_secret_reaches_the_backfill_or_incident_tables(store, monkeypatch):
    """The concerns added with the backfill and the incidents mask their arguments too, on both
    backends: names, causes, samples, messages, kept forge answers and a backfill's result."""
    from datetime import UTC, datetime

    from bot.incidents import Incident, Occurrence
    from bot.store import WeakLabel

    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", WEBHOOK_SECRET)
    test = f"tests/t.py::test_hook[{WEBHOOK_SECRET}]"
    job = f"deploy ({AWS_KEY_ID})"
    now = datetime.now(UTC)
    store.record_runs(REPO, [HistoryRun(test=test, status="failed", run_id=1, job=job, revision="r1")])
    store.record_failures(
        REPO, [Failure(test=test, log="E boom", run_id=1, attempt=1, job=job, revision="r1")]
    )
    assert store.label_weak(REPO, [WeakLabel(1, 1, job, test, "real", f"rule {WEBHOOK_SECRET}")]) == 1
    store.set_quarantine(REPO, test, number=1, url=None, state="open", jobs=[job], expires_at=None)
    store.record_occurrences(REPO, [Occurrence("a" * 16, "#1", 1, 1, job, test, now)])
    store.save_incident(REPO, Incident("a" * 16, "open", (f"aws secret {AWS_SECRET} rejected",), test,
                                       sample=f"token={WEBHOOK_SECRET}", opened_at=now))  # fmt: skip
    assert store.set_aside_runs(REPO, [(1, 1, job, test)], f"incident: {WEBHOOK_SECRET}") == [
        (masked(test), masked(job))
    ]
    store.save_backfill(REPO, {"status": "done", "result": {"notes": [f"log of {job} unreadable"]}})
    store.cache_put(
        f"https://api/repos/x?t={WEBHOOK_SECRET}", f'["etag", null, {{"k": "aws secret {AWS_SECRET}"}}, null]'
    )

    # found again by the names the run path knows
    assert store.cache_get(f"https://api/repos/x?t={WEBHOOK_SECRET}") is not None
    assert [o.test for o in store.occurrences(REPO, ["a" * 16], "2000-01-01T00:00:00Z")] == [masked(test)]
    assert [q["jobs"] for q in store.quarantined(REPO)] == [[masked(job)]]
    if hasattr(store, "db"):  # SQLite: every byte on disk
        store.db.conn.execute("PRAGMA wal_checkpoint(FULL)")
        kept = on_disk(Path(store.path)).decode("utf-8", "replace")
    else:
        import psycopg

        with psycopg.connect(store.store.url) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]  # fmt: skip
            kept = "\n".join(str(row) for t in tables for row in conn.execute(f"SELECT * FROM {t}"))  # noqa: S608
    assert "tests/t.py::test_hook" in kept and "incident: ***" in kept
    for secret in SECRETS:
        assert secret not in kept, secret
