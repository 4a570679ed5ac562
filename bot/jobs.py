"""flakebot's own jobs in the durable queue: retraining a repository's model, reading its history.

``/flake retrain`` and the schedule (``FLAKEBOT_RETRAIN_EVERY``) take the repository's retrain lock and
store a job (forge ``"internal"``, event ``"retrain"``) in the same queue as the webhooks; a queue of its
own (one worker, bot/web.py) runs it, so a retrain never holds up webhook handling. The CPU work runs
in a child process, ``flakebot retrain --json`` under the job's lock: the service's event loop and
memory stay free, the process can be killed on shutdown or time-out, and a crash of the service
leaves the job in the queue to be resumed. Whatever happens to the child, the active model changes
only when a finished retrain promotes its candidate (bot/retrain.py).

A **backfill** (``flakebot backfill``, docs/backfill.md) is a job of the same queue, event ``"backfill"``:
queued the first time the service sees a repository without model or history, or by ``/flake backfill``.
Its child is ``flakebot backfill --json``, run at a lower CPU priority with the forge credentials it
needs (and no webhook secret); it is resumable, so a job stopped by a time-out or a shutdown continues
where it stopped when the queue tries it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bot.config import Settings
from bot.context import Context
from bot.forge.base import Forge, ForgeError, Repo
from bot.modelstore import ModelError
from bot.queue import PermanentError
from bot.redact import SECRET_ENV_VARS, mask_secrets
from bot.render import render
from bot.retrain import LOCK_TTL, lock_name
from bot.scoring import parse_time
from bot.store import Delivery

log = logging.getLogger(__name__)

INTERNAL = "internal"  # the ``forge`` of flakebot's own jobs in the queue
RETRAIN = "retrain"
BACKFILL = "backfill"
BACKFILL_NICE = 10  # the backfill child's CPU priority is lowered by this much: the webhooks come first


async def request_retrain(
    ctx: Context,
    repo: str,
    *,
    forge_repo: Repo | None = None,
    change: int | None = None,
    asked_by: str | None = None,
    dry_run: bool = False,
) -> bool:
    """Queue a retrain of ``repo`` unless one is queued or running (False). The report goes to the
    change it was asked on, if any."""
    owner = f"retrain:{repo}:{uuid.uuid4().hex[:12]}"
    if not await ctx.store.try_lock(lock_name(repo), owner, time.time(), LOCK_TTL):
        return False
    payload = {"repo": repo, "owner": owner, "forge_repo": asdict(forge_repo) if forge_repo else None,
               "change": change, "asked_by": asked_by, "dry_run": dry_run}  # fmt: skip
    await ctx.store.enqueue(INTERNAL, owner, RETRAIN, json.dumps(payload).encode())
    log.info("retrain of %s queued%s", repo, f" (asked by {asked_by})" if asked_by else "")
    return True


def retrain_command(settings: Settings, repo: str, owner: str) -> list[str]:
    """The child process that retrains (the same code as ``flakebot retrain``)."""
    return [sys.executable, "-m", "bot", "retrain", "--repo", repo, "--data-dir", str(settings.data_dir),
            "--model-dir", str(settings.model_dir), "--lock-owner", owner, "--json", "--quiet"]  # fmt: skip


def _failed(repo: str, reason: str) -> dict[str, Any]:
    return {"repo": repo, "outcome": "failed", "reason": reason, "version": None, "counts": None, "notes": [],
            "candidate": None, "current": None, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip


def child_env(settings: Settings, secrets: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """A child process's environment: the service's without its secrets, but with the service's
    database (``settings.database_url``: the child writes where the service reads, whether or not the
    URL came from this environment) and the ``secrets`` it needs, if any."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
    wanted = {"FLAKEBOT_DATABASE_URL": settings.database_url, **(secrets or {})}
    env.update({k: v for k, v in wanted.items() if v})
    return env


