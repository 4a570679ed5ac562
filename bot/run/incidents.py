"""Stage 4, incidents (after judge): many changes failing the same way at once are one infrastructure
incident, not as many flakes.

Each failure's signature (``bot.incidents.signature``) is recorded with its change; the pure
``bot.incidents.plan`` says which signatures are an incident now, and which open incidents went quiet.
This stage carries that out: one issue per signature (found again by its hidden marker; opened,
updated with each new occurrence, closed when quiet, reopened when it happens again), the failures of
an incident set aside in their tests' histories (``Store.set_aside_runs``: not counted against the
tests' scores, the earlier occurrences of a new incident included) and their tests scored again, and
their judgements turned into ``incident`` ones with a link to the issue (the comment says so; ``decide``
re-runs nothing while one lasts). One repository at a time (a lock in the store).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from bot.forge.base import ForgeError, Job
from bot.incidents import (
    BASELINE_DAYS,
    Incident,
    IncidentAction,
    Occurrence,
    Signature,
    issue_title,
    marker_key,
    plan,
    render_body,
    signature,
    verdict_line,
)
from bot.run import comments
from bot.run.history import Recorded, score_tests
from bot.run.results import Judgement, TestResult
from bot.run.scope import RunScope
from bot.scoring import parse_time
from bot.verdict import Verdict

log = logging.getLogger(__name__)


@dataclass
class Checked:
    judgements: list[Judgement]  # those of an incident's failures turned into "incident"
    recorded: Recorded  # the histories, scored again where failures were set aside
    actions: list[str] = field(default_factory=list)  # what was done, for the comment


async def check(
    scope: RunScope, failures: list[TestResult], judgements: list[Judgement], recorded: Recorded
) -> Checked:
    """Record the failures' signatures, open, update or close the incidents, and judge the failures that
    are part of one as such."""
    if not scope.config.may_declare_incidents:
        return Checked(judgements, recorded)
    ctx, now = scope.ctx, datetime.now(UTC)
    signatures = [signature(f.log, f.test, f.infra) for f in failures]
    by_key = {s.key: s for s in signatures if s is not None}
    async with ctx.lock(f"incidents:{scope.repo}"):
        known = {i.signature: i for i in await ctx.store.incidents(scope.repo)}
        if not by_key and not any(i.state == "open" for i in known.values()):
            return Checked(judgements, recorded)
        seen: dict[str, list[Occurrence]] = defaultdict(list)
        if by_key:
            await ctx.store.record_occurrences(
                scope.repo, await _occurrences(scope, failures, signatures, now)
            )
            since = now - timedelta(days=BASELINE_DAYS)  # the usual rate, the window, an open incident
            for incident in known.values():
                if incident.state == "open" and incident.signature in by_key and incident.opened_at:
                    since = min(since, incident.opened_at)
            for o in await ctx.store.occurrences(
                scope.repo, list(by_key), since.strftime("%Y-%m-%dT%H:%M:%SZ")
            ):
                seen[o.signature].append(o)
        planned = plan(by_key, seen, known, scope.config.incidents, now, _flaky_tests(recorded))
        done, incidents = [], dict(planned.open)
        for action in planned.actions:
            incident, what = await _apply(scope, action)
            if incident.signature in incidents:
                incidents[incident.signature] = incident
            if what:
                done.append(what)
        for action in planned.actions:
            if action.kind == "open" and not scope.dry_run:
                await _tell_earlier_changes(scope, action, incidents[action.signature])
        aside = _set_aside(planned.actions, scope, failures, signatures)
        touched = (
            []
            if scope.dry_run
            else await ctx.store.set_aside_runs(scope.repo, aside, "infrastructure incident")
        )
    out = []
    for failure, sig, judgement in zip(failures, signatures, judgements, strict=True):
        incident = incidents.get(sig.key) if sig is not None else None
        if incident is None:
            out.append(judgement)
            continue
        verdict = Verdict("incident", verdict_line(incident), judgement.verdict.history, "incident")
        link = {"number": incident.number, "url": incident.url, "signature": incident.signature}
        out.append(replace(judgement, verdict=verdict, incident=link))
        log.info(
            "%s: %s in %s is part of incident %s", scope.repo, failure.test, failure.job, incident.signature
        )
    return Checked(out, await _rescored(scope, recorded, touched), done)


def _flaky_tests(recorded: Recorded) -> set[str]:
    """The run's tests known to be flaky (recommended for quarantine, a same-revision flip, scattered
    failures): their own failures are theirs, not an incident's."""
    return {
        test
        for (test, _job), history in recorded.tests.items()
        if history.score.recommendation.action == "quarantine"
        or history.score.flips
        or history.score.pattern == "flaky"
    }


async def _occurrences(
    scope: RunScope, failures: list[TestResult], signatures: list[Signature | None], now: datetime
) -> list[Occurrence]:
    """One occurrence per failure with a signature, counted by the run's change (else its commit)."""
    changes = await scope.changes()
    if changes:
        mark = "!" if scope.run.repo.forge == "gitlab" else "#"
        change, change_url = f"{mark}{changes[0].number}", changes[0].html_url or None
    else:
        change, change_url = f"commit {scope.run.sha[:12]}", None
    out = []
    for failure, sig in zip(failures, signatures, strict=True):
        if sig is None:
            continue
        job = scope.job(failure.job)
        attempt = job.attempt if job else scope.run.attempt  # as the history row has it
        out.append(Occurrence(sig.key, change, scope.run.id, attempt, failure.job, failure.test,
                              _finished(job, now), failure.job_url or scope.run.html_url, change_url))  # fmt: skip
    return out


