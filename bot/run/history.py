"""Stage 2, history: record a run's results in each test's history and score every test it touched.

A test's history is kept per job (``bot/store``): one row per run, passes too, and a small summary
beside it. A job that passed means all its tests passed, so the tests the history knows of a green job
are recorded as passes even when its log lists none. Each touched test is then scored
(``bot.scoring.score_runs``: its window of runs and its summary) and the score saved for ``flakebot
scores`` and the dashboard. Chat-ops scores a test with the same function (:func:`score_test`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.config import RepoConfig
from bot.context import Context
from bot.forge.base import Repo
from bot.normalize import is_error_line
from bot.run.results import TestResult
from bot.run.scope import RunScope
from bot.scoring import FlakeScore, score_runs
from bot.status import FAILED_HISTORY_STATUSES, SUCCESS_CONCLUSION, history_status
from bot.store import AsyncStore, HistoryRun, Store
from bot.verdict import DefaultBranchFailing

MESSAGE_CHARS = 500


@dataclass(frozen=True)
class TestHistory:
    """What a test's history says, with this run in it."""

    __test__ = False  # not a pytest test class

    score: FlakeScore
    passed_on_revision: bool = False  # it passed on the run's revision before (HistorySummary.passed_on)
    # its newest runs on the default branch, of other revisions, failed: since when, how many in a row
    default_branch_failing: DefaultBranchFailing | None = None


@dataclass
class Recorded:
    passes: list[TestResult]  # the run's passes, the known tests of each green job included
    tests: dict[tuple[str, str], TestHistory]  # by (test, job): every test the run touched

    @property
    def scores(self) -> dict[tuple[str, str], FlakeScore]:
        return {key: history.score for key, history in self.tests.items()}


async def record(scope: RunScope, results: list[TestResult], *, score: bool = True) -> Recorded:
    """Store the run's results in the tests' histories and score every test it touched (a backfill,
    ``score=False``, scores each test once at its end: ``Recorded.tests`` is then empty)."""
    store, repo = scope.ctx.store, scope.repo
    passes = [r for r in results if not r.failed]  # the failed runs a re-run within the job passed stay in
    for job in scope.jobs:
        if job.conclusion == SUCCESS_CONCLUSION:
            passes += [TestResult(test=t, status="success", log="", job=job.name, job_url=job.html_url)
                       for t in await store.tests_of_job(repo, job.name)]  # fmt: skip
    rows = history_rows(scope, [r for r in results if r.failed] + passes)
    await store.record_runs(repo, rows)
    if not score:
        return Recorded(passes, {})
    keys = {(r.test, r.job) for r in rows if r.status != "skipped"}
    run = scope.run
    tests = await score_tests(
        store, repo, keys, scope.config, branch=run.repo.default_branch, revision=run.sha
    )
    return Recorded(passes, tests)


def history_rows(scope: RunScope, results: Iterable[TestResult]) -> list[HistoryRun]:
    """One history row per test, job and re-run within the job (parametrised duplicates, a report and a
    log, count once)."""
    run = scope.run
    created = run.created_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows, seen = [], set()
    for r in results:
        if (*r.key, r.retry) in seen:
            continue
        seen.add((*r.key, r.retry))
        job = scope.job(r.job)
        rows.append(HistoryRun(test=r.test, status=history_status(r.status), run_id=run.id,
                               attempt=job.attempt if job else run.attempt, job=r.job, revision=run.sha,
                               branch=run.branch, duration=job.duration if job else None,
                               message=message_of(r.log) if r.failed else None, url=r.job_url or run.html_url,
                               created_at=created, retry=r.retry))  # fmt: skip
    return rows


