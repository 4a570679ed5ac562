"""Stage 1, collect: a run's test reports and its failed jobs' logs → :class:`TestResult` s.

The test reports (JUnit XML artifacts, GitLab's pipeline report) name tests exactly; the failed jobs'
logs are streamed (bounded by ``max_log_bytes``, spooled to disk past 8 MB) and split by
``bot.split``. A failure both name is kept once, with the report's name. A failed job in which no
failing test could be named becomes one failure for the whole job, with the end of its log. Whatever
cannot be read becomes a note for the comment, never an error: the run is still judged on the rest.

A JUnit test that the test runner re-ran within its job and that passed in the end (Surefire's
``<flakyFailure>``, pytest-rerunfailures) gives its failed runs and its pass, numbered by ``retry``: all go
into its history (a pass and a failure on one revision: a flip, the proof of flakiness), but the failed
runs are not failures of the run (:attr:`Collected.failures`): nothing to judge, comment or retry.
"""

from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from dataclasses import dataclass, field
from typing import IO, Any

from bot.forge.base import ForgeError, Job, RateLimited
from bot.run.results import TestResult
from bot.run.scope import RunScope
from bot.split import SplitError, SplitStats, split_log, split_report
from bot.status import FAILED_TEST_STATUSES

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 64 * 1024
SPOOL_BYTES = 8 * 1024 * 1024  # a log larger than this is spooled to a temporary file
TAIL_BYTES = 64 * 1024  # what a job-level failure keeps of its log


@dataclass
class Collected:
    results: list[TestResult] = field(default_factory=list)  # failures and passes
    notes: list[str] = field(default_factory=list)  # what could not be read, for the comment

    @property
    def failures(self) -> list[TestResult]:
        """The run's failures (the failed runs a re-run within the job passed left out)."""
        return [r for r in self.results if r.counts]

    @property
    def passed_on_retry(self) -> list[TestResult]:
        """Failed runs of tests that passed when the test runner re-ran them within the job."""
        return [r for r in self.results if r.passed_on_retry]


async def collect(scope: RunScope, *, reports: bool = True) -> Collected:
    """Every test result of the run (failures and passes), each with its job and the job's page.
    Without ``reports`` only the logs are read (a backfill reads a run's reports with its last attempt:
    they are the run's, not an attempt's)."""
    run = scope.run
    out = Collected()
    reported = await _reports(scope, out.notes) if reports else []
    failed_jobs = scope.failed_jobs if run.failed else []
    logs = await asyncio.gather(*(_job_log(scope, job) for job in failed_jobs))
    failed = [r for r in reported if r.counts]
    named = {name_key(r.test) for r in failed}
    named_jobs = {r.job for r in failed}
    out.results = list(reported)
    for job, (results, notes) in zip(failed_jobs, logs, strict=True):
        out.notes += notes
        for result in results:
            if result.failed and name_key(result.test) in named:
                continue  # the report already has this failure, with its exact name
            if result.job_level and job.name in named_jobs:
                continue  # the log named no test, but the report names this job's failures
            out.results.append(result)
    return out


async def _reports(scope: RunScope, notes: list[str]) -> list[TestResult]:
    """The results of the run's machine-readable test reports."""
    ctx, run = scope.ctx, scope.run
    try:
        with scope.step("fetch"):
            reports = await scope.forge.test_reports(run, ctx.settings.max_report_bytes)
    except RateLimited:
        raise  # the whole run waits for the forge (the queue defers it), rather than being judged without
    except ForgeError as exc:
        notes.append(f"the test reports could not be read ({exc})")
        return []
    results = []
    for report in reports:
        name = report.job_name or report.name
        try:
            with scope.step("split"):
                records = await asyncio.to_thread(
                    lambda r=report, job=name: list(
                        split_report(
                            r.data,
                            r.kind,
                            job=job,
                            include_passed=True,
                            max_record_bytes=MAX_RECORD_BYTES,
                            flaky_attempts=True,
                        )
                    )
                )
        except SplitError as exc:
            notes.append(f"the test report {report.name} could not be read ({exc})")
            continue
        flaky_runs: dict[tuple[str, str], int] = {}  # (test, job) -> its failed runs before a pass
        for record in records:
            job = scope.job(record.get("job") or "")
            key = (record["test"], record.get("job") or "")
            retry = 0
            if record.get("passed_on_retry"):
                retry = flaky_runs[key] = flaky_runs.get(key, -1) + 1
            elif key in flaky_runs:
                retry = flaky_runs.pop(key) + 1  # the pass that followed them
            results.append(
                TestResult.from_record(
                    record,
                    job=record.get("job") or "",
                    job_url=job.html_url if job else run.html_url,
                    infra=job.failure_reason if job is not None and job.infra_failure else None,
                    retry=retry,
                )
            )
    return results


