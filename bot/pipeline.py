"""The data path for one finished CI run, top to bottom:

    fetch (jobs, logs, test reports) → split (per-test records) → classify (log model, known issues)
    → score (each test's history) → decide (bot.decide) → act (comment, retry, quarantine issues)

A failed run goes through every step. A green run records its passes, marks the failures of earlier
attempts of the same commit as flaky (strong evidence for retraining), updates the comment's section
of that workflow if it had one, and lets quarantine issues of tests that are stable again close.

Every step tolerates the forge: a log that cannot be fetched becomes a job-level failure with an
"unknown" verdict, never a retry; a step that fails for good raises, and the durable queue retries
the whole delivery with back-off (every action is idempotent: notes are found by marker, issues by
marker and title, runs and failures are stored once).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bot.comment import MARKER, passed_section, render_comment, run_section
from bot.config import CONFIG_PATHS, RepoConfig, parse_repo_config
from bot.context import Context
from bot.decide import Decision, JudgedFailure, decide
from bot.forge.base import Forge, ForgeError, Job, Repo, Run
from bot.normalize import is_error_line
from bot.quarantine import Candidate, FailureLink, plan_quarantine
from bot.records import FAILED_STATUSES
from bot.scoring import FlakeScore, score_runs
from bot.split import SplitError, SplitStats, split_log, split_report
from bot.store import Failure, HistoryRun, Store
from bot.verdict import final_verdict

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 64 * 1024
SPOOL_BYTES = 8 * 1024 * 1024  # a log larger than this is spooled to a temporary file
TAIL_BYTES = 64 * 1024  # what a job-level failure keeps of its log
SCORE_BATCH = 20  # tests scored per trip to the store's thread (a few ms)
EXCERPT_LINES = 25
JOB_LEVEL_FORMATS = ("job", "unknown")  # a record for a whole job whose log named no failing test
MESSAGE_CHARS = 500
NO_MODEL = {"verdict": "unknown", "flake_probability": None, "cluster": None, "cluster_size": 0,
            "cluster_flake_share": None, "distance": None, "nearest": [],
            "reason": "no flake model trained yet (flakebot train)"}  # fmt: skip


def repo_key(repo: Repo) -> str:
    return f"{repo.forge}:{repo.full_name}"


def step_done(ctx: Context, step: str, since: float) -> float:
    """Record the time since ``since`` as the step's (``flakebot_step_seconds``); returns now."""
    now = time.perf_counter()
    ctx.metrics.step_seconds.labels(step).observe(now - since)
    return now


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def excerpt_of(text: str) -> str:
    return "\n".join(text.splitlines()[-EXCERPT_LINES:])


async def load_repo_config(forge: Forge, repo: Repo) -> RepoConfig:
    path = CONFIG_PATHS[repo.forge]
    try:
        text = await forge.read_file(repo, path)
    except ForgeError as exc:
        log.warning("%s: cannot read %s (%s): using the defaults", repo.full_name, path, exc)
        return RepoConfig()
    return parse_repo_config(text, where=path)


# --- fetch and split ----------------------------------------------------------------------------


@dataclass
class JobRecords:
    job: Job
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def _job_records(ctx: Context, forge: Forge, run: Run, job: Job) -> JobRecords:
    """Stream a failed job's log (bounded, spooled) and split it into per-test records."""
    out = JobRecords(job)
    limit = ctx.settings.max_log_bytes
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed below
    size = 0
    try:
        try:
            with ctx.metrics.step_seconds.labels("fetch").time():
                async for chunk in forge.job_log(job, run.repo, limit):
                    spool.write(chunk)
                    size += len(chunk)
        except ForgeError as exc:
            out.notes.append(f"the log of {job.name} could not be read ({exc})")
        if size >= limit:
            out.notes.append(f"the log of {job.name} was cut at {limit // 2**20} MB")
        spool.seek(0)
        stats = SplitStats()

        def split() -> list[dict[str, Any]]:
            chunks = iter(lambda: spool.read(1 << 20), b"")
            return list(
                split_log(
                    chunks, job=job.name, include_passed=True, max_record_bytes=MAX_RECORD_BYTES, stats=stats
                )
            )

        try:
            with ctx.metrics.step_seconds.labels("split").time():
                out.records = await asyncio.to_thread(split) if size else []
        except SplitError as exc:
            out.notes.append(f"the log of {job.name} could not be split ({exc})")
        if not any(r["status"] in FAILED_STATUSES for r in out.records):
            # the job failed without a failing test we could name: the job itself is the failure
            spool.seek(max(0, size - TAIL_BYTES))
            tail = spool.read().decode("utf-8", "replace")
            out.records.append(
                {"status": "failure", "test": job.name, "log": tail, "job": job.name, "format": "job"}
            )
    finally:
        spool.close()
    return out


