"""``bot.run.history.score_tests``: every test a run touched is scored from its stored history and saved,
however many there are (they are scored in batches on the store's thread)."""

from __future__ import annotations

import threading

from bot.config import RepoConfig
from bot.run.history import SCORE_BATCH, score_tests
from bot.scoring import score_runs
from bot.store import HistoryRun

REPO = "github:octo/shop"


async def test_more_tests_than_one_batch_are_all_scored_and_saved(ctx):
    store = ctx.store.store
    tests = [f"tests/test_{i}.py::test_it" for i in range(SCORE_BATCH * 2 + 17)]
    for run_id in range(1, 7):  # test i fails in run i % 6 + 1 when i is odd: some flaky, some stable
        store.record_runs(REPO, [HistoryRun(test=t, status="failed" if i % 2 and run_id == i % 6 + 1 else "passed",
                                            run_id=run_id, job="tests", revision=f"r{run_id}", branch="main",
                                            created_at=f"2026-11-0{run_id}T00:00:00Z")
                                 for i, t in enumerate(tests)])  # fmt: skip
    keys = {(t, "tests") for t in tests}

    scored = await score_tests(ctx.store, REPO, keys, RepoConfig(), branch="main")
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
