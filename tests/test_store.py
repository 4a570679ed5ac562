import asyncio
import json
import multiprocessing
import os
import signal
import socket

import pytest

from bot.queue import dead_local_owners, process_owner
from bot.store import Failure, HistoryRun, open_store
from bot.store.adapters import ThreadedStore
from bot.store.sqlite import SQLiteStore

REPO = "github:octo/demo"


def test_queue_claims_in_order_dedupes_redeliveries_and_retries(store):
    assert store.enqueue("github", "d1", "workflow_run", b'{"a": 1}')
    assert not store.enqueue("github", "d1", "workflow_run", b'{"a": 1}')  # redelivery
    assert store.enqueue("gitlab", "d1", "Pipeline Hook", b"{}")  # same id, other forge
    assert store.queue_depth() == 2
    first = store.claim(now=100.0, lease=1000)
    assert (first.forge, first.delivery_id, first.payload, first.attempts) == ("github", "d1", b'{"a": 1}', 1)
    second = store.claim(now=100.0, lease=1000)
    assert second.forge == "gitlab"
    assert store.claim(now=100.0, lease=60) is None
    store.fail(first.id, "GitHub answered 502", retry_at=200.0)
    assert store.claim(now=150.0, lease=60) is None  # not due yet
    again = store.claim(now=201.0, lease=60)
    assert again.id == first.id and again.attempts == 2
    store.finish(again.id)
    store.fail(second.id, "boom", retry_at=None)
    assert store.queue_depth() == 0
    assert {d["status"] for d in store.deliveries()} == {"done", "dead"}
    assert store.deliveries("dead")[0]["error"] == "boom"


def test_expired_leases_and_dead_owners_give_claimed_work_back(store):
    store.enqueue("github", "a", "e", b"")
    store.enqueue("github", "b", "e", b"")
    store.enqueue("github", "c", "e", b"")
    a = store.claim(now=0.0, lease=10, owner="host:1")
    b = store.claim(now=0.0, lease=1000, owner="host:2")
    store.claim(now=0.0, lease=1000, owner="host:3")
    store.renew(b.id, until=5000.0)
    assert sorted(store.working_owners()) == ["host:1", "host:2", "host:3"]
    assert store.recover(now=50.0) == 1  # a's lease ran out; b and c still hold theirs
    assert store.claim(now=50.0, lease=10, owner="host:1").id == a.id
    assert store.recover(now=50.0, owners=["host:3"]) == 1  # c's process is known to be dead
    assert store.recover(now=2000.0) == 1  # a again; b's lease was renewed


def _crash_while_working(path):
    s = SQLiteStore(path)
    s.enqueue("github", "x", "workflow_run", b"payload")
    s.claim(now=0.0, lease=3600, owner=process_owner())
    os.kill(os.getpid(), signal.SIGKILL)


def test_kill_9_while_working_loses_nothing(tmp_path):
    path = tmp_path / "flakebot.db"
    proc = multiprocessing.get_context("spawn").Process(target=_crash_while_working, args=(path,))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    s = SQLiteStore(path)
    dead = dead_local_owners(s.working_owners())
    assert len(dead) == 1 and dead[0].startswith(f"{socket.gethostname()}:{proc.pid}:")
    assert s.recover(now=1.0, owners=dead) == 1
    d = s.claim(now=1.0, lease=60)
    assert d.delivery_id == "x" and d.payload == b"payload" and d.attempts == 2


def _run(test, status, run_id, attempt=1, revision="sha1", branch="main", job="tests"):
    return HistoryRun(
        test=test, status=status, run_id=run_id, attempt=attempt, revision=revision, branch=branch, job=job
    )


