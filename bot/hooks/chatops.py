"""``/flake`` commands in pull/merge request comments: who may, and what each command does.

GitHub ``issue_comment`` (created) and GitLab ``Note Hook`` (create) on a pull/merge request reach
:func:`handle`. Comments without a command cost nothing (no API call). The bot's own comments, other
bots' and comments on plain issues are ignored. Only people with write access command (GitHub: the
collaborator permission API, whatever ``author_association`` says; GitLab: Developer or higher);
anyone else gets no action and, once per change, a polite reply. An accepted comment is acknowledged
with a reaction (an award emoji on GitLab), then answered with one reply holding each command's answer.
In dry run (service or repository) nothing is written to the forge; labels are still stored.

The commands use the run path's stage services (``bot/run/``): the same scoring, quarantine, comment and
retry code as a run, and the judgements and runs the store keeps, never the comment's state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from gidgethub import sansio

from bot.chatops import COMMANDS, MAX_COMMANDS, Command, match_test, may_command, parse_commands
from bot.comment import failure_row
from bot.config import RepoConfig
from bot.context import Context
from bot.forge import github_payloads, gitlab_payloads
from bot.forge.base import Forge, ForgeError, RateLimited, Repo, Run
from bot.hooks.router import Router
from bot.jobs import request_backfill, request_retrain
from bot.modelstore import ModelError
from bot.redact import mask_secrets
from bot.render import md_code, md_link, md_text, render, truncate_middle
from bot.retrain import lock_name
from bot.run import comments, quarantine
from bot.run.history import flakiest_score
from bot.run.scope import RunScope, load_repo_config
from bot.run.training import KeptJudgement, judgements_of_change

log = logging.getLogger(__name__)
github, gitlab = Router(), Router()
MAX_REPLY = 60_000  # characters; GitHub takes 65,536 at most
DEFAULT_BACKFILL_DAYS = 30


def _metric_name(command: Command) -> str:
    """A command's name as a metric label: anything not a command is "unknown" (bounded labels)."""
    return command.name if command.name in COMMANDS else "unknown"


@dataclass(frozen=True)
class Asked:
    """A comment with commands, whichever forge it came from."""

    repo: Repo
    change: int  # PR number / MR iid
    note_id: int
    author: str  # login / username
    user: str | int  # what Forge.permission takes: GitHub login, GitLab user id
    body: str