async def run_retrain_process(settings: Settings, repo: str, owner: str) -> dict[str, Any]:
    """Run the retrain in a child process and return its outcome; ``failed`` when the child fails,
    is killed or times out. Cancelling kills the child (the job is resumed later)."""
    proc = await asyncio.create_subprocess_exec(
        *retrain_command(settings, repo, owner),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(settings),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), settings.retrain_timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return _failed(repo, f"it took longer than {settings.retrain_timeout:.0f} s and was stopped")
    except asyncio.CancelledError:
        proc.kill()
        raise
    if proc.returncode != 0:
        return _failed(repo, _why(proc.returncode, err))
    try:
        result = json.loads(out)
    except ValueError:
        return _failed(repo, "the retrain process printed no result")
    return result if isinstance(result, dict) else _failed(repo, "the retrain process printed no result")


def _why(returncode: int | None, err: bytes) -> str:
    """Why a child process failed: the last line it wrote to stderr (click's ``Error: ...``), masked."""
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    why = lines[-1].removeprefix("Error: ") if lines else f"exit status {returncode}"
    return mask_secrets(why[:500])


async def handle_job(ctx: Context, forges: Mapping[str, Forge], delivery: Delivery) -> None:
    """Process one internal job (the jobs queue's handler)."""
    if delivery.event == BACKFILL:
        await handle_backfill(ctx, forges, delivery)
        return
    if delivery.event != RETRAIN:
        raise PermanentError(f"unknown internal job {delivery.event!r}")
    try:
        payload = json.loads(delivery.payload)
        repo, owner = payload["repo"], payload["owner"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"malformed retrain job: {exc}") from exc
    if not await ctx.store.try_lock(lock_name(repo), owner, time.time(), LOCK_TTL):
        result = _failed(repo, "another retrain of this repository (`flakebot retrain`?) was running")
        result["outcome"] = "refused"
    else:
        result = await run_retrain_process(ctx.settings, repo, owner)  # a cancel leaves the lock held
        await ctx.store.unlock(lock_name(repo), owner)
    if result["outcome"] == "failed":
        log.error("retrain of %s failed: %s", repo, result["reason"])
        try:
            await asyncio.to_thread(ctx.models.repo_store(repo).note_retrain, result)
        except (ModelError, OSError) as exc:
            log.warning("cannot record the failed retrain of %s: %s", repo, exc)
    ctx.metrics.retrains.labels(result["outcome"]).inc()
    if "active" not in result:
        result["active"] = await asyncio.to_thread(_active, ctx, repo)
    await _report(ctx, forges, payload, result)


def _active(ctx: Context, repo: str) -> dict[str, Any] | None:
    found = ctx.models.active(repo)
    if found is None:
        return None
    scope, store, version = found
    try:
        created = store.meta(version).get("created_at")
    except (ModelError, OSError, ValueError):
        created = None
    return {"scope": scope, "version": version, "created_at": created}


async def _report(
    ctx: Context, forges: Mapping[str, Forge], payload: dict[str, Any], result: dict[str, Any]
) -> None:
    where, change = payload.get("forge_repo"), payload.get("change")
    if not where or change is None:
        log.info("retrain of %s: %s (%s)", result["repo"], result["outcome"], result["reason"])
        return
    repo = Repo(**where)
    forge = forges.get(repo.forge)
    body = render("retrain_report.md.j2", r=result)
    if forge is None or payload.get("dry_run") or ctx.settings.dry_run:
        log.info(
            "dry run (or %s not configured): would reply on %s#%s:\n%s",
            repo.forge,
            repo.full_name,
            change,
            body,
        )
        return
    try:
        await forge.reply(repo, int(change), body)
    except ForgeError as exc:  # the retrain is done; its report is also in `flakebot models`
        log.error("cannot post the retrain report on %s#%s: %s", repo.full_name, change, exc)


# --- reading a repository's history (backfill) --------------------------------------------------------