def test_history_window_default_branch_and_rerun_revisions(store):
    runs = [
        _run("t", "passed", 1, revision="m1"),
        _run("t", "failed", 2, revision="m2"),
        _run("t", "failed", 3, revision="pr1", branch="fix"),  # one-off failure on a PR branch: not scored
        _run("t", "failed", 4, revision="pr2", branch="fix"),  # ... unless its revision was re-run:
        _run("t", "passed", 4, attempt=2, revision="pr2", branch="fix"),
    ]
    assert len(store.record_runs(REPO, runs)) == 5
    assert store.record_runs(REPO, runs[:2]) == []  # recording twice changes nothing
    window = store.window(REPO, "t", "tests", limit=50, branch="main")
    assert [(r.run_id, r.attempt) for r in window] == [(1, 1), (2, 1), (4, 1), (4, 2)]
    # the same test in another job of the matrix has a history of its own
    store.record_runs(REPO, [_run("t", "passed", 4, revision="pr1", branch="fix", job="tests-windows")])
    assert not store.summary(REPO, "t", "tests").passed_on("pr1")
    assert store.summary(REPO, "t", "tests-windows").runs == 1
    summary = store.summary(REPO, "t", "tests")
    assert summary.runs == 5 and summary.failures == 3 and summary.flips == 1
    assert summary.passed_on("pr2") and not summary.passed_on("pr1")
    assert store.tests_of_job(REPO, "tests") == ["t"]
    assert [r.run_id for r in store.recent_failures(REPO, "t", 2)] == [4, 3]


def test_scores_are_listed_most_flaky_first_with_recent_runs_and_quarantine(store):
    store.record_runs(REPO, [_run("a", "passed", 1), _run("b", "failed", 1), _run("b", "passed", 2)])
    store.save_score(REPO, "a", "tests", {"score": 0.1})
    store.save_score(REPO, "b", "tests", {"score": 0.7})
    store.set_quarantine(REPO, "b", number=12, url="https://x/12", state="open")
    rows = store.scores(REPO)
    assert [r["test"] for r in rows] == ["b", "a"]
    assert rows[0]["recent"] == ["failed", "passed"] and rows[0]["issue"] == 12
    assert [q["test"] for q in store.quarantined()] == ["b"]
    store.set_quarantine(REPO, "b", number=12, url="https://x/12", state="closed")
    assert store.quarantined() == []


def test_failures_become_training_records_with_their_labels(store):
    def failure(test, run_id, attempt=1, revision="h1", change=7):
        return Failure(test=test, log="E  boom", run_id=run_id, attempt=attempt, job="tests", revision=revision,
                       change_number=change, model={"verdict": "flake"}, verdict="flake")  # fmt: skip

    store.record_failures(REPO, [failure("a", 1), failure("b", 1), failure("c", 2, revision="h2", change=8)])
    store.record_failures(REPO, [failure("a", 1)])  # again: ignored
    assert store.label_passed_on_retry(REPO, run_id=1, before_attempt=2, tests=["a"]) == 1
    assert store.label_merged(REPO, "h1") == 2
    assert store.label_by_human(REPO, 8, "c", "real", "octocat") == 1
    with pytest.raises(ValueError):
        store.label_by_human(REPO, 8, "c", "maybe", "octocat")
    records = {r["test"]: r for r in store.training_records(REPO)}
    assert records["a"]["label"] == "flake" and records["a"]["merged"] is True
    assert records["b"]["label"] is None and records["b"]["merged"] is True
    assert records["c"]["label"] == "real" and records["c"]["pull"] == 8
    assert all(r["status"] == "failure" and r["log"] == "E  boom" for r in records.values())
    assert [f["test"] for f in store.failures_of_change(REPO, 7)] == ["a", "b"]


def test_locks_and_change_state(store):
    assert store.try_lock("retrain:x", "w1", now=0, ttl=60)
    assert not store.try_lock("retrain:x", "w2", now=10, ttl=60)
    assert store.try_lock("retrain:x", "w1", now=10, ttl=60)  # the owner renews
    assert store.try_lock("retrain:x", "w2", now=100, ttl=60)  # expired: taken over
    store.unlock("retrain:x", "w2")
    assert store.try_lock("retrain:x", "w3", now=101, ttl=60)
    store.save_change_state(REPO, 5, {"sections": {"ci": {"sha": "abc"}}})
    assert store.change_state(REPO, 5) == {"sections": {"ci": {"sha": "abc"}}}
    assert store.change_state(REPO, 6) == {}


async def test_async_store_runs_calls_off_the_event_loop(tmp_path):
    store = ThreadedStore(open_store(tmp_path))
    assert await store.enqueue("github", "z", "ping", json.dumps({}).encode())
    assert await store.queue_depth() == 1
    await store.aclose()