def _finished(job: Job | None, now: datetime) -> datetime:
    """When the job failed (as the forge says), not when flakebot got to it: a backlog of deliveries
    (the service was down for an hour) must not look like a burst. Never later than now."""
    try:
        finished = parse_time(job.completed_at) if job is not None and job.completed_at else None
    except ValueError:
        finished = None
    return min(finished, now) if finished else now


def _set_aside(
    actions: list[IncidentAction],
    scope: RunScope,
    failures: list[TestResult],
    signatures: list[Signature | None],
) -> list[tuple[int, int, str, str]]:
    """The failures to take out of the scores: every occurrence of an incident opened now, and this
    run's failures of an incident that was open already."""
    runs = set()
    for action in actions:
        if action.kind == "open":
            runs |= {(o.run_id, o.attempt, o.job, o.test) for o in action.occurrences}
        elif action.kind == "update":
            for failure, sig in zip(failures, signatures, strict=True):
                if sig is not None and sig.key == action.signature:
                    job = scope.job(failure.job)
                    runs.add(
                        (scope.run.id, job.attempt if job else scope.run.attempt, failure.job, failure.test)
                    )
    return sorted(runs)


async def _rescored(scope: RunScope, recorded: Recorded, touched: list[tuple[str, str]]) -> Recorded:
    """The run's histories, the tests whose failures were set aside scored again."""
    mine = [key for key in touched if key in recorded.tests]
    if not mine:
        return recorded
    run = scope.run
    again = await score_tests(scope.ctx.store, scope.repo, mine, scope.config, branch=run.repo.default_branch,
                              revision=run.sha)  # fmt: skip
    return Recorded(recorded.passes, {**recorded.tests, **again})


async def _apply(scope: RunScope, action: IncidentAction) -> tuple[Incident, str | None]:
    """Carry out one action on the forge and in the store; the incident as it is now, and what was done
    (None for an update: the comment links the incident anyway)."""
    ctx, forge, repo, config = scope.ctx, scope.forge, scope.run.repo, scope.config.incidents
    incident = action.incident
    if scope.dry_run:
        if action.kind == "update":
            return incident, None
        verb = {"open": "opened", "close": "closed"}[action.kind]
        return incident, f"Dry run: would have {verb} an infrastructure incident issue ({action.reason})."
    body = render_body(incident, action.occurrences, config)
    what: str | None = None
    try:
        if action.kind == "open":
            number = incident.number or await _existing_issue(scope, incident.signature)
            if number is None:
                await forge.ensure_labels(repo, [config.label])
                issue = await forge.create_issue(repo, issue_title(incident), body, [config.label])
            else:
                issue = await forge.update_issue(
                    repo, number, body=body, state="open", comment=action.comment
                )
            incident = replace(incident, number=issue.number, url=issue.html_url)
            what = f"Opened infrastructure incident #{issue.number}: {action.reason}."
            ctx.metrics.issues.labels(repo.forge, "incident").inc()
        elif action.kind == "update" and incident.number is not None:
            issue = await forge.update_issue(repo, incident.number, body=body)
            if issue.state == "closed":  # a person closed it: the incident is over for them
                incident = replace(incident, state="closed", closed_at=datetime.now(UTC))
        elif action.kind == "close" and incident.number is not None:
            await forge.update_issue(repo, incident.number, body=body, state="closed", comment=action.comment)
            log.info(
                "%s: infrastructure incident #%s is over (%s)", repo.full_name, incident.number, action.reason
            )
    except ForgeError as exc:  # the incident is kept all the same: the next run tries the issue again
        log.warning("%s: infrastructure incident issue: %s", repo.full_name, exc)
    await ctx.store.save_incident(scope.repo, incident)
    return incident, what


async def _tell_earlier_changes(scope: RunScope, action: IncidentAction, incident: Incident) -> None:
    """The comments of the changes that failed this way before the incident opened say so now."""
    mine = {c.number for c in await scope.changes()}
    by_change: dict[int, set[tuple[int, str, str]]] = defaultdict(set)
    for o in action.occurrences:
        number = int(o.change[1:]) if o.change[:1] in "#!" and o.change[1:].isdigit() else None
        if number is not None and number not in mine:
            by_change[number].add((o.run_id, o.job, o.test))
    link = {"number": incident.number, "url": incident.url, "signature": incident.signature}
    for number, rows in sorted(by_change.items()):
        try:
            await comments.mark_incident(scope.ctx, scope.forge, scope.run.repo, number, rows, link,
                                         verdict_line(incident), scope.config)  # fmt: skip
        except ForgeError as exc:
            log.warning("%s: cannot mark the incident in the comment of %s: %s", scope.repo, number, exc)


async def _existing_issue(scope: RunScope, key: str) -> int | None:
    """The issue of this signature the forge has (the store lost track of it), by its marker."""
    for issue in await scope.forge.find_issues(scope.run.repo, scope.config.incidents.label):
        if marker_key(issue.body) == key:
            return issue.number
    return None


async def close_quiet(scope: RunScope) -> None:
    """Close the incidents that went quiet (a green run has no failures to judge, but time passed)."""
    if not scope.config.may_declare_incidents:
        return
    ctx = scope.ctx
    if not await ctx.store.incidents(scope.repo, "open"):
        return
    async with ctx.lock(f"incidents:{scope.repo}"):
        known = {i.signature: i for i in await ctx.store.incidents(scope.repo, "open")}
        for action in plan({}, {}, known, scope.config.incidents, datetime.now(UTC)).actions:
            await _apply(scope, action)
