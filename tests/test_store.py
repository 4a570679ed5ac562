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