def test_a_delivery_whose_lease_ran_out_is_taken_over_by_any_live_worker(store):
    store.enqueue("github", "a", "e", b"payload")
    first = store.claim(now=0.0, lease=60, owner="host-a:1:aaaa")
    assert store.claim(now=30.0, lease=60, owner="host-b:7:bbbb") is None  # still leased
    again = store.claim(now=61.0, lease=60, owner="host-b:7:bbbb")  # host-a died: no restart needed
    assert again.id == first.id and again.attempts == 2 and again.payload == b"payload"
    assert store.working_owners() == ["host-b:7:bbbb"]


def test_a_restarted_process_with_the_same_pid_knows_its_predecessor_is_dead(store):
    """PID 1 in a container: same host, same pid, another start."""
    me = process_owner()
    host, pid, _ = me.split(":")
    before = f"{host}:{pid}:0ldst4rt"
    store.enqueue("github", "a", "e", b"")
    store.claim(now=0.0, lease=3600, owner=before)
    assert dead_local_owners(store.working_owners()) == [before]
    assert dead_local_owners([me]) == []
    assert store.recover(now=1.0, owners=[before]) == 1


def test_a_rerun_intent_is_recorded_once_per_attempt(store):
    assert store.begin_rerun(REPO, 7, 1) is None
    assert store.begin_rerun(REPO, 7, 1) == "asked"  # an earlier processing asked (and maybe crashed)
    store.end_rerun(REPO, 7, 1, "made")
    assert store.begin_rerun(REPO, 7, 1) == "made"
    assert store.begin_rerun(REPO, 7, 2) is None  # the next attempt is another re-run
    assert store.begin_rerun("gitlab:g/p", 7, 1) is None


async def test_a_held_lock_keeps_others_out_and_is_released_after(store, tmp_path):
    """``AsyncStore.hold`` on each backend (SQLite: a renewed row; PostgreSQL: an advisory lock)."""
    astore = store.store if hasattr(store, "loop") else ThreadedStore(store)
    run = (lambda c: asyncio.wrap_future(asyncio.run_coroutine_threadsafe(c, store.loop))) if hasattr(
        store, "loop") else (lambda c: c)  # fmt: skip
    order = []

    async def holder(name, wait):
        async with astore.hold("change:x", f"{process_owner()}/{name}", wait):
            order.append(name)
            await asyncio.sleep(0.3)

    first = asyncio.ensure_future(run(holder("first", 5)))
    await asyncio.sleep(0.1)
    with pytest.raises(TimeoutError):
        await run(holder("impatient", 0.05))
    await run(holder("second", 5))
    await first
    assert order == ["first", "second"]


# --- issue 13: re-runs within a job, quarantine scope and expiry, incidents --------------------------


def test_a_runners_rerun_within_a_job_is_a_row_of_its_own_and_flips(store):
    failed = HistoryRun(test="t", status="failed", run_id=7, revision="r1", retry=0, message="boom")
    passed = HistoryRun(test="t", status="passed", run_id=7, revision="r1", retry=1)
    assert len(store.record_runs(REPO, [failed, passed])) == 2 and store.record_runs(REPO, [passed]) == []
    summary = store.summary(REPO, "t", "")
    assert (summary.runs, summary.flips) == (2, 1)
    window = store.window(REPO, "t", "", limit=10, branch="main")
    assert [(r.retry, r.as_scoring_run().attempt) for r in window] == [(0, 1), (1, 2)]  # the pass is a re-run


def test_quarantine_keeps_its_jobs_and_expiry(store):
    store.set_quarantine(REPO, "t", number=3, url="https://x/3", state="open", jobs=["tests (windows)"],
                         expires_at="2030-01-01T00:00:00Z")  # fmt: skip
    store.set_quarantine(REPO, "u", number=4, url="https://x/4", state="open")  # as callers before scopes did
    rows = {r["test"]: r for r in store.quarantined(REPO)}
    assert (rows["t"]["jobs"], rows["t"]["expires_at"]) == (["tests (windows)"], "2030-01-01T00:00:00Z")
    assert (rows["u"]["jobs"], rows["u"]["expires_at"]) == (None, None)  # every job, never expires


