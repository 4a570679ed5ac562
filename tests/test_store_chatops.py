"""The store's parts that chat-ops and retraining use: queue lanes, overrides, labels' times, replies."""

import sqlite3

import pytest

from bot.store import Failure, HistoryRun
from bot.store.sqlite import SQLiteStore

REPO = "github:octo/demo"


def failure(test, run_id, attempt=1, revision="h1", change=7, job="tests"):
    return Failure(test=test, log="E  boom", run_id=run_id, attempt=attempt, job=job, revision=revision,
                   change_number=change, model={"verdict": "flake"}, verdict="flake")  # fmt: skip


def test_each_queue_claims_only_its_own_deliveries(store):
    store.enqueue("internal", "retrain:1", "retrain", b"{}")
    store.enqueue("github", "d1", "workflow_run", b"{}")
    webhook = store.claim(now=1.0, lease=60, forges=("github", "gitlab"))
    assert webhook.delivery_id == "d1"
    assert store.claim(now=1.0, lease=60, forges=("github", "gitlab")) is None
    job = store.claim(now=1.0, lease=60, forges=("internal",))
    assert (job.forge, job.event) == ("internal", "retrain")
    assert store.claim(now=1.0, lease=60, forges=()) is None


def test_training_records_carry_increasing_failure_ids_and_labels_have_times(store):
    store.record_failures(REPO, [failure("a", 1), failure("b", 1), failure("c", 2, revision="h2")])
    ids = [r["failure_id"] for r in store.training_records(REPO)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert store.last_labelled() == {}
    store.label_merged(REPO, "h2")
    first = store.last_labelled()[REPO]
    store.label_by_human(REPO, 7, "a", "real", "octocat")
    assert store.last_labelled()[REPO] >= first
    assert store.failures_of_change(REPO, 7)[0]["labelled_by"] == "octocat"


def test_overrides_are_kept_apart_from_the_issue_state(store):
    store.set_quarantine(REPO, "t1", number=3, url="https://x/3", state="open")
    store.set_override(REPO, "t1", "quarantine", "alice")
    store.set_override(REPO, "t2", "unquarantine", "bob")  # a test without an issue row yet
    # the automatic lifecycle writes the issue state; the override stays
    store.set_quarantine(REPO, "t1", number=3, url="https://x/3", state="open")
    overrides = store.overrides(REPO)
    assert {t: (o["override"], o["by"]) for t, o in overrides.items()} == {
        "t1": ("quarantine", "alice"),
        "t2": ("unquarantine", "bob"),
    }
    assert [q["test"] for q in store.quarantined(REPO)] == ["t1"]  # t2 has no open issue
    store.set_override(REPO, "t1", None, None)
    assert list(store.overrides(REPO)) == ["t2"]
    with pytest.raises(ValueError, match="override must be"):
        store.set_override(REPO, "t1", "maybe", "x")


def test_a_reply_is_remembered_once_per_user_and_change(store):
    assert store.remember_reply(REPO, 5, "mallory", "denied")
    assert not store.remember_reply(REPO, 5, "mallory", "denied")
    assert store.remember_reply(REPO, 6, "mallory", "denied")  # another change
    assert store.remember_reply("gitlab:g/p", 5, "mallory", "denied")  # another repository
    store.forget_reply(REPO, 5, "mallory", "denied")
    assert store.remember_reply(REPO, 5, "mallory", "denied")


def test_tests_are_found_by_name_or_suffix_with_like_wildcards_taken_literally(store):
    runs = [
        HistoryRun(test=name, status="failed", run_id=1, job="tests")
        for name in ("tests/test_a.py::test_x", "tests/test_b.py::test_x", "tests/test_c.py::test_%y")
    ]
    store.record_runs(REPO, runs)
    assert store.tests_like(REPO, "tests/test_a.py::test_x") == ["tests/test_a.py::test_x"]
    assert store.tests_like(REPO, "::test_x") == ["tests/test_a.py::test_x", "tests/test_b.py::test_x"]
    assert store.tests_like(REPO, "test_%y") == ["tests/test_c.py::test_%y"]
    assert store.tests_like(REPO, "%") == []
    store.save_score(REPO, "tests/test_a.py::test_x", "tests", {"score": 0.5})
    (row,) = store.test_scores(REPO, "tests/test_a.py::test_x")
    assert row["job"] == "tests" and row["score"] == {"score": 0.5}


def test_a_database_made_before_the_new_columns_gains_them(tmp_path):
    path = tmp_path / "flakebot.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE failures (id INTEGER PRIMARY KEY, repo TEXT NOT NULL, test TEXT NOT NULL, log TEXT, "
        "run_id INTEGER NOT NULL, attempt INTEGER NOT NULL, job TEXT NOT NULL, revision TEXT, "
        "change_number INTEGER, model TEXT, verdict TEXT, url TEXT, created_at TEXT, merged INTEGER, "
        "passed_on_retry INTEGER, label TEXT, labelled_by TEXT)"
    )
    conn.execute(
        "CREATE TABLE quarantine (repo TEXT, test TEXT, number INTEGER, url TEXT, state TEXT, since TEXT, "
        "updated_at TEXT, PRIMARY KEY (repo, test))"
    )
    conn.execute(
        "INSERT INTO failures (repo, test, log, run_id, attempt, job, revision) "
        "VALUES ('github:octo/demo', 'old', 'E x', 1, 1, 'tests', 'h0')"
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    assert store.label_merged(REPO, "h0") == 1
    assert REPO in store.last_labelled()
    store.set_override(REPO, "old", "quarantine", "alice")
    assert store.overrides(REPO)["old"]["by"] == "alice"
    store.close()


def test_who_holds_a_lock(store):
    assert store.lock_holder("retrain:x", now=0) is None
    store.try_lock("retrain:x", "job-1", now=0, ttl=60)
    assert store.lock_holder("retrain:x", now=30) == "job-1"
    assert store.lock_holder("retrain:x", now=61) is None  # expired
    store.unlock("retrain:x", "job-1")
    assert store.lock_holder("retrain:x", now=1) is None
