"""A synthetic CI history with known truth, for backfill tests and ``bench/backfill.py`` (synthetic).

A repository with a default branch (``main``) and pull-request branches; every run has one pytest job
(``tests``) and a ``lint`` job that passes. Two things make tests fail, each with its truth:

* **flaky causes** (connection resets, time-outs, DNS) hit random tests now and then; a failed run is
  re-run (another attempt of the same run) with probability ``rerun``, and the re-run usually passes;
* **real bugs**: on a pull request a bug breaks one to three tests, the run is re-run and fails the same
  way; on the default branch a bug breaks a test for two to four commits, then a commit fixes it.

:func:`history` returns the runs, oldest first; :func:`seed_github` and :func:`seed_gitlab` put them on
the fake forges. Each failure's truth (``flake`` or ``real``) is what a maintainer would have labelled.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.ci_logs import actions_pytest_log, cause, gitlab_pytest_log, real_bug

TESTS = [
    f"tests/test_{area}.py::test_{area}_{i}" for area in ("api", "cart", "auth", "search") for i in range(6)
]
JOB = "tests"


@dataclass
class Attempt:
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (test, message, truth)

    @property
    def failed(self) -> bool:
        return bool(self.failures)


@dataclass
class HistoryRun:
    sha: str
    branch: str
    created_at: str
    attempts: list[Attempt]
    event: str = "push"


def _sha(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()  # noqa: S324 - an id, not security


def history(
    runs: int, *, seed: int = 1, start: datetime | None = None, rerun: float = 0.7
) -> list[HistoryRun]:
    """``runs`` runs, oldest first, one every 20 minutes from ``start`` (default: ``runs`` × 20 minutes
    ago)."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20 * runs + 30)
    out: list[HistoryRun] = []
    broken: dict[str, tuple[str, int]] = {}  # a test broken on main: (message, commits left)
    for i in range(runs):
        at = (start + timedelta(minutes=20 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        on_main = rng.random() < 0.4
        branch = "main" if on_main else f"feature-{i % 7}"
        sha = _sha(seed, i)
        first = Attempt()
        if on_main:
            if not broken and rng.random() < 0.15:
                broken[rng.choice(TESTS)] = (real_bug(rng), rng.randint(2, 4))
            for test, (message, left) in list(broken.items()):
                first.failures.append((test, message, "real"))
                if left <= 1:
                    del broken[test]
                else:
                    broken[test] = (message, left - 1)
        elif rng.random() < 0.12:
            for test in rng.sample(TESTS, rng.randint(1, 3)):
                first.failures.append((test, real_bug(rng), "real"))
        if rng.random() < 0.25:
            named = {t for t, _, _ in first.failures}
            test = rng.choice([t for t in TESTS if t not in named])
            first.failures.append((test, cause(rng.choice(["reset", "timeout", "dns"]), rng), "flake"))
        attempts = [first]
        if first.failed and rng.random() < rerun:
            again = Attempt([f for f in first.failures if f[2] == "real"])  # flaky ones pass on a re-run
            if rng.random() < 0.1:  # but now and then another flaky cause strikes
                test = rng.choice([t for t in TESTS if t not in {f[0] for f in again.failures}])
                again.failures.append((test, cause("timeout", rng), "flake"))
            attempts.append(again)
        out.append(HistoryRun(sha, branch, at, attempts, "push" if on_main else "pull_request"))
    return out


def truths(runs: list[HistoryRun]) -> dict[tuple[str, int, str], str]:
    """(revision, attempt, test) → the truth of that failure."""
    return {
        (r.sha, n, t): truth for r in runs for n, a in enumerate(r.attempts, 1) for t, _, truth in a.failures
    }


def _passes(attempt: Attempt) -> list[str]:
    named = {t for t, _, _ in attempt.failures}
    return [t for t in TESTS if t not in named]


def seed_github(fake: Any, repo: str, runs: list[HistoryRun], *, seed: int = 0) -> list[int]:
    """The runs on the fake GitHub (one job per attempt that ran it, as rerun-failed-jobs does); their ids."""
    if repo not in fake.repos:
        fake.add_repo(repo)
    ids = []
    for i, run in enumerate(runs):
        last = run.attempts[-1]
        run_id = fake.add_run(repo, head_sha=run.sha, head_branch=run.branch, created_at=run.created_at,
                              conclusion="failure" if last.failed else "success", attempt=len(run.attempts),
                              event=run.event)  # fmt: skip
        fake.add_job(repo, run_id, "lint", conclusion="success", log=b"ok\n", attempt=1)
        for n, attempt in enumerate(run.attempts, 1):
            log = actions_pytest_log(
                [(t, m) for t, m, _ in attempt.failures], _passes(attempt), seed=seed + i * 7 + n
            )
            job = fake.add_job(repo, run_id, JOB, conclusion="failure" if attempt.failed else "success", log=log,
                               attempt=n)  # fmt: skip
            job["completed_at"] = job["started_at"] = run.created_at
        ids.append(run_id)
    return ids


def seed_gitlab(fake: Any, project: Any, runs: list[HistoryRun], *, seed: int = 0) -> list[int]:
    """The runs as pipelines of the fake GitLab (a re-run is a retried job of the same pipeline)."""
    ids = []
    for i, run in enumerate(runs):
        last = run.attempts[-1]
        pipeline = fake.add_pipeline(project, sha=run.sha, ref=run.branch, status="failed" if last.failed else "success",
                                     source=run.event if run.event == "push" else "merge_request_event",
                                     created_at=run.created_at)  # fmt: skip
        fake.add_job(project, pipeline, "lint", status="success", trace=b"ok\n")
        for n, attempt in enumerate(run.attempts, 1):
            trace = gitlab_pytest_log(
                [(t, m) for t, m, _ in attempt.failures], _passes(attempt), seed=seed + i * 7 + n
            )
            job = fake.add_job(project, pipeline, JOB, status="failed" if attempt.failed else "success", trace=trace,
                               retried=n < len(run.attempts))  # fmt: skip
            job["finished_at"] = job["started_at"] = run.created_at
        ids.append(pipeline["id"])
    return ids