async def _job_log(scope: RunScope, job: Job) -> tuple[list[TestResult], list[str]]:
    """Download a failed job's log (bounded, spooled, under a deadline, fetched again once when the
    connection cut it short) and split it into test results."""
    records: list[dict[str, Any]] = []
    spool, size, notes = await _download_log(scope, job)
    try:
        spool.seek(0)
        stats = SplitStats()

        def split() -> list[dict[str, Any]]:
            chunks = iter(lambda: spool.read(1 << 20), b"")
            return list(split_log(chunks, job=job.name, include_passed=True, max_record_bytes=MAX_RECORD_BYTES,
                                  stats=stats))  # fmt: skip

        try:
            with scope.step("split"):
                records = await asyncio.to_thread(split) if size else []
        except SplitError as exc:
            notes.append(f"the log of {job.name} could not be split ({exc})")
        if not any(r["status"] in FAILED_TEST_STATUSES for r in records):
            # the job failed without a failing test we could name: the job itself is the failure
            spool.seek(max(0, size - TAIL_BYTES))
            tail = spool.read().decode("utf-8", "replace")
            records.append({"status": "failure", "test": job.name, "log": tail, "format": "job"})
    finally:
        spool.close()
    infra = job.failure_reason if job.infra_failure else None
    return [
        TestResult.from_record(r, job=job.name, job_url=job.html_url, infra=infra) for r in records
    ], notes


async def _download_log(scope: RunScope, job: Job) -> tuple[IO[bytes], int, list[str]]:
    """(spooled log, its size, notes for the comment). The whole download, a second try included, has
    ``Settings.log_deadline`` seconds: a log trickled over minutes holds no worker. A download the
    connection breaks off is fetched once more from the start and the longer of the two is kept; a log
    still incomplete is judged on what arrived, and the note says so."""
    limit, deadline = scope.ctx.settings.max_log_bytes, scope.ctx.settings.log_deadline
    name = job.name
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    kept: tuple[IO[bytes], int] | None = None
    notes: list[str] = []
    broke: ForgeError | None = None
    for attempt in (1, 2):
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned or closed
        size, broke, late = 0, None, False
        try:
            async with asyncio.timeout_at(end):
                with scope.step("fetch"):
                    async for chunk in scope.forge.job_log(job, scope.run.repo, limit):
                        spool.write(chunk)
                        size += len(chunk)
        except TimeoutError:
            late = True
        except RateLimited:
            spool.close()
            if kept is not None:
                kept[0].close()
            raise
        except ForgeError as exc:
            broke = exc
        if kept is None or size > kept[1]:
            if kept is not None:
                kept[0].close()
            kept = (spool, size)
        else:
            spool.close()
        if late:
            notes.append(f"the log of {name} did not finish downloading within {deadline:g} s: it is judged "
                         f"on the {_amount(kept[1])} that arrived")  # fmt: skip
            break
        # a transport failure (no status) may go better the second time; an answer (404, 410) will not
        if broke is None or broke.status is not None or attempt == 2:
            break
        log.info("%s: %s; fetching it again", job.name, broke)
    assert kept is not None
    if broke is not None and not notes:
        if kept[1] and broke.status is None:
            notes.append(f"the log of {name} was cut short by the connection (fetched twice): it is judged on "
                         f"the {_amount(kept[1])} that arrived ({broke})")  # fmt: skip
        else:
            notes.append(f"the log of {name} could not be read ({broke})")
    if kept[1] >= limit:
        notes.append(f"the log of {name} was cut at {limit // 2**20} MB")
    return kept[0], kept[1], notes


def _amount(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size:,} bytes"


_KEY_NOISE = {"py", "js", "ts", "go", "rb", "java"}


def name_key(name: str) -> tuple[str, ...]:
    """A loose key under which a log's and a JUnit report's names of one test agree
    (``tests/test_x.py::test_y`` and ``tests.test_x.test_y``): the last two identifiers."""
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9_]+", name) if w.lower() not in _KEY_NOISE]
    return tuple(words[-2:])
