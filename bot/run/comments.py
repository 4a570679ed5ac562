"""Stage 5, comments: the one comment flakebot keeps on each change of the run, edited in place.

The comment has a section per workflow (``bot/comment.py`` renders it; its sections are kept in the
store as the change's state, so a run of one workflow never erases what another's said). A failed run
writes its section; a later green attempt of the same commit marks it passed; a maintainer's label
(``/flake flake|real``) corrects its rows. Only changes whose head is the run's commit are written: a
change that moved on has a newer run to speak for it.

Beside the comment, each change's judged runs are recorded (``Store.save_change_run``): the system of
record ``/flake retry`` reads, never the comment's state.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from bot.comment import MARKER, passed_section, render_comment, summary_line
from bot.config import RepoConfig
from bot.context import Context
from bot.forge.base import Change, Forge, Repo, Run
from bot.run.scope import RunScope
from bot.store import ChangeRun

log = logging.getLogger(__name__)

Section = dict[str, Any]


async def post(scope: RunScope, section: Section) -> None:
    """Put a failed run's section (``bot.comment.run_section``) into the comment of each change."""
    await _write(scope, lambda previous: section, passed=False)


async def mark_passed(scope: RunScope, actions: list[str]) -> None:
    """A green attempt of a commit: the section of its workflow, where one failed before, says it passed."""

    def passed(previous: Mapping[str, Any] | None) -> Section | None:
        if previous is None or previous.get("passed"):
            return None
        return passed_section(previous, _shown(scope), actions)

    await _write(scope, passed, passed=True)


def _shown(scope: RunScope) -> Run:
    """The run with the attempt that ran (GitLab has attempts per job only)."""
    return replace(scope.run, attempt=scope.attempt)


async def _write(
    scope: RunScope, new: Callable[[Mapping[str, Any] | None], Section | None], *, passed: bool
) -> None:
    ctx, repo, run = scope.ctx, scope.repo, _shown(scope)
    name = run.name or f"run {run.id}"
    for change in await scope.changes():
        if change.head_sha and change.head_sha != run.sha:
            continue  # the change moved on: this run is about an older commit
        async with ctx.lock(f"change:{repo}:{change.number}"):
            state = await ctx.store.change_state(repo, change.number)
            sections = {k: v for k, v in state.get("sections", {}).items() if v.get("sha") == run.sha}
            section = new(sections.get(name))
            if section is not None:
                sections[name] = section
                await _publish(ctx, scope.forge, run.repo, change, sections, scope.config, scope.dry_run)
                await ctx.store.save_change_state(repo, change.number, {"sections": sections})
            judged = ChangeRun(name, run.id, run.sha, run.attempt, run.html_url, run.event, passed)
            await _record_run(ctx, repo, change.number, judged)


async def _record_run(ctx: Context, repo: str, number: int, run: ChangeRun) -> None:
    """The change's judged run, for ``/flake retry``: a failed one as it is, a green one only where a
    failed run of its workflow and commit was recorded (that one passed now)."""
    if run.passed:
        runs = await ctx.store.change_runs(repo, number)
        if not any(r.name == run.name and r.sha == run.sha and not r.passed for r in runs):
            return
    await ctx.store.save_change_run(repo, number, run)


async def relabel(
    ctx: Context, forge: Forge, repo: Repo, number: int, test: str, label: str, who: str, config: RepoConfig,
    dry_run: bool,
) -> bool:  # fmt: skip
    """A maintainer's label of a test (``/flake flake|real``) shown in the change's comment: its rows say
    the label and what flakebot said. False when the comment has no row of that test."""

    def labelled(section: Section, row: dict[str, Any]) -> bool:
        if row["test"] != test:
            return False
        row.setdefault("was", row["verdict"])
        row.update(verdict=label, labelled_by=who)
        return True

    return await _rewrite_rows(ctx, forge, repo, number, labelled, config, dry_run)


async def mark_incident(
    ctx: Context, forge: Forge, repo: Repo, number: int, failures: set[tuple[int, str, str]],
    incident: Mapping[str, Any], text: str, config: RepoConfig,
) -> bool:  # fmt: skip
    """An incident opened after the change's comment was written: the rows of its ``failures`` (run id,
    job, test) say "incident" with a link, as a comment written now would. False when none was shown."""

    def marked(section: Section, row: dict[str, Any]) -> bool:
        if (section.get("run_id"), row.get("job"), row["test"]) not in failures or row[
            "verdict"
        ] == "incident":
            return False
        row.setdefault("was", row["verdict"])
        row.update(verdict="incident", log=text, incident=dict(incident))
        return True

    return await _rewrite_rows(ctx, forge, repo, number, marked, config, False)


async def _rewrite_rows(
    ctx: Context, forge: Forge, repo: Repo, number: int, change_row: Callable[[Section, dict[str, Any]], bool],
    config: RepoConfig, dry_run: bool,
) -> bool:  # fmt: skip
    """Change rows of the change's comment in place (``change_row`` says whether it changed one), then
    publish it again with the sections' summaries counted anew. False when no row changed."""
    async with ctx.lock(f"change:{repo.key}:{number}"):
        state = await ctx.store.change_state(repo.key, number)
        sections = state.get("sections") or {}
        changed = False
        for section in sections.values():
            rows = section.get("failures") or []
            for row in rows:
                changed = change_row(section, row) or changed
            if rows:
                section["summary"] = summary_line(Counter(row["verdict"] for row in rows))
        if not changed:
            return False
        change = Change(number=number, html_url="", head_sha="", head_ref="")
        await _publish(ctx, forge, repo, change, sections, config, dry_run)
        await ctx.store.save_change_state(repo.key, number, {**state, "sections": sections})
        return True


async def _publish(
    ctx: Context, forge: Forge, repo: Repo, change: Change, sections: Mapping[str, Section], config: RepoConfig,
    dry_run: bool,
) -> None:  # fmt: skip
    body = render_comment(sections, config_error=config.error)
    if dry_run:
        log.info("dry run: would write this comment on %s#%s:\n%s", repo.full_name, change.number, body)
        return
    await forge.upsert_note(repo, change, MARKER, body)
    ctx.metrics.comments.labels(repo.forge).inc()