def score_test(
    store: Store,
    repo: str,
    test: str,
    job: str,
    config: RepoConfig,
    *,
    branch: str | None,
    revision: str | None = None,
    save: bool = True,
) -> TestHistory:
    """Score one test in one job from its stored window and summary (the runs of the default
    ``branch``, and of any revision that ran more than once), and save the score. Runs on the store's
    thread (``AsyncStore.batch``)."""
    window = store.window(repo, test, job, config.scoring.window, branch=branch)
    summary = store.summary(repo, test, job)
    score = score_runs([r.as_scoring_run() for r in window], config.scoring, summary)
    if save:
        store.save_score(repo, test, job, score.to_dict())
    return TestHistory(score, summary.passed_on(revision), default_branch_failing(window, branch, revision))


def default_branch_failing(
    window: Iterable[HistoryRun], branch: str | None, revision: str | None
) -> DefaultBranchFailing | None:
    """Whether the newest runs of the default ``branch`` in the window, other than ``revision``'s,
    failed: the revision their streak of failures began on and its length (None when the newest
    passed, or there is none)."""
    streak = []
    for run in reversed(list(window)):
        if run.branch != branch or run.status == "skipped" or (revision and run.revision == revision):
            continue
        if run.status not in FAILED_HISTORY_STATUSES:
            break
        streak.append(run)
    return DefaultBranchFailing(streak[-1].revision, len(streak)) if streak else None


async def score_tests(
    store: AsyncStore,
    repo: str,
    keys: Iterable[tuple[str, str]],
    config: RepoConfig,
    *,
    branch: str | None,
    revision: str | None = None,
    save: bool = True,
) -> dict[tuple[str, str], TestHistory]:
    """:func:`score_test` for each (test, job), a batch of tests a trip to the store
    (``AsyncStore.score_inputs``, ``save_scores``).

    One trip per test and store call cost more than the scoring itself (a run of 1,500 tests: 0.55 s
    against 0.2 s); on SQLite a short batch keeps the webhooks' acknowledgements, which wait for the
    same thread, in milliseconds (``AsyncStore.score_batch``).
    """
    ordered = sorted(keys)
    tests: dict[tuple[str, str], TestHistory] = {}
    for start in range(0, len(ordered), store.score_batch):
        part = ordered[start : start + store.score_batch]
        inputs = await store.score_inputs(repo, part, config.scoring.window, branch)
        scores = [score_runs([r.as_scoring_run() for r in window], config.scoring, summary)
                  for window, summary in inputs]  # fmt: skip
        if save:
            await store.save_scores(
                repo, [(t, j, score.to_dict()) for (t, j), score in zip(part, scores, strict=True)]
            )
        for key, score, (window, summary) in zip(part, scores, inputs, strict=True):
            tests[key] = TestHistory(
                score, summary.passed_on(revision), default_branch_failing(window, branch, revision)
            )
    return tests


async def flakiest_score(ctx: Context, repo: Repo, test: str, config: RepoConfig) -> FlakeScore:
    """A test's score now in the job where it is flakiest (no runs yet: the empty score). Not saved."""
    jobs = [row["job"] for row in await ctx.store.test_scores(repo.key, test)]
    keys = [(test, job) for job in jobs]
    scored = await score_tests(ctx.store, repo.key, keys, config, branch=repo.default_branch, save=False)
    best = max((h.score for h in scored.values()), key=lambda s: s.score, default=None)
    return best if best is not None else score_runs([], config.scoring)


# "SomeError: what happened" (pytest prefixes it with "E"): the line that says what failed
_EXCEPTION_MESSAGE = re.compile(r"^(?:E\s+)?([\w.]*(?:Error|Exception|Failure|Timeout)\b:?\s.*)")


def message_of(text: str) -> str:
    """The line of a failure's log that best says what failed (for the history and the issue): the
    last exception message, else the last error line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    messages = [m.group(1) for line in lines if (m := _EXCEPTION_MESSAGE.match(line))]
    errors = [line for line in lines if is_error_line(line)]
    best = messages[-1] if messages else errors[-1] if errors else lines[-1] if lines else ""
    return best[:MESSAGE_CHARS]