async def request_backfill(
    ctx: Context,
    repo: Repo,
    *,
    days: int,
    asked_by: str | None,
    change: int | None = None,
    dry_run: bool = False,
) -> bool:
    """Queue a backfill of ``repo`` (its last ``days`` days) unless one is queued or running (False). Its
    report goes to the change it was asked on, if any."""
    from bot.backfill import LOCK_TTL as BACKFILL_TTL
    from bot.backfill import lock_name as backfill_lock

    owner = f"backfill:{repo.key}:{uuid.uuid4().hex[:12]}"
    if not await ctx.store.try_lock(backfill_lock(repo.key), owner, time.time(), BACKFILL_TTL):
        return False
    state = await ctx.store.backfill_state(repo.key)
    if state is None or state["status"] in ("done", "failed", "interrupted"):
        await ctx.store.save_backfill(repo.key, {"status": "queued", "days": days, "requested_by": asked_by})
    payload = {"repo": repo.key, "owner": owner, "forge_repo": asdict(repo), "days": days, "change": change,
               "asked_by": asked_by, "dry_run": dry_run}  # fmt: skip
    await ctx.store.enqueue(INTERNAL, owner, BACKFILL, json.dumps(payload).encode())
    log.info(
        "backfill of %s (%d days) queued%s", repo.key, days, f" (asked by {asked_by})" if asked_by else ""
    )
    return True


def backfill_command(settings: Settings, payload: Mapping[str, Any]) -> list[str]:
    """The child process that reads the history (the same code as ``flakebot backfill``)."""
    repo = payload["forge_repo"]
    command = [sys.executable, "-m", "bot", "backfill", f"{repo['forge']}:{repo['full_name']}",
               "--days", str(int(payload["days"])), "--lock-owner", payload["owner"], "--nice", str(BACKFILL_NICE),
               "--json", "--quiet"]  # fmt: skip
    if repo.get("installation_id"):
        command += ["--installation-id", str(int(repo["installation_id"]))]
    return command


def backfill_env(settings: Settings) -> dict[str, str]:
    """The child's environment: the service's settings, with the forge credentials it reads with, the
    database it writes to, and no webhook secret (it answers no webhook)."""
    env = child_env(settings, {"GITHUB_TOKEN": settings.github_token, "GITHUB_PRIVATE_KEY": settings.github_private_key,
                               "GITLAB_TOKEN": settings.gitlab_token})  # fmt: skip
    values = {
        "GITHUB_APP_ID": settings.github_app_id,
        "GITHUB_API_URL": settings.github_api_url,
        "GITLAB_URL": settings.gitlab_url,
        "FLAKEBOT_DATA_DIR": str(settings.data_dir),
        "FLAKEBOT_MODEL": str(settings.model_dir),
    }
    env.update({k: v for k, v in values.items() if v})
    if not settings.github_app_id:
        env.pop("GITHUB_APP_ID", None)
    return env


async def run_backfill_process(settings: Settings, payload: Mapping[str, Any]) -> tuple[bool, str]:
    """Run the backfill in a child process at a lower priority; (finished, why not). Cancelling kills
    the child (the job is resumed later, where it stopped)."""
    proc = await asyncio.create_subprocess_exec(
        *backfill_command(settings, payload),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=backfill_env(settings),
    )
    try:
        _out, err = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        raise
    return (True, "") if proc.returncode == 0 else (False, _why(proc.returncode, err))