def test_incident_occurrences_incidents_and_failures_set_aside(store):
    from datetime import UTC, datetime, timedelta

    from bot.incidents import Incident, Occurrence

    now = datetime.now(UTC).replace(microsecond=0)

    def occurrence(sig, change, run, days=0.0):
        return Occurrence(sig, change, run, 1, "tests", "t", now - timedelta(days=days))

    assert store.record_occurrences(REPO, [occurrence("a" * 16, "#1", 1), occurrence("a" * 16, "#2", 2)]) == 2
    assert store.record_occurrences(REPO, [occurrence("a" * 16, "#1", 1)]) == 0  # recorded once
    store.record_occurrences(REPO, [occurrence("b" * 16, "#3", 3, days=0.5)])
    since = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [o.change for o in store.occurrences(REPO, ["a" * 16, "b" * 16], since)] == ["#2", "#1"]
    # older than a week: forgotten, unless its incident is open
    store.save_incident(
        REPO, Incident("c" * 16, "open", ("cause",), None, 5, "https://x/5", now, now, changes=5)
    )
    store.record_occurrences(
        REPO, [occurrence("c" * 16, "#4", 4, days=9), occurrence("d" * 16, "#5", 5, days=9)]
    )
    old = (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [o.signature for o in store.occurrences(REPO, ["c" * 16, "d" * 16], old)] == ["c" * 16]
    store.save_incident(
        REPO, Incident("e" * 16, "closed", ("x",), "t", 6, None, now - timedelta(days=2), closed_at=now)
    )
    assert [(i.signature[0], i.state, i.repo) for i in store.incidents(REPO)] == [
        ("c", "open", REPO),
        ("e", "closed", REPO),
    ]
    assert [i.signature[0] for i in store.incidents(state="closed")] == ["e"] and store.incidents(
        "gitlab:x/y"
    ) == []
    # failures set aside leave the score: the summary is made again from the history as it is now
    store.record_runs(REPO, [_run("t", "failed", 10, revision="r1"), _run("t", "passed", 11, revision="r1"),
                             _run("t", "failed", 12, revision="r2")])  # fmt: skip
    assert store.summary(REPO, "t", "tests").flips == 1
    assert store.set_aside_runs(
        REPO, [(10, 1, "tests", "t"), (12, 1, "tests", "t")], "infrastructure incident"
    ) == [("t", "tests")]
    summary = store.summary(REPO, "t", "tests")
    assert (summary.runs, summary.failures, summary.flips, summary.skipped) == (1, 0, 0, 2)
    assert [r.status for r in store.window(REPO, "t", "tests", 10, branch="main")] == [
        "skipped",
        "passed",
        "skipped",
    ]
    assert store.set_aside_runs(REPO, [(10, 1, "tests", "t")], "again") == []  # only failures are set aside


def test_a_database_from_before_issue_13_gains_the_new_columns_and_keeps_working(tmp_path):
    import sqlite3

    path = tmp_path / "flakebot.db"
    with sqlite3.connect(path) as old:  # the runs and quarantine tables as flakebot made them before
        old.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, repo TEXT NOT NULL, test TEXT NOT NULL, status TEXT "
                    "NOT NULL, run_id INTEGER NOT NULL, attempt INTEGER NOT NULL, job TEXT NOT NULL, revision TEXT, "
                    "branch TEXT, duration FLOAT, message TEXT, verdict TEXT, url TEXT, created_at TEXT)")  # fmt: skip
        old.execute(
            "CREATE UNIQUE INDEX idx_runs_repo_run_id_attempt_job_test ON runs (repo, run_id, attempt, job, test)"
        )
        old.execute(
            "INSERT INTO runs (repo, test, status, run_id, attempt, job) VALUES (?, 't', 'failed', 1, 1, 'j')",
            [REPO],
        )
        old.execute("CREATE TABLE quarantine (repo TEXT, test TEXT, number INTEGER, url TEXT, state TEXT, since TEXT, "
                    "updated_at TEXT, override TEXT, override_by TEXT, override_at TEXT, PRIMARY KEY (repo, test))")  # fmt: skip
        old.execute(
            "INSERT INTO quarantine (repo, test, number, state, since) VALUES (?, 't', 2, 'open', 'x')",
            [REPO],
        )
    store = SQLiteStore(path)
    try:
        assert store.record_runs(
            REPO, [HistoryRun("t", "passed", 1, job="j", retry=1)]
        )  # a second row of run 1
        assert [r["jobs"] for r in store.quarantined(REPO)] == [None]  # its old quarantine: every job
        assert store.incidents(REPO) == []
    finally:
        store.close()


