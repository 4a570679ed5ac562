"""``bot.run.history.score_tests``: every test a run touched is scored from its stored history and saved,
however many there are (they are scored in batches, a trip to the store each), on both backends."""

from __future__ import annotations

import threading

import pytest

from bot.config import RepoConfig
from bot.run.history import score_tests
from bot.scoring import score_runs
from bot.store import HistoryRun, open_store
from bot.store.adapters import ThreadedStore

REPO = "github:octo/shop"
BATCH = 20


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request, tmp_path):
    """(the store, the same store awaited as the service uses it) of each backend."""
    if request.param == "sqlite":
        store = open_store(tmp_path)
        awaited = ThreadedStore(store)
        yield store, awaited
        await awaited.aclose()
        return
    from bot.store.postgres import PostgresStore

    url = request.getfixturevalue("pg_url")
    store, awaited = open_store("", url), await PostgresStore.open(url)
    yield store, awaited
    await awaited.aclose()
    store.close()


async def test_more_tests_than_one_batch_are_all_scored_and_saved(stores):
    store, awaited = stores
    awaited.score_batch = BATCH
    tests = [f"tests/test_{i}.py::test_it" for i in range(BATCH * 2 + 17)]
    for run_id in range(1, 7):  # test i fails in run i % 6 + 1 when i is odd: some flaky, some stable
        store.record_runs(REPO, [HistoryRun(test=t, status="failed" if i % 2 and run_id == i % 6 + 1 else "passed",
                                            run_id=run_id, job="tests", revision=f"r{run_id}", branch="main",
                                            created_at=f"2026-11-0{run_id}T00:00:00Z")
                                 for i, t in enumerate(tests)])  # fmt: skip
    keys = {(t, "tests") for t in tests}

    scored = await score_tests(awaited, REPO, keys, RepoConfig(), branch="main")
    scores = {key: tested.score for key, tested in scored.items()}

    assert set(scores) == keys
    for test, job in keys:  # the same as scoring each test alone from the store
        window = store.window(REPO, test, job, RepoConfig().scoring.window, branch="main")
        alone = score_runs(
            [r.as_scoring_run() for r in window], RepoConfig().scoring, store.summary(REPO, test, job)
        )
        assert scores[(test, job)].to_dict() == alone.to_dict()
    saved = {(row["test"], row["job"]): row["score"] for row in store.scores(REPO)}
    assert saved.keys() == keys
    assert saved[(tests[1], "tests")]["score"] > saved[(tests[0], "tests")]["score"] == 0


async def test_a_batch_runs_on_the_store_thread(ctx):
    names = await ctx.store.batch(lambda store: (threading.current_thread().name, store.queue_depth()))
    assert names[0].startswith("flakebot-store") and names[1] == 0
