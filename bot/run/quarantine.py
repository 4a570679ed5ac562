"""Stage 4, quarantine: open, update, reopen or close the quarantine issues of the tests a run touched,
and carry out a maintainer's ``/flake quarantine|unquarantine``.

What to do is planned by the pure ``bot.quarantine`` (``plan_quarantine``, ``plan_override``); this
stage gathers the plans' inputs (each test's flakiest score, its recent failures, the issues carrying
the label, the overrides) and carries out their actions on the forge and in the store. One repository
at a time (a lock in the store), so two runs finishing together cannot both open an issue for the same
test, nor both take the last place under ``max_open``. Every function returns what was done, as
sentences for the comment or the reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from bot.config import RepoConfig
from bot.context import Context
from bot.forge.base import Forge, ForgeError, Repo
from bot.quarantine import (
    Action,
    Candidate,
    FailureLink,
    Override,
    QuarantineConfig,
    plan_override,
    plan_quarantine,
)
from bot.render import md_code
from bot.run.scope import RunScope
from bot.scoring import FlakeScore

log = logging.getLogger(__name__)


async def update(scope: RunScope, scores: Mapping[tuple[str, str], FlakeScore]) -> list[str]:
    """Bring the quarantine issues of the tests this run scored (by test and job) in line with their
    history. Returns what was done."""
    if not scope.config.may_quarantine:
        return []
    async with scope.ctx.lock(f"quarantine:{scope.repo}"):
        return await _update(scope, per_test(scores))


def per_test(scores: Mapping[tuple[str, str], FlakeScore]) -> dict[str, FlakeScore]:
    """One score per test (one issue per test): its flakiest job's, counted stable only as long as it
    is stable in every job (the fewest runs since a failure)."""
    best: dict[str, FlakeScore] = {}
    streak: dict[str, int] = {}
    for (test, _job), score in scores.items():
        if test not in best or score.score > best[test].score:
            best[test] = score
        streak[test] = min(streak.get(test, score.runs_since_failure), score.runs_since_failure)
    return {test: replace(score, runs_since_failure=streak[test]) for test, score in best.items()}


async def _update(scope: RunScope, best: dict[str, FlakeScore]) -> list[str]:
    ctx, forge, repo, config = scope.ctx, scope.forge, scope.run.repo, scope.config
    stored = {q["test"]: q for q in await ctx.store.quarantined(repo.key)}
    if not stored and not any(s.recommendation.action == "quarantine" for s in best.values()):
        return []
    overrides = await ctx.store.overrides(repo.key)  # a maintainer's /flake quarantine|unquarantine holds
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
    relevant = {t: s for t, s in best.items() if s.recommendation.action == "quarantine" or t in stored}
    if not relevant:
        return []
    qconfig = await _with_own_login(forge, repo, config.quarantine)
    candidates = []
    for test, score in relevant.items():
        override = overrides.get(test, {})
        candidates.append(
            await candidate(ctx, repo, test, score, qconfig, override.get("override"), override.get("by"))
        )
    done = []
    for action in plan_quarantine(candidates, issues, qconfig, datetime.now(UTC), config.scoring):
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
                                               state="open")  # fmt: skip
            continue
        if scope.dry_run:
            done.append(f"Dry run: would have {_describe(action)}.")
        else:
            done.append(await apply(ctx, forge, repo, action))
    return done


async def candidate(
    ctx: Context,
    repo: Repo,
    test: str,
    score: FlakeScore,
    config: QuarantineConfig,
    override: Override | None = None,
    override_by: str | None = None,
) -> Candidate:
    """A test with its score and its recent failures (what the plans and the issue body need)."""
    failures = await ctx.store.recent_failures(repo.key, test, config.max_failures_listed)
    links = [
        FailureLink(url=f.url, created_at=f.created_at, revision=f.revision, message=f.message)
        for f in failures
    ]
    return Candidate(test=test, score=score, failures=links, override=override, override_by=override_by)


async def override(
    ctx: Context, forge: Forge, repo: Repo, config: RepoConfig, wanted: Candidate, dry_run: bool
) -> list[str]:
    """A maintainer's override (``wanted.override``) carried out at once, then recorded for the lifecycle
    to respect. Returns what was done."""
    async with ctx.lock(f"quarantine:{repo.key}"):  # the lifecycle of a run takes the same lock
        issues = await forge.find_issues(repo, config.quarantine.label)
        done = []
        for action in plan_override(wanted, issues, config.quarantine, config.scoring):
            if action.kind == "skip":
                continue
            if dry_run:
                verb = {"open": "opened or reopened", "update": "updated", "close": "closed"}[action.kind]
                done.append(f"Dry run: would have {verb} the quarantine issue of {md_code(wanted.test)}.")
            else:
                done.append(await apply(ctx, forge, repo, action))
        await ctx.store.set_override(repo.key, wanted.test, wanted.override, wanted.override_by)
    return done


async def apply(ctx: Context, forge: Forge, repo: Repo, action: Action) -> str:
    """Carry out one planned action (not ``skip``) on the forge and record it; returns what was done."""
    what = _describe(action)
    if action.kind == "open" and action.number is None:
        await forge.ensure_labels(repo, list(action.labels))
        issue = await forge.create_issue(repo, action.title or "", action.body or "", list(action.labels))
        await ctx.store.set_quarantine(
            repo.key, action.test, number=issue.number, url=issue.html_url, state="open"
        )
        what = f"opened quarantine issue #{issue.number} for `{action.test}`"
    elif action.kind in ("open", "update"):
        issue = await forge.update_issue(repo, action.number or 0, body=action.body,
                                         state="open" if action.kind == "open" else None, comment=action.comment)  # fmt: skip
        await ctx.store.set_quarantine(
            repo.key, action.test, number=issue.number, url=issue.html_url, state="open"
        )
    elif action.kind == "close":
        issue = await forge.update_issue(repo, action.number or 0, state="closed", comment=action.comment)
        if not action.reason.startswith("duplicate"):
            await ctx.store.set_quarantine(repo.key, action.test, number=issue.number, url=issue.html_url,
                                           state="closed")  # fmt: skip
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