_KEY_NOISE = {"py", "js", "ts", "go", "rb", "java"}


def test_key(name: str) -> tuple[str, ...]:
    """A loose key under which a log's and a JUnit report's names of one test agree
    (``tests/test_x.py::test_y`` and ``tests.test_x.test_y``): the last two identifiers."""
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9_]+", name) if w.lower() not in _KEY_NOISE]
    return tuple(words[-2:])


async def collect(
    ctx: Context, forge: Forge, run: Run, jobs: list[Job]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every per-test record of the run (failures and passes), each with ``job`` and ``job_url``."""
    notes: list[str] = []
    by_name = {j.name: j for j in jobs}
    report_records: list[dict[str, Any]] = []
    try:
        with ctx.metrics.step_seconds.labels("fetch").time():
            reports = await forge.test_reports(run, ctx.settings.max_report_bytes)
    except ForgeError as exc:
        reports, _ = [], notes.append(f"the test reports could not be read ({exc})")
    for report in reports:
        try:
            with ctx.metrics.step_seconds.labels("split").time():
                records = await asyncio.to_thread(
                    lambda r=report: list(
                        split_report(
                            r.data,
                            r.kind,
                            job=r.job_name or r.name,
                            include_passed=True,
                            max_record_bytes=MAX_RECORD_BYTES,
                        )
                    )
                )
        except SplitError as exc:
            notes.append(f"the test report {report.name} could not be read ({exc})")
            continue
        for record in records:
            job = by_name.get(record.get("job") or "")
            record["job_url"] = job.html_url if job else run.html_url
            if job is not None and job.infra_failure and record["status"] in FAILED_STATUSES:
                record["infra"] = job.failure_reason
        report_records += records

    failed_jobs = [j for j in jobs if j.failed] if run.failed else []
    results = await asyncio.gather(*(_job_records(ctx, forge, run, job) for job in failed_jobs))
    failed_reports = [r for r in report_records if r["status"] in FAILED_STATUSES]
    reported = {test_key(r["test"]) for r in failed_reports}
    reported_jobs = {r.get("job") for r in failed_reports}
    records = list(report_records)
    for result in results:
        notes += result.notes
        for record in result.records:
            if record["status"] in FAILED_STATUSES and test_key(record["test"]) in reported:
                continue  # the report already has this failure, with its exact name
            if record.get("format") in JOB_LEVEL_FORMATS and result.job.name in reported_jobs:
                continue  # the log named no test, but the report names this job's failures
            record["job"] = result.job.name
            record["job_url"] = result.job.html_url
            if result.job.infra_failure:
                record["infra"] = result.job.failure_reason
            records.append(record)
    return records, notes


# --- classify ------------------------------------------------------------------------------------


async def classify(
    ctx: Context, failures: list[dict[str, Any]], config: RepoConfig, repo: str | None = None
) -> list[dict[str, Any]]:
    """The log model's verdict for each failure: the repository's own model when it has one, else the
    shared one (with the repository's threshold, when it sets one)."""
    if not failures:
        return []
    model, _ = await asyncio.to_thread(ctx.models.get, repo)
    if model is None:
        return [dict(NO_MODEL) for _ in failures]
    with ctx.metrics.classify_seconds.time():
        verdicts = await asyncio.to_thread(model.explain, failures)
    if config.threshold is not None:
        for v in verdicts:
            if v["flake_probability"] is not None:
                v["verdict"] = "flake" if v["flake_probability"] > config.threshold else "real"
    return verdicts


def known_issue(ctx: Context, record: Mapping[str, Any]) -> dict[str, Any] | None:
    if ctx.known_issues is None:
        return None
    match = ctx.known_issues.match(record["log"])
    return {"issue": match.issue, "slug": match.slug} if match else None


# --- score ---------------------------------------------------------------------------------------


def history_rows(run: Run, records: Iterable[Mapping[str, Any]], jobs: Mapping[str, Job]) -> list[HistoryRun]:
    created = now_iso()
    rows = []
    seen = set()
    for r in records:
        job = jobs.get(r.get("job") or "")
        key = (r.get("job") or "", r["test"])
        if key in seen:  # one row per test and job (parametrised duplicates, report + log)
            continue
        seen.add(key)
        failed = r["status"] in FAILED_STATUSES
        rows.append(
            HistoryRun(
                test=r["test"],
                status=("error" if r["status"] == "error" else "failed")
                if failed
                else ("skipped" if r["status"] == "skip" else "passed"),
                run_id=run.id,
                attempt=job.attempt if job else run.attempt,
                job=r.get("job") or "",
                revision=run.sha,
                branch=run.branch,
                duration=job.duration if job else None,
                message=message_of(r["log"]) if failed else None,
                url=r.get("job_url") or run.html_url,
                created_at=created,
            )
        )
    return rows


async def score_tests(
    ctx: Context, repo: str, tests: Iterable[tuple[str, str]], config: RepoConfig
) -> dict[tuple[str, str], FlakeScore]:
    """The history score of each (test, job), saved for ``flakebot scores`` and the dashboard.

    In batches of ``SCORE_BATCH`` tests on the store's thread: one thread hop per test and store call
    cost more than the scoring itself (a run of 1,500 tests: 0.55 s against 0.2 s), and a short batch
    keeps the webhooks' acknowledgements, which wait for the same thread, in milliseconds.
    """

    def score_batch(store: Store, keys: list[tuple[str, str]]) -> dict[tuple[str, str], FlakeScore]:
        scores = {}
        for test, job in keys:
            window = store.window(repo, test, job, config.scoring.window)
            score = score_runs(
                [r.as_scoring_run() for r in window], config.scoring, store.summary(repo, test, job)
            )
            store.save_score(repo, test, job, score.to_dict())
            scores[(test, job)] = score
        return scores

    keys = sorted(tests)
    scores: dict[tuple[str, str], FlakeScore] = {}
    for start in range(0, len(keys), SCORE_BATCH):
        chunk = keys[start : start + SCORE_BATCH]
        scores |= await ctx.store.batch(functools.partial(score_batch, keys=chunk))
    return scores


async def record_history(
    ctx: Context, run: Run, jobs: list[Job], records: list[dict[str, Any]], config: RepoConfig
) -> tuple[list[dict[str, Any]], dict[tuple[str, str], FlakeScore]]:
    """Store the run's results in the tests' histories and score every test it touched.

    The passes are the records that did not fail plus every known test of each green job (a job that
    passed means all its tests did). Returns those passes and the scores by (test, job).
    """
    repo = repo_key(run.repo)
    passes = [r for r in records if r["status"] not in FAILED_STATUSES]
    for job in jobs:
        if job.conclusion == "success":
            passes += [{"status": "success", "test": t, "log": "", "job": job.name, "job_url": job.html_url}
                       for t in await ctx.store.tests_of_job(repo, job.name)]  # fmt: skip
    failures = [r for r in records if r["status"] in FAILED_STATUSES]
    rows = history_rows(run, failures + passes, {j.name: j for j in jobs})
    await ctx.store.record_runs(repo, rows)
    scores = await score_tests(ctx, repo, {(r.test, r.job) for r in rows if r.status != "skipped"}, config)
    return passes, scores


# --- act -----------------------------------------------------------------------------------------


async def update_quarantine(
    ctx: Context,
    forge: Forge,
    run: Run,
    config: RepoConfig,
    scores: Mapping[tuple[str, str], FlakeScore],
    dry_run: bool,
) -> list[str]:
    """Open, update or close quarantine issues for the tests this run touched. Returns what was done.

    One repository at a time (a lock in the store), so two runs finishing together cannot both open
    an issue for the same test or both take the last place under ``max_open``.
    """
    if not config.may_quarantine:
        return []
    repo = repo_key(run.repo)
    async with ctx.lock(f"quarantine:{repo}"):
        return await _update_quarantine(ctx, forge, run, config, scores, dry_run)


async def _update_quarantine(
    ctx: Context,
    forge: Forge,
    run: Run,
    config: RepoConfig,
    scores: Mapping[tuple[str, str], FlakeScore],
    dry_run: bool,
) -> list[str]:
    repo = repo_key(run.repo)
    best: dict[str, FlakeScore] = {}
    streak: dict[str, int] = {}
    for (test, _job), score in scores.items():  # one issue per test: its flakiest job speaks
        if test not in best or score.score > best[test].score:
            best[test] = score
        streak[test] = min(streak.get(test, score.runs_since_failure), score.runs_since_failure)
    # ... and it is stable only when it is stable in every job
    best = {test: replace(score, runs_since_failure=streak[test]) for test, score in best.items()}
    stored = {q["test"]: q for q in await ctx.store.quarantined(repo)}
    if not stored and not any(s.recommendation.action == "quarantine" for s in best.values()):
        return []
    overrides = await ctx.store.overrides(repo)  # a maintainer's /flake quarantine|unquarantine holds
    issues = await forge.find_issues(run.repo, config.quarantine.label)
    by_number = {issue.number: issue for issue in issues}
    if not dry_run:
        # a quarantine issue closed by hand (or gone) ends the quarantine, whether its test ran or not
        for test, row in list(stored.items()):
            issue = by_number.get(row["number"]) if row["number"] is not None else None
            if row["number"] is not None and (issue is None or issue.state == "closed"):
                await ctx.store.set_quarantine(
                    repo, test, number=row["number"], url=row["url"], state="closed"
                )
                stored.pop(test)
    relevant = {t: s for t, s in best.items() if s.recommendation.action == "quarantine" or t in stored}
    if not relevant:
        return []
    bot = await _bot_names(forge, run.repo)
    qconfig = replace(config.quarantine, bot_logins=frozenset(bot)) if bot else config.quarantine
    candidates = []
    for test, score in relevant.items():
        failures = await ctx.store.recent_failures(repo, test, qconfig.max_failures_listed)
        links = [
            FailureLink(url=f.url, created_at=f.created_at, revision=f.revision, message=f.message)
            for f in failures
        ]
        override = overrides.get(test, {})
        candidates.append(Candidate(test=test, score=score, failures=links, override=override.get("override"),
                                    override_by=override.get("by")))  # fmt: skip
    done = []
    for action in plan_quarantine(candidates, issues, qconfig, datetime.now(UTC), config.scoring):
        if action.kind == "skip":
            issue = by_number.get(action.number) if action.number is not None else None
            if not dry_run and issue is not None and issue.state == "open" and action.test not in stored:
                # its issue is open but the store lost track (a crash right after opening it)
                await ctx.store.set_quarantine(
                    repo, action.test, number=issue.number, url=issue.html_url, state="open"
                )
            continue
        if dry_run:
            done.append(f"dry run: would have {_describe(action)}")
            continue
        done.append(await apply_quarantine_action(ctx, forge, run.repo, action))
    return done


async def apply_quarantine_action(ctx: Context, forge: Forge, repo: Repo, action: Any) -> str:
    """Carry out one planned quarantine action (not ``skip``) and record it; returns what was done."""
    key = repo_key(repo)
    what = _describe(action)
    if action.kind == "open" and action.number is None:
        await forge.ensure_labels(repo, list(action.labels))
        issue = await forge.create_issue(repo, action.title or "", action.body or "", list(action.labels))
        await ctx.store.set_quarantine(
            key, action.test, number=issue.number, url=issue.html_url, state="open"
        )
        what = f"opened quarantine issue #{issue.number} for `{action.test}`"
    elif action.kind in ("open", "update"):
        issue = await forge.update_issue(
            repo,
            action.number,
            body=action.body,
            state="open" if action.kind == "open" else None,
            comment=action.comment,
        )
        await ctx.store.set_quarantine(
            key, action.test, number=issue.number, url=issue.html_url, state="open"
        )
    elif action.kind == "close":
        issue = await forge.update_issue(repo, action.number, state="closed", comment=action.comment)
        if not action.reason.startswith("duplicate"):
            await ctx.store.set_quarantine(
                key, action.test, number=issue.number, url=issue.html_url, state="closed"
            )
    ctx.metrics.issues.labels(repo.forge, action.kind).inc()
    return what


def _describe(action: Any) -> str:
    if action.kind == "open":
        return (
            f"reopened quarantine issue #{action.number} for `{action.test}`"
            if action.number
            else f"opened a quarantine issue for `{action.test}`"
        )
    if action.kind == "update":
        return f"updated quarantine issue #{action.number} for `{action.test}`"
    return f"closed quarantine issue #{action.number} for `{action.test}` ({action.reason})"


async def _bot_names(forge: Forge, repo: Repo) -> list[str]:
    """The bot's own login on the forge (to tell its own issue closings from a human's)."""
    try:
        own = await forge.identity(repo)
        return [own.login] if own else []
    except ForgeError as exc:
        log.warning("cannot tell the bot's own login: %s", exc)
    return []


async def write_comments(
    ctx: Context,
    forge: Forge,
    run: Run,
    config: RepoConfig,
    section: dict[str, Any] | None,
    dry_run: bool,
    *,
    only_existing: bool = False,
) -> None:
    """Put this run's section into the comment of each of its changes (one comment per change)."""
    repo = repo_key(run.repo)
    key = run.name or f"run {run.id}"
    for change in await forge.changes_for_run(run):
        if change.head_sha and change.head_sha != run.sha:
            continue  # the change moved on: this run is about an older commit
        async with ctx.lock(f"change:{repo}:{change.number}"):
            state = await ctx.store.change_state(repo, change.number)
            sections = {k: v for k, v in state.get("sections", {}).items() if v.get("sha") == run.sha}
            if only_existing:
                previous = sections.get(key)
                if previous is None or previous.get("passed"):
                    continue
                new = passed_section(previous, run, section.get("actions", []) if section else [])
            else:
                new = section
            sections[key] = new
            body = render_comment(sections, config_error=config.error)
            if dry_run:
                log.info(
                    "dry run: would write this comment on %s#%s:\n%s", run.repo.full_name, change.number, body
                )
            else:
                await forge.upsert_note(run.repo, change, MARKER, body)
                ctx.metrics.comments.labels(run.repo.forge).inc()
            await ctx.store.save_change_state(repo, change.number, {"sections": sections})


# --- the two paths -------------------------------------------------------------------------------


async def handle_run(ctx: Context, forge: Forge, run: Run) -> Decision | None:
    """Process one finished run (the queue calls this for workflow_run / Pipeline Hook deliveries)."""
    repo = repo_key(run.repo)
    await ctx.store.set_default_branch(repo, run.repo.default_branch)
    config = await load_repo_config(forge, run.repo)
    jobs = await forge.list_jobs(run)
    dry_run = ctx.settings.dry_run or config.dry_run
    if run.failed:
        return await _failed_run(ctx, forge, run, jobs, config, dry_run)
    await _green_run(ctx, forge, run, jobs, config, dry_run)
    return None


async def _failed_run(
    ctx: Context, forge: Forge, run: Run, jobs: list[Job], config: RepoConfig, dry_run: bool
) -> Decision:
    repo = repo_key(run.repo)
    by_name = {j.name: j for j in jobs}
    records, notes = await collect(ctx, forge, run, jobs)
    failures = [r for r in records if r["status"] in FAILED_STATUSES]
    since = time.perf_counter()
    model_verdicts = await classify(ctx, failures, config, repo)
    since = step_done(ctx, "classify", since)

    # history first, so that each failure is judged with a history that includes it
    passes, scores = await record_history(ctx, run, jobs, records, config)
    relabelled = await label_retried_passes(ctx, repo, run, jobs, passes)

    judged = []
    for record, model in zip(failures, model_verdicts, strict=True):
        key = (record["test"], record.get("job") or "")
        summary = await ctx.store.summary(repo, *key)
        verdict = final_verdict(
            model,
            scores.get(key),
            known_issue=(issue := known_issue(ctx, record)),
            infra_reason=record.get("infra"),
            passed_on_revision=summary.passed_on(run.sha),
            config=config.scoring,
        )
        lines = record.get("lines")
        judged.append(JudgedFailure(test=record["test"], job=record.get("job") or "", job_url=record.get("job_url") or run.html_url,
                                    verdict=verdict, model=model, known_issue=issue,
                                    lines=tuple(lines) if lines else None, excerpt=excerpt_of(record["log"])))  # fmt: skip
        ctx.metrics.failures.labels(run.repo.forge, verdict.verdict).inc()

    attempt = max([run.attempt, *(j.attempt for j in jobs if j.failed)])
    decision = decide(judged, config, attempt, dry_run=dry_run)
    since = step_done(ctx, "score", since)
    log.info(
        "%s run %s attempt %s: %s; retry: %s",
        run.repo.full_name,
        run.id,
        attempt,
        dict(decision.counts),
        decision.retry_reason,
    )

    actions = [f"Note: {note}." for note in notes]
    if relabelled:
        actions.append(
            f"{relabelled} failure(s) of an earlier attempt passed on this one: they are recorded as flaky."
        )
    if decision.retry:
        if decision.dry_run:
            actions.append(f"Dry run: would have re-run the failed jobs: {decision.retry_reason}.")
        else:
            try:
                await forge.retry_jobs(run, [j for j in jobs if j.failed])
                ctx.metrics.retries.labels(run.repo.forge).inc()
                actions.append(f"Re-ran the failed jobs: {decision.retry_reason}.")
            except ForgeError as exc:
                actions.append(f"Could not re-run the failed jobs: {exc}.")
    else:
        actions.append(f"Did not re-run: {decision.retry_reason}.")
    actions += [
        a[0].upper() + a[1:] + "."
        for a in await update_quarantine(ctx, forge, run, config, scores, decision.dry_run)
    ]

    change_numbers = (
        [c.number for c in await forge.changes_for_run(run)] if decision.comment else run.change_numbers
    )
    await ctx.store.record_failures(
        repo, await _failures_to_keep(ctx, run, failures, model_verdicts, judged, by_name, change_numbers)
    )
    if decision.comment:
        # the attempt that ran: GitLab has none per pipeline, only per job (Job.attempt)
        section = run_section(replace(run, attempt=attempt), judged, decision, actions)
        await write_comments(ctx, forge, run, config, section, decision.dry_run)
    step_done(ctx, "act", since)
    return decision


async def label_retried_passes(
    ctx: Context, repo: str, run: Run, jobs: list[Job], passes: list[dict[str, Any]]
) -> int:
    """A failed run's retried jobs: the tests that failed on an earlier attempt and passed on this one
    (all of a job that passed) are strong flake evidence, even though the run failed again because of
    other tests. Returns how many stored failures were labelled."""
    passed: dict[str, set[str]] = defaultdict(set)
    for record in passes:
        if record["status"] == "success":
            passed[record.get("job") or ""].add(record["test"])
    count = 0
    for job in jobs:
        if job.attempt <= 1:
            continue
        if job.conclusion == "success":
            count += await ctx.store.label_passed_on_retry(repo, run.id, job.attempt, None, job=job.name)
        elif passed.get(job.name):
            tests = sorted(passed[job.name])
            count += await ctx.store.label_passed_on_retry(repo, run.id, job.attempt, tests, job=job.name)
    return count


async def _failures_to_keep(
    ctx: Context,
    run: Run,
    failures: list[dict[str, Any]],
    models: list[dict[str, Any]],
    judged: list[JudgedFailure],
    jobs: Mapping[str, Job],
    changes: list[int],
) -> list[Failure]:
    """The failures as training data, their logs cut to what the model reads."""
    model, _ = await asyncio.to_thread(ctx.models.get, repo_key(run.repo))
    kept = []
    for record, verdict, j in zip(failures, models, judged, strict=True):
        slim = model.slim(record) if model is not None else {"log": record["log"][-TAIL_BYTES:]}
        job = jobs.get(record.get("job") or "")
        kept.append(Failure(test=record["test"], log=slim["log"], run_id=run.id, attempt=job.attempt if job else run.attempt,
                            job=record.get("job") or "", revision=run.sha, change_number=changes[0] if changes else None,
                            model=verdict, verdict=j.verdict.verdict, url=record.get("job_url")))  # fmt: skip
    return kept


async def _green_run(
    ctx: Context, forge: Forge, run: Run, jobs: list[Job], config: RepoConfig, dry_run: bool
) -> None:
    repo = repo_key(run.repo)
    records, _ = await collect(ctx, forge, run, jobs)  # passes from test reports, when the run has some
    since = time.perf_counter()
    _, scores = await record_history(ctx, run, jobs, records, config)
    since = step_done(ctx, "score", since)

    attempt = max([run.attempt, *(j.attempt for j in jobs)])
    actions: list[str] = []
    if attempt > 1:
        relabelled = await ctx.store.label_passed_on_retry(repo, run.id, attempt, None)
        if relabelled:
            actions.append(
                f"Attempt {attempt} passed: the {relabelled} earlier failure(s) are recorded as flaky."
            )
    actions += [
        a[0].upper() + a[1:] + "." for a in await update_quarantine(ctx, forge, run, config, scores, dry_run)
    ]
    if config.comment or config.safe_mode:
        shown = replace(run, attempt=attempt)  # the attempt that passed (GitLab: its jobs' attempts)
        await write_comments(ctx, forge, shown, config, {"actions": actions}, dry_run, only_existing=True)
    step_done(ctx, "act", since)
