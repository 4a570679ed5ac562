"""Test histories in a real store, recorded and scored the way the run path does it."""

from __future__ import annotations

import random

from bot.scoring import FlakeScore, Run, score_runs
from bot.store import HistoryRun, Store
from tests.patterns import PATTERNS


def record(
    store: Store, repo: str, test: str, job: str, runs: list[Run], *, branch: str = "main", first_id: int = 1
) -> FlakeScore:
    """Record ``runs`` (oldest first) of ``test`` in ``job`` on ``branch``, then score the test as
    ``bot.run.history.score_tests`` does (the store's window and summary) and save the score."""
    name = repo.split(":", 1)[1]
    rows = [
        HistoryRun(
            test=test,
            status=run.status,
            run_id=first_id + i,
            attempt=run.attempt,
            job=job,
            revision=run.revision,
            branch=branch,
            duration=run.time,
            message=run.message,
            url=f"https://github.com/{name}/actions/runs/{first_id + i}",
            created_at=run.created_at.isoformat() if run.created_at else None,
        )
        for i, run in enumerate(runs)
    ]
    store.record_runs(repo, rows)
    window = store.window(repo, test, job, 50, branch=branch)
    score = score_runs([r.as_scoring_run() for r in window], summary=store.summary(repo, test, job))
    store.save_score(repo, test, job, score.to_dict())
    return score


def pattern(name: str, seed: int = 0) -> list[Run]:
    """One of the scoring document's patterns (tests/patterns.py): 50 runs, one every 8 hours."""
    return PATTERNS[name](random.Random(seed))