@github.register("issue_comment", action="created")
async def issue_comment(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    comment = github_payloads.comment_from_issue_comment(event.data)
    if comment is None or comment.by_bot:
        return  # a comment on a plain issue, or a bot's (flakebot's own App included)
    note, repo = comment.note, comment.repo
    if not parse_commands(note.body):
        return
    own = await forge.identity(repo)
    if own is not None and own.wrote(note.author):
        return  # flakebot's own comment (with a personal token)
    await handle(ctx, forge, Asked(repo, comment.change_number, note.id, note.author, note.author, note.body))


@gitlab.register("Note Hook")
async def note_hook(event: sansio.Event, ctx: Context, forge: Forge) -> None:
    note = gitlab_payloads.note_from_note_hook(event.data)  # None: an edit, a system note, not on an MR
    if note is None or not parse_commands(note.body):
        return
    own = await forge.identity(note.repo)
    if own is not None and own.wrote(note.author, note.author_id):
        return
    await handle(
        ctx, forge, Asked(note.repo, note.change_number, note.note_id, note.author, note.author_id, note.body)
    )


@dataclass
class Session:
    """One accepted comment being answered."""

    ctx: Context
    forge: Forge
    asked: Asked
    config: RepoConfig
    dry_run: bool

    @property
    def key(self) -> str:
        return self.asked.repo.key

    @property
    def change_word(self) -> str:
        return "pull request" if self.asked.repo.forge == "github" else "merge request"

    async def reply(self, body: str) -> None:
        body = truncate_middle(mask_secrets(body), MAX_REPLY)  # answers quote forge errors and names
        if self.dry_run:
            log.info("dry run: would reply on %s#%s:\n%s", self.asked.repo.full_name, self.asked.change, body)
        else:
            await self.forge.reply(self.asked.repo, self.asked.change, body)


async def handle(ctx: Context, forge: Forge, asked: Asked) -> None:
    """Check the author's permission, then run the comment's commands and answer them."""
    commands = parse_commands(asked.body)
    if not commands:
        return
    key = asked.repo.key
    permission = await forge.permission(asked.repo, asked.user)
    if not may_command(permission):
        log.info("%s#%s: %s (%s) may not command flakebot", key, asked.change, asked.author, permission)
        for command in commands:
            ctx.metrics.commands.labels(asked.repo.forge, _metric_name(command), "denied").inc()
        await _deny(ctx, forge, asked)
        return
    config = await load_repo_config(ctx, forge, asked.repo)
    session = Session(ctx, forge, asked, config, ctx.settings.dry_run or config.dry_run)
    if not session.dry_run:
        await forge.acknowledge(asked.repo, asked.change, asked.note_id)
    answers = []
    for command in commands[:MAX_COMMANDS]:
        try:
            answer = await run_command(session, command)
            outcome = "done" if command.error is None else "error"
        except RateLimited:
            raise  # the whole comment waits in the queue and is answered after the wait
        except ForgeError as exc:  # one command failing does not silence the others
            answer, outcome = f"It could not be done: {md_text(exc)}.", "error"
        ctx.metrics.commands.labels(asked.repo.forge, _metric_name(command), outcome).inc()
        answers.append(f"> {md_code(command.text)}\n\n{answer.strip()}")
    if len(commands) > MAX_COMMANDS:
        answers.append(f"Only the first {MAX_COMMANDS} commands of a comment run; the others were left out.")
    await session.reply("\n\n".join(answers))


async def _deny(ctx: Context, forge: Forge, asked: Asked) -> None:
    """The polite reply, once per person and change."""
    key = asked.repo.key
    if not await ctx.store.remember_reply(key, asked.change, asked.author, "denied"):
        return
    try:
        config = await load_repo_config(ctx, forge, asked.repo)
        body = render("chatops_denied.md.j2", user=asked.author, forge=asked.repo.forge)
        if ctx.settings.dry_run or config.dry_run:
            log.info("dry run: would reply on %s#%s:\n%s", asked.repo.full_name, asked.change, body)
        else:
            await forge.reply(asked.repo, asked.change, body)
    except BaseException:
        await ctx.store.forget_reply(key, asked.change, asked.author, "denied")  # try again next time
        raise


async def run_command(session: Session, command: Command) -> str:
    if command.error is not None:
        return render("chatops_help.md.j2", commands=COMMANDS, error=command.error)
    handlers = {"help": _help, "status": _status, "explain": _explain, "flake": _label, "real": _label,
                "quarantine": _quarantine, "unquarantine": _quarantine, "retry": _retry, "retrain": _retrain,
                "backfill": _backfill}  # fmt: skip
    return await handlers[command.name](session, command)


async def _help(session: Session, command: Command) -> str:
    return render("chatops_help.md.j2", commands=COMMANDS, error=None)


# --- the model ----------------------------------------------------------------------------------------


async def _retrain(session: Session, command: Command) -> str:
    asked = session.asked
    queued = await request_retrain(session.ctx, session.key, forge_repo=asked.repo, change=asked.change,
                                   asked_by=asked.author, dry_run=session.dry_run)  # fmt: skip
    if not queued:
        return (
            "A retrain of this repository is already running: its report will be posted where it was asked."
        )
    return (
        "Retraining this repository's model in the background from its recorded failures and labels. "
        "The trial report follows in a new comment; the new model is used only if it is not worse."
    )


async def _backfill(session: Session, command: Command) -> str:
    """``/flake backfill [days]``: read the repository's CI history in the background (a job)."""
    asked = session.asked
    days = int(command.argument or DEFAULT_BACKFILL_DAYS)
    queued = await request_backfill(session.ctx, asked.repo, days=days, asked_by=asked.author,
                                    change=asked.change, dry_run=session.dry_run)  # fmt: skip
    if not queued:
        return (
            "A backfill of this repository is already running: its report will be posted where it was asked."
        )
    return (
        f"Reading the last {days} days of this repository's CI history in the background (nothing is "
        "written to the repository). Its failures are labelled from their re-runs, and a first model learns "
        "from them if there are enough; the report follows in a new comment."
    )


async def _status(session: Session, command: Command) -> str:
    ctx, key = session.ctx, session.key

    def read() -> dict[str, Any]:
        found = ctx.models.active(key)
        model, scope = None, None
        if found is not None:
            scope, store, version = found
            try:
                model = model_view(store.meta(version))
            except (ModelError, OSError, ValueError) as exc:
                model = model_view({"version": version, "created_at": f"unknown ({exc})"})
        try:
            last = ctx.models.repo_store(key).last_retrain()
        except ModelError:
            last = None
        return {
            "model": model,
            "scope": scope,
            "last": last and {k: last.get(k) for k in ("at", "outcome", "reason")},
        }

    found = await asyncio.to_thread(read)
    running = await ctx.store.lock_holder(lock_name(key), time.time()) is not None
    return render("chatops_status.md.j2", **found, repo_threshold=session.config.threshold, running=running)


def model_view(meta: dict[str, Any]) -> dict[str, Any]:
    """What ``/flake status`` shows of a model version's metadata (``flakebot train`` and retrains
    write different keys: every one is optional here)."""
    trained = meta.get("trained_on") or {}
    trial = meta.get("trial") or None
    if trial is not None:
        figures = ("precision", "recall", "tp", "fp", "fn", "tn", "judged")
        trial = {k: trial.get(k, 0) for k in figures} | {
            "thresholds": trial.get("thresholds") or [],
            "decision": (trial.get("decision") or {}).get("reason"),
            "promoted": bool((trial.get("decision") or {}).get("promoted")),
        }
    dates = trained.get("dates") or []
    return {
        "version": meta.get("version"),
        "created_at": meta.get("created_at"),
        "failures": trained.get("failures"),
        "flake_evidence": trained.get("flake_evidence"),
        "dates": dates if len(dates) == 2 and all(dates) else None,
        "source": trained.get("source"),
        "threshold": ((meta.get("summary") or {}).get("params") or {}).get("threshold", 0.4),
        "trial": trial,
    }


# --- one test of this change ---------------------------------------------------------------------------


def _which(name: str, known: set[str], what: str) -> tuple[str | None, str | None]:
    """The one test ``name`` designates among ``known``, or the answer saying why not."""
    found = match_test(name, known)
    if len(found) == 1:
        return found[0], None
    if not found:
        return None, f"{md_code(name)} matches no test {what}."
    shown = ", ".join(md_code(t) for t in found[:10])
    return None, f"{md_code(name)} matches {len(found)} tests {what}: {shown}. Name one in full."


def _explained(kept: KeptJudgement) -> dict[str, Any]:
    """A kept judgement as the comment shows it, with the maintainer's label over flakebot's verdict."""
    row = failure_row(kept.judgement)
    if kept.label:
        row.update(verdict=kept.label, was=row["verdict"], labelled_by=kept.labelled_by or "a maintainer")
    return row


async def _explain(session: Session, command: Command) -> str:
    ctx, key, asked = session.ctx, session.key, session.asked
    kept = await judgements_of_change(ctx, asked.repo, asked.change)
    name = command.argument or ""
    test, problem = _which(
        name, {k.judgement.test for k in kept}, f"that failed on this {session.change_word}"
    )
    if test is None:
        history = match_test(name, await ctx.store.tests_like(key, name))
        if len(history) != 1:
            return problem or ""
        test = history[0]
    mine = [k for k in kept if k.judgement.test == test]
    newest = {k.judgement.job: k for k in mine}  # oldest first: the newest judgement of each job stays
    labels = []
    for k in mine:
        if k.label:
            labels.append(f"{k.label}, labelled by {k.labelled_by or 'a maintainer'}")
        if k.passed_on_retry:
            labels.append(f"flaky: passed on a retry of attempt {k.attempt}")
        if k.merged:
            labels.append("flake evidence: its commit was merged")
    scores = [s for s in await ctx.store.test_scores(key, test) if s["score"]]
    override = (await ctx.store.overrides(key)).get(test)
    return render("chatops_explain.md.j2", test=test, rows=[_explained(k) for k in newest.values()],
                  labels=list(dict.fromkeys(labels)), scores=scores, override=override,
                  change_word=session.change_word)  # fmt: skip


async def _label(session: Session, command: Command) -> str:
    """``/flake flake|real <test>``: the ground truth for retraining, and the comment corrected."""
    ctx, key, asked = session.ctx, session.key, session.asked
    kept = await judgements_of_change(ctx, asked.repo, asked.change)
    test, problem = _which(
        command.argument or "", {k.judgement.test for k in kept}, f"that failed on this {session.change_word}"
    )
    if test is None:
        return problem or ""
    count = await ctx.store.label_by_human(key, asked.change, test, command.name, asked.author)
    corrected = await comments.relabel(ctx, session.forge, asked.repo, asked.change, test, command.name,
                                       asked.author, session.config, session.dry_run)  # fmt: skip
    what = "a flake" if command.name == "flake" else "a real failure"
    text = (
        f"Recorded {md_code(test)} as {what} on this {session.change_word} ({count} failure(s)); "
        "the next retrain learns from it."
    )
    return text + (" The comment is corrected." if corrected else "")


# --- quarantine ------------------------------------------------------------------------------------------


async def _quarantine(session: Session, command: Command) -> str:
    """``/flake quarantine|unquarantine <test>``: the issue now, and an override the lifecycle keeps."""
    ctx, key, asked, config = session.ctx, session.key, session.asked, session.config
    if not config.may_quarantine:
        why = config.safe_reason if config.safe_mode else "quarantine is off"
        return f"Nothing done: {why} (`.github/flakebot.yml` / `.flakebot.yml`)."
    name = command.argument or ""
    test, problem = _which(name, set(await ctx.store.tests_like(key, name)), "in this repository's history")
    if test is None:
        return problem or ""
    score = await flakiest_score(ctx, asked.repo, test, config)
    wanted = await quarantine.candidate(ctx, asked.repo, test, score, config.quarantine, command.name,  # type: ignore[arg-type]
                                        asked.author)  # fmt: skip
    done = await quarantine.override(ctx, session.forge, asked.repo, config, wanted, session.dry_run)
    if command.name == "unquarantine":
        for row in await ctx.store.quarantined(key):
            if row["test"] == test:  # recorded open without an open issue on the forge
                await ctx.store.set_quarantine(
                    key, test, number=row["number"], url=row["url"], state="closed"
                )
        days = config.quarantine.expire_days
        head = f"Unquarantined {md_code(test)}: flakebot will not quarantine it again by itself" + (
            f" for {days:g} days." if days else "."
        )
    else:
        head = (
            f"Quarantined {md_code(test)} in every job: flakebot will not lift it because the test passes"
            + (
                f"; it expires {config.quarantine.expire_days:g} days after the test's last failure or this command."
                if config.quarantine.expire_days
                else "."
            )
        )
    return head + "".join(f"\n- {sentence}" for sentence in done)


# --- retry -------------------------------------------------------------------------------------------------


async def _retry(session: Session, command: Command) -> str:
    """``/flake retry``: the failed jobs of every failed run of the change's latest commit, real failures
    included (a maintainer decided), within the repository's retry budget."""
    ctx, asked, config = session.ctx, session.asked, session.config
    failed = [run for run in await ctx.store.change_runs(session.key, asked.change) if not run.passed]
    if not failed:
        return f"flakebot has recorded no failed run of this {session.change_word}'s latest commit."
    lines = []
    for stored in failed:  # newest first
        run = Run(repo=asked.repo, id=stored.run_id, sha=stored.sha, branch="", attempt=stored.attempt,
                  conclusion="failure", html_url=stored.url, name=stored.name, event=stored.event)  # fmt: skip
        where = (
            md_link(md_text(stored.name), run.html_url)
            if stored.name
            else md_link(md_code(run.id), run.html_url)
        )
        scope = await RunScope.open(ctx, session.forge, run, config)
        if not scope.failed_jobs:
            lines.append(f"{where}: no failed job to re-run (it may be running again already).")
        elif scope.attempt >= config.max_attempts:
            lines.append(
                f"{where}: this was attempt {scope.attempt} of {config.max_attempts}: the retry budget is spent."
            )
        elif session.dry_run:
            lines.append(f"{where}: dry run: would have re-run {len(scope.failed_jobs)} failed job(s).")
        else:
            try:
                made = await scope.rerun_failed_jobs()
            except RateLimited:
                raise
            except ForgeError as exc:
                lines.append(f"{where}: could not re-run the failed jobs: {md_text(exc)}.")
                continue
            if not made:
                lines.append(f"{where}: attempt {scope.attempt} was re-run already; it is not asked twice.")
                continue
            lines.append(f"{where}: re-running {len(scope.failed_jobs)} failed job(s), "
                         f"attempt {scope.attempt + 1} of {config.max_attempts}.")  # fmt: skip
    return "\n".join(f"- {line}" for line in lines)