async def handle_backfill(ctx: Context, forges: Mapping[str, Forge], delivery: Delivery) -> None:
    from bot.backfill import lock_name as backfill_lock

    try:
        payload = json.loads(delivery.payload)
        repo, owner = payload["repo"], payload["owner"]
        Repo(**payload["forge_repo"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"malformed backfill job: {exc}") from exc
    if not await ctx.store.try_lock(backfill_lock(repo), owner, time.time(), 3600.0):
        done, why = False, "another backfill of this repository (`flakebot backfill`?) was running"
    else:
        done, why = await run_backfill_process(ctx.settings, payload)  # a cancel leaves the lock held
        await ctx.store.unlock(backfill_lock(repo), owner)
    if not done:
        log.error("backfill of %s stopped: %s", repo, why)
    ctx.metrics.backfills.labels("done" if done else "stopped").inc()
    state = await ctx.store.backfill_state(repo)
    await _report_backfill(ctx, forges, payload, state, why)


async def _report_backfill(
    ctx: Context, forges: Mapping[str, Forge], payload: dict[str, Any], state: dict[str, Any] | None, why: str
) -> None:
    where, change = payload.get("forge_repo"), payload.get("change")
    result = (state or {}).get("result") if not why else None
    if not where or change is None:
        return
    repo = Repo(**where)
    forge = forges.get(repo.forge)
    body = render("backfill_report.md.j2", r=result, repo=payload["repo"], days=payload["days"], why=why,
                  status=(state or {}).get("status"))  # fmt: skip
    if forge is None or payload.get("dry_run") or ctx.settings.dry_run:
        log.info("dry run (or %s not configured): would reply on %s#%s:\n%s", repo.forge, repo.full_name,
                 change, body)  # fmt: skip
        return
    try:
        await forge.reply(repo, int(change), body)
    except ForgeError as exc:
        log.error("cannot post the backfill report on %s#%s: %s", repo.full_name, change, exc)


# --- the schedule ------------------------------------------------------------------------------------


def due_for_retrain(
    last_labelled: Mapping[str, str], last_attempt: Mapping[str, str | None], now: datetime, every: float
) -> list[str]:
    """The repositories to retrain now: labelled since their last retrain, which is ``every`` seconds
    old or more (or never happened). Pure."""
    due = []
    for repo, labelled in sorted(last_labelled.items()):
        at, label_at = _time(last_attempt.get(repo)), _time(labelled)
        if at is None or (label_at is not None and (now - at).total_seconds() >= every and label_at > at):
            due.append(repo)
    return due


def _time(value: str | None) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


async def schedule_once(ctx: Context, every: float, now: datetime | None = None) -> list[str]:
    """Queue a retrain of each repository that is due; returns them."""
    now = now or datetime.now(UTC)
    labelled = await ctx.store.last_labelled()
    attempts: dict[str, str | None] = {}
    for repo in list(labelled):
        try:
            last = await asyncio.to_thread(ctx.models.repo_store(repo).last_retrain)
        except ModelError as exc:
            log.warning("not retraining %s on schedule: %s", repo, exc)
            labelled.pop(repo)
            continue
        attempts[repo] = (last or {}).get("at")
    queued = []
    for repo in due_for_retrain(labelled, attempts, now, every):
        if await request_retrain(ctx, repo):
            queued.append(repo)
    return queued


LEADER = "leader:scheduled-work"


async def lead(ctx: Context, term: float) -> bool:
    """Whether this instance does the scheduled work (retrains; backfills) now: one instance at a time,
    the holder of the leader lock. It keeps the lock by renewing it each tick; when it stops or dies,
    another instance takes over once ``term`` seconds have passed since the last renewal."""
    return await ctx.store.try_lock(LEADER, ctx.owner, time.time(), term)


async def retrain_schedule(ctx: Context, every: float, tick: float | None = None) -> None:
    """Check every ``tick`` seconds (at most an hour) which repositories are due, on the leading
    instance only; runs until cancelled (then the lead is given up)."""
    tick = tick or min(every, 3600.0)
    try:
        while True:
            await _schedule_tick(ctx, every, tick)
            await asyncio.sleep(tick)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(ctx.store.unlock(LEADER, ctx.owner))


async def _schedule_tick(ctx: Context, every: float, tick: float) -> None:
    try:
        if await lead(ctx, 2 * tick + 60):
            queued = await schedule_once(ctx, every)
            if queued:
                log.info("scheduled retrains queued: %s", ", ".join(queued))
    except Exception:  # the schedule must outlive a store hiccup
        log.exception("the retrain schedule failed; trying again in %.0f s", tick)