def test_a_backfill_is_kept_with_its_runs_failures_and_the_forges_answers(store):
    """The backfill's concern (docs/backfill.md) on each backend."""
    assert not store.has_history(REPO) and store.backfill_state(REPO) is None
    assert store.save_backfill(REPO, {"status": "queued", "days": 30, "requested_by": "alice"}, only_new=True)
    assert not store.save_backfill(REPO, {"status": "queued", "days": 7}, only_new=True)  # one already
    store.save_backfill(REPO, {"status": "done", "since": "2024-06-01T00:00:00Z", "result": {"runs": 2}})
    state = store.backfill_state(REPO)
    assert (state["status"], state["days"], state["requested_by"], state["result"]) == ("done", 30, "alice",
                                                                                          {"runs": 2})  # fmt: skip
    with pytest.raises(ValueError, match="not a field"):
        store.save_backfill(REPO, {"status": "done", "repo; DROP TABLE runs": 1})

    window = ("2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z")
    listed = [
        {"run_id": n, "created_at": f"2024-06-01T1{n}:00:00Z", "attempt": 1, "run": {"id": n}} for n in (2, 1)
    ]
    assert store.add_backfill_runs(REPO, listed) == 2 and store.add_backfill_runs(REPO, []) == 0
    assert [r["run_id"] for r in store.pending_backfill_runs(REPO, *window)] == [1, 2]  # oldest first
    start = "2000-01-01T00:00:00Z"
    store.record_runs(REPO, [_run("t", "failed", 1, revision="r1"), _run("t", "passed", 1, attempt=2, revision="r1"),
                             _run("u", "error", 2, revision="r2", job="lint"), _run("t", "failed", 2, revision="r2"),
                             _run("t", "failed", 3, revision="r3")])  # fmt: skip
    assert store.has_history(REPO) and not store.has_history("gitlab:g/p")
    assert store.tests_recorded_since(REPO, start) == [("t", "tests"), ("u", "lint")]
    assert store.tests_recorded_since(REPO, "2999-01-01T00:00:00Z") == []
    for run_id in (1, 2):
        store.finish_backfill_run(REPO, run_id, jobs=2)
    assert store.backfill_counts(REPO, *window) == {"runs": 2, "jobs": 4, "failures": 3, "pending": 0}
    failed = store.backfill_failures(REPO, *window)  # run 3 was not read by the backfill
    assert [(f.test, f.job, f.run_id) for f in failed] == [
        ("t", "tests", 1),
        ("t", "tests", 2),
        ("u", "lint", 2),
    ]
    assert [(r.run_id, r.attempt, r.status) for r in store.test_runs(REPO, "t", "tests")] == [
        (1, 1, "failed"), (1, 2, "passed"), (2, 1, "failed"), (3, 1, "failed")]  # fmt: skip

    api = "https://api.github.com/repos/octo/demo/"
    assert store.cache_get(api + "actions/runs") is None
    store.cache_put(api + "actions/runs", '["etag-1", null, [], null]')
    store.cache_put(api + "actions/runs", '["etag-2", null, [], null]')
    store.cache_put(api + "actions/runs/1/jobs", "[]")
    store.cache_put("https://api.github.com/repos/octo/demo_other/actions/runs", "[]")  # _ is no wildcard
    assert store.cache_get(api + "actions/runs") == '["etag-2", null, [], null]'
    assert store.cache_drop(api) == 2 and store.cache_get(api + "actions/runs/1/jobs") is None
    assert store.cache_get("https://api.github.com/repos/octo/demo_other/actions/runs") == "[]"


def test_scores_carry_the_quarantines_jobs_and_expiry(store):
    store.record_runs(REPO, [_run("t", "failed", 1), _run("u", "failed", 1)])
    store.save_score(REPO, "t", "tests", {"score": 0.5})
    store.save_score(REPO, "u", "tests", {"score": 0.4})
    store.set_quarantine(REPO, "t", number=3, url="https://x/3", state="open", jobs=["tests"],
                         expires_at="2030-01-01T00:00:00Z")  # fmt: skip
    rows = {r["test"]: r for r in store.scores(REPO)}
    assert (rows["t"]["quarantine_jobs"], rows["t"]["quarantine_expires_at"]) == (
        ["tests"],
        "2030-01-01T00:00:00Z",
    )
    assert (rows["u"]["quarantine"], rows["u"]["quarantine_jobs"], rows["u"]["quarantine_expires_at"]) == (
        None, None, None)  # fmt: skip
