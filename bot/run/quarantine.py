"""Stage 4, quarantine: open, update, reopen or close the quarantine issues of the tests a run touched,
and carry out a maintainer's ``/flake quarantine|unquarantine``.

What to do is planned by the pure ``bot.quarantine`` (``plan_quarantine``, ``plan_override``); this
stage gathers the plans' inputs (each test's score in each of its jobs, its recent failures, the issues
carrying the label, the overrides, what the store remembers of its quarantine: its jobs and expiry) and
carries out their actions on the forge and in the store. An issue about to be opened is planned again
with the code owners of its test's file (``bot.codeowners``, the repository's CODEOWNERS read through
the forge), and assigned to them. One repository at a time (a lock in the store), so two runs
finishing together cannot both open an issue for the same test, nor both take the last place under
``max_open``. Every function returns what was done, as sentences for the comment or the reply.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.codeowners import PATHS, Owners, code_owners
from bot.config import RepoConfig
from bot.context import Context
from bot.forge.base import Forge, ForgeError, Repo
from bot.quarantine import (
    Action,
    Candidate,
    FailureLink,
    Override,
    QuarantineConfig,
    override_expired,
    plan_override,
    plan_quarantine,
)
from bot.render import md_code
from bot.run.history import score_tests
from bot.run.scope import RunScope
from bot.scoring import FlakeScore, parse_time

log = logging.getLogger(__name__)


async def update(scope: RunScope, scores: Mapping[tuple[str, str], FlakeScore]) -> list[str]:
    """Bring the quarantine issues of the tests this run scored (by test and job) in line with their
    history, and close those whose quarantine expired. Returns what was done."""
    if not scope.config.may_quarantine:
        return []
    async with scope.ctx.lock(f"quarantine:{scope.repo}"):
        return await _update(scope, per_test(scores))


def per_test(scores: Mapping[tuple[str, str], FlakeScore]) -> dict[str, dict[str, FlakeScore]]:
    """The scores of each test, by job (one issue per test; its scope is a set of jobs)."""
    tests: dict[str, dict[str, FlakeScore]] = defaultdict(dict)
    for (test, job), score in scores.items():
        tests[test][job] = score
    return dict(tests)


def _expired(row: Mapping[str, object], now: datetime, config: QuarantineConfig) -> bool:
    """Whether a stored quarantine may have expired (the planner decides, from its evidence): its
    stored expiry passed, or, recorded before expiries were, it began more than ``expire_days`` ago."""
    expires, since = row.get("expires_at"), row.get("since")
    if isinstance(expires, str):
        return (parse_time(expires) or now) <= now
    if not config.expire_days or not isinstance(since, str):
        return False
    return (parse_time(since) or now) + timedelta(days=config.expire_days) <= now


async def _update(scope: RunScope, scored: dict[str, dict[str, FlakeScore]]) -> list[str]:
    ctx, forge, repo, config = scope.ctx, scope.forge, scope.run.repo, scope.config
    now = datetime.now(UTC)
    stored = {q["test"]: q for q in await ctx.store.quarantined(repo.key)}
    wanted = {
        t for t, jobs in scored.items() if any(s.recommendation.action == "quarantine" for s in jobs.values())
    }
    if not stored and not wanted:
        return []
    overrides = await _live_overrides(ctx, repo, config.quarantine, now, dry_run=scope.dry_run)
    issues = await forge.find_issues(repo, config.quarantine.label)
    by_number = {issue.number: issue for issue in issues}
    if not scope.dry_run:
        # a quarantine issue closed by hand (or gone) ends the quarantine, whether its test ran or not
        for test, row in list(stored.items()):
            issue = by_number.get(row["number"]) if row["number"] is not None else None
            if row["number"] is not None and (issue is None or issue.state == "closed"):
                await ctx.store.set_quarantine(
                    repo.key, test, number=row["number"], url=row["url"], state="closed"
                )
                stored.pop(test)
    # the tests of this run to quarantine or quarantined, and any quarantine that expired meanwhile
    expired = {t for t, r in stored.items() if _expired(r, now, config.quarantine)}
    relevant = sorted(wanted | (stored.keys() & scored.keys()) | expired)
    if not relevant:
        return []
    qconfig = await _with_own_login(forge, repo, config.quarantine)
    candidates = []
    for test in relevant:
        jobs = await job_scores(ctx, repo, test, config, scored.get(test, {}))
        override = overrides.get(test, {})
        candidates.append(await candidate(ctx, repo, test, jobs, qconfig, override.get("override"), override.get("by"),
                                          stored=stored.get(test), override_at=override.get("at")))  # fmt: skip
    actions = plan_quarantine(candidates, issues, qconfig, now, config.scoring)
    if qconfig.assign_owners and (opening := {a.test for a in actions if a.kind == "open"}):
        owners = await owners_of(forge, repo, opening)
        if owners:  # planned again with the code owners, to assign them and name them in the issue
            candidates = [replace(c, owners=owners.get(c.test)) for c in candidates]
            actions = plan_quarantine(candidates, issues, qconfig, now, config.scoring)
    done = []
    for action in actions:
        if action.kind == "skip":
            issue = by_number.get(action.number) if action.number is not None else None
            if (
                not scope.dry_run
                and issue is not None
                and issue.state == "open"
                and action.test not in stored
            ):
                # its issue is open but the store lost track (a crash right after opening it)
                await ctx.store.set_quarantine(repo.key, action.test, number=issue.number, url=issue.html_url,
                                               state="open", jobs=action.scope, expires_at=_iso(action))  # fmt: skip
            continue
        if scope.dry_run:
            done.append(f"Dry run: would have {_describe(action)}.")
        else:
            done.append(await apply(ctx, forge, repo, action))
    return done


async def _live_overrides(
    ctx: Context, repo: Repo, config: QuarantineConfig, now: datetime, *, dry_run: bool
) -> dict[str, dict[str, object]]:
    """The maintainers' overrides still in force: an unquarantine lasts ``expire_days`` (then the
    lifecycle may quarantine the test again); a quarantine expires with its issue (``plan_quarantine``)."""
    overrides = await ctx.store.overrides(repo.key)
    for test, override in list(overrides.items()):
        if override["override"] == "unquarantine" and override_expired(override.get("at"), config, now):
            if not dry_run:
                await ctx.store.set_override(repo.key, test, None, None)
            overrides.pop(test)
    return overrides


async def job_scores(
    ctx: Context, repo: Repo, test: str, config: RepoConfig, known: Mapping[str, FlakeScore]
) -> dict[str, FlakeScore]:
    """The test's score in every job it ran in: ``known`` (this run's), the others scored now from
    their stored history (not saved)."""
    jobs = [row["job"] for row in await ctx.store.test_scores(repo.key, test) if row["job"] not in known]
    scored = await score_tests(ctx.store, repo.key, [(test, job) for job in jobs], config,
                               branch=repo.default_branch, save=False)  # fmt: skip
    return {**{job: history.score for (_, job), history in scored.items()}, **known}


async def owners_of(forge: Forge, repo: Repo, tests: Iterable[str]) -> dict[str, Owners]:
    """The code owners of each test's file, by the repository's CODEOWNERS (the first of the forge's
    places that exists); {} without one, or when it cannot be read."""
    for path in PATHS[repo.forge]:
        try:
            text = await forge.read_file(repo, path)
        except ForgeError as exc:
            log.warning(
                "%s: cannot read %s (%s): quarantine issues are not assigned", repo.full_name, path, exc
            )
            return {}
        if text is not None:
            found = {test: code_owners(text, path, test, repo.forge) for test in tests}
            return {test: owners for test, owners in found.items() if owners}
    return {}


async def candidate(
    ctx: Context,
    repo: Repo,
    test: str,
    score: FlakeScore | Mapping[str, FlakeScore],
    config: QuarantineConfig,
    override: Override | None = None,
    override_by: str | None = None,
    *,
    stored: Mapping[str, object] | None = None,
    override_at: object = None,
) -> Candidate:
    """A test with its score (by job, or its flakiest), its recent failures and what the store remembers
    of its quarantine (``stored``: a ``Store.quarantined()`` row): what the plans and the issue body need."""
    failures = await ctx.store.recent_failures(repo.key, test, config.max_failures_listed)
    links = [
        FailureLink(url=f.url, created_at=f.created_at, revision=f.revision, message=f.message, job=f.job)
        for f in failures
    ]
    jobs = dict(score) if isinstance(score, Mapping) else {}
    flakiest = max(jobs.values(), key=lambda s: s.score) if jobs else score
    stored = stored or {}
    scope = stored.get("jobs")
    renewals = [stored.get("since"), override_at if override == "quarantine" else None]
    renewed = max((r for r in renewals if isinstance(r, str)), key=lambda r: parse_time(r), default=None)
    expires = stored.get("expires_at")
    return Candidate(test=test, score=flakiest, failures=links, override=override, override_by=override_by,  # type: ignore[arg-type]
                     jobs=jobs, scope=tuple(scope) if isinstance(scope, list) else None, renewed_at=renewed,
                     expires_at=expires if isinstance(expires, str) else None)  # fmt: skip


async def override(
    ctx: Context, forge: Forge, repo: Repo, config: RepoConfig, wanted: Candidate, dry_run: bool
) -> list[str]:
    """A maintainer's override (``wanted.override``) carried out at once, then recorded for the lifecycle
    to respect (its time renews it). Returns what was done."""
    now = datetime.now(UTC)
    wanted = replace(wanted, renewed_at=now.isoformat())
    async with ctx.lock(f"quarantine:{repo.key}"):  # the lifecycle of a run takes the same lock
        issues = await forge.find_issues(repo, config.quarantine.label)
        actions = plan_override(wanted, issues, config.quarantine, config.scoring)
        opening = config.quarantine.assign_owners and any(a.kind == "open" for a in actions)
        if opening and (owners := (await owners_of(forge, repo, [wanted.test])).get(wanted.test)):
            actions = plan_override(replace(wanted, owners=owners), issues, config.quarantine, config.scoring)
        done = []
        for action in actions:
            if action.kind == "skip":
                continue
            if dry_run:
                verb = {"open": "opened or reopened", "update": "updated", "close": "closed"}[action.kind]
                done.append(f"Dry run: would have {verb} the quarantine issue of {md_code(wanted.test)}.")
            else:
                done.append(await apply(ctx, forge, repo, action))
        await ctx.store.set_override(repo.key, wanted.test, wanted.override, wanted.override_by)
    return done


def _iso(action: Action) -> str | None:
    return action.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if action.expires_at else None


async def apply(ctx: Context, forge: Forge, repo: Repo, action: Action) -> str:
    """Carry out one planned action (not ``skip``) on the forge and record it; returns what was done."""
    what = _describe(action)
    quarantine = {"jobs": action.scope, "expires_at": _iso(action)}
    if action.kind == "open" and action.number is None:
        await forge.ensure_labels(repo, list(action.labels))
        issue = await forge.create_issue(repo, action.title or "", action.body or "", list(action.labels))
        await ctx.store.set_quarantine(
            repo.key, action.test, number=issue.number, url=issue.html_url, state="open", **quarantine
        )
        what = f"opened quarantine issue #{issue.number} for `{action.test}`"
    elif action.kind in ("open", "update"):
        issue = await forge.update_issue(repo, action.number or 0, body=action.body,
                                         state="open" if action.kind == "open" else None, comment=action.comment)  # fmt: skip
        await ctx.store.set_quarantine(
            repo.key, action.test, number=issue.number, url=issue.html_url, state="open", **quarantine
        )
    elif action.kind == "close":
        issue = await forge.update_issue(repo, action.number or 0, state="closed", comment=action.comment)
        if not action.reason.startswith("duplicate"):
            await ctx.store.set_quarantine(repo.key, action.test, number=issue.number, url=issue.html_url,
                                           state="closed")  # fmt: skip
        if action.expired:  # a maintainer's quarantine ends with it
            overrides = await ctx.store.overrides(repo.key)
            if overrides.get(action.test, {}).get("override") == "quarantine":
                await ctx.store.set_override(repo.key, action.test, None, None)
    if action.kind == "open" and action.assignees:
        try:
            assigned = await forge.assign_issue(repo, issue.number, list(action.assignees))
        except ForgeError as exc:  # the issue is there; who owns it is said in its body
            log.warning("%s#%s: cannot assign the code owners: %s", repo.full_name, issue.number, exc)
            assigned = []
        if assigned:
            what += f", assigned to {', '.join(assigned)}"
    if action.kind in ("open", "update") and action.scope:
        what += f" (in {', '.join(f'`{job}`' for job in action.scope)})"
    ctx.metrics.issues.labels(repo.forge, action.kind).inc()
    return what[0].upper() + what[1:] + "."


def _describe(action: Action) -> str:
    if action.kind == "open":
        if action.number:
            return f"reopened quarantine issue #{action.number} for `{action.test}`"
        return f"opened a quarantine issue for `{action.test}`"
    if action.kind == "update":
        return f"updated quarantine issue #{action.number} for `{action.test}`"
    return f"closed quarantine issue #{action.number} for `{action.test}` ({action.reason})"


async def _with_own_login(forge: Forge, repo: Repo, config: QuarantineConfig) -> QuarantineConfig:
    """The settings with flakebot's own login, to tell its own issue closings from a human's."""
    try:
        own = await forge.identity(repo)
    except ForgeError as exc:
        log.warning("cannot tell the bot's own login: %s", exc)
        return config
    return replace(config, bot_logins=frozenset({own.login})) if own else config
