"""Day one: learn from a repository's own CI history (``flakebot backfill``, ``/flake backfill``).

Read-only, in five steps, each resumable (docs/backfill.md has the reasons):

1. **list** the finished runs of the window (the last ``days`` days, fixed when the backfill starts) on
   every branch, and remember each in the store (``backfill_runs``: pending or done). A resumed backfill
   lists the same window again, conditionally: the answers that did not change cost no rate limit;
2. **read** each pending run, oldest first, through the run path's stages (:func:`bot.run.backfill.read_run`:
   every attempt, logs and test reports split exactly as the service splits them, history and failures
   stored), then mark it done: a run is never read twice, and what an interrupted run had stored is not
   stored again (the history and the failures are unique by run, attempt, job and test);
3. **score** every test the backfill touched, once (scores and the history page start from the real
   history);
4. **label** the failures from what happened next (:mod:`bot.weak_labels`; weak: a maintainer's label
   and a pass on retry seen live win);
5. **train** a first model from them through the gate of ``/flake retrain`` (:func:`bot.retrain.retrain`:
   a trial on the newest labelled failures, which also chooses the retry threshold), or say how many
   labelled failures are still missing.

The forge is asked with a reserve of its rate limit left for the live service, slower after a rate limit,
and with conditional requests on GitHub (:mod:`bot.forge.pace`, gidgethub's cache kept in the store).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Iterator, MutableMapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

from bot.context import Context
from bot.forge.base import Forge, Repo, Run
from bot.retrain import RetrainBusy, RetrainOptions, repo_lock
from bot.run import history
from bot.run.backfill import iso, read_run
from bot.run.scope import load_repo_config
from bot.store import AsyncStore, Store, WeakLabel
from bot.weak_labels import infer

log = logging.getLogger(__name__)

LOCK_TTL = 3600.0  # a backfill's lock, renewed after every run it reads
LIST_BATCH = 100
MAX_NOTES = 20  # of what could not be read, kept with the result
MAX_DAYS = 400


class BackfillBusy(Exception):
    """Another backfill of this repository is running."""


def lock_name(repo: str) -> str:
    return f"backfill:{repo}"


@dataclass
class Summary:
    """What a backfill read and learnt (``--json`` prints :meth:`as_json`)."""

    repo: str
    since: str
    until: str
    runs: int = 0
    jobs: int = 0
    failures: int = 0  # failed test or job rows of the history
    flake: int = 0
    real: int = 0
    unlabelled: int = 0
    model: str | None = None  # the version activated by this backfill
    outcome: str = "not trained"  # promoted | kept | refused | busy | not trained | failed
    reason: str = ""
    missing: int | None = None  # labelled failures still missing for a first model, when that is why
    resumed: bool = False
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"runs": self.runs, "jobs": self.jobs, "failures": self.failures, "flake": self.flake,
                "real": self.real, "unlabelled": self.unlabelled, "model": self.model}  # fmt: skip

    def as_state(self) -> dict[str, Any]:
        """What the store keeps (``backfills.result``): everything, the first notes only."""
        return {**asdict(self), "notes": list(dict.fromkeys(self.notes))[:MAX_NOTES]}


class Progress:
    """What a backfill tells as it goes (the CLI draws a progress bar); does nothing by default."""

    def phase(self, text: str) -> None: ...

    def listed(self, count: int) -> None: ...

    def reading(self, total: int) -> None: ...

    def read(self, run: Run) -> None: ...


class StoreCache(MutableMapping[str, Any]):
    """gidgethub's cache of conditional requests (url → ETag, Last-Modified, answer, next page), kept in
    the store's ``forge_cache`` so that a resumed backfill asks its listings again conditionally.

    gidgethub looks it up and writes it synchronously, on the event loop, where the store (SQLite on its
    thread, PostgreSQL on the loop itself) can only be awaited: the GitHub adapter awaits :meth:`load`
    before a GET and :meth:`save` after it (``bot.forge.github.AwaitedCache``), so only the answers of
    the requests in flight are held in memory."""

    def __init__(self, store: AsyncStore):
        self._store = store
        self._held: dict[str, tuple[Any, ...]] = {}  # loaded or written, for the requests in flight
        self._written: set[str] = set()

    async def load(self, url: str) -> None:
        if (value := await self._store.cache_get(url)) is not None:
            self._held[url] = tuple(json.loads(value))

    async def save(self, url: str) -> None:
        value = self._held.pop(url, None)
        if url in self._written:
            self._written.discard(url)
            if value is not None:
                await self._store.cache_put(url, json.dumps(list(value)))

    def __getitem__(self, key: str) -> Any:
        return self._held[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._held[key] = tuple(value)
        self._written.add(key)

    def __delitem__(self, key: str) -> None:  # gidgethub never forgets an answer: in memory only
        del self._held[key]
        self._written.discard(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._held)

    def __len__(self) -> int:
        return len(self._held)


def window(days: int, now: datetime | None = None) -> tuple[str, str]:
    """[since, until] of the last ``days`` days, as the store and the forges write times."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, got {days}")
    until = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return _iso(until - timedelta(days=days)), _iso(until)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _entry(run: Run) -> dict[str, Any]:
    """What the store keeps of a listed run until it is read."""
    data = {k: getattr(run, k) for k in ("id", "sha", "branch", "attempt", "conclusion", "html_url", "name",
                                         "event", "change_numbers", "head_owner")}  # fmt: skip
    created = iso(run.created_at) or _iso(datetime.now(UTC))
    return {
        "run_id": run.id,
        "created_at": created,
        "attempt": run.attempt,
        "run": {**data, "created_at": created},
    }


def _run(entry: dict[str, Any], repo: Repo) -> Run:
    return Run(repo=repo, **entry["run"])


async def backfill(
    ctx: Context,
    forge: Forge,
    repo: Repo,
    *,
    days: int = 30,
    train: bool = True,
    progress: Progress | None = None,
    lock_owner: str | None = None,
    options: RetrainOptions | None = None,
    now: datetime | None = None,
) -> Summary:
    """Backfill ``repo`` (resuming an unfinished backfill of the same number of days). Raises
    :class:`BackfillBusy` when another one holds the repository's backfill lock, and
    :class:`~bot.forge.base.ForgeError` when the forge fails for good (what was read stays read)."""
    store, key = ctx.store, repo.key
    progress = progress or Progress()
    owner = lock_owner or f"backfill:{key}:{uuid.uuid4().hex[:12]}"
    if not await store.try_lock(lock_name(key), owner, time.time(), LOCK_TTL):
        raise BackfillBusy(f"a backfill of {key} is already running")
    try:
        summary = await _backfill(ctx, forge, repo, days, train, progress, owner, options, now)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt) else "failed"
        await asyncio.shield(store.save_backfill(key, {"status": status}))
        raise
    finally:
        await asyncio.shield(store.unlock(lock_name(key), owner))
    return summary


async def _backfill(
    ctx: Context,
    forge: Forge,
    repo: Repo,
    days: int,
    train: bool,
    progress: Progress,
    owner: str,
    options: RetrainOptions | None,
    now: datetime | None,
) -> Summary:
    store, key = ctx.store, repo.key
    state = await store.backfill_state(key)
    resumed = bool(state and state.get("since") and state["status"] != "done" and state.get("days") == days)
    if resumed:
        assert state is not None
        since, until, started = state["since"], state["until"], state["started_at"]
    else:
        since, until = window(days, now)
        started = _iso(datetime.now(UTC))
    await store.save_backfill(key, {"status": "listing", "days": days, "since": since, "until": until,
                                    "started_at": started, "finished_at": None, "result": None})  # fmt: skip
    summary = Summary(key, since, until, resumed=resumed)
    config = await load_repo_config(ctx, forge, repo)

    progress.phase(f"listing the runs of {since[:10]} to {until[:10]}")
    batch, listed = [], 0
    async for run in forge.list_runs(repo, _moment(since), _moment(until)):
        batch.append(_entry(run))
        if len(batch) >= LIST_BATCH:
            listed += len(batch)
            await store.add_backfill_runs(key, batch)
            progress.listed(listed)
            batch = []
    listed += len(batch)
    await store.add_backfill_runs(key, batch)
    progress.listed(listed)

    pending = await store.pending_backfill_runs(key, since, until)
    await store.save_backfill(key, {"status": "reading"})
    progress.reading(len(pending))
    for entry in pending:
        run = _run(entry, repo)
        read = await read_run(ctx, forge, run, config)
        summary.notes += read.notes
        await store.finish_backfill_run(key, run.id, read.jobs)
        await store.try_lock(lock_name(key), owner, time.time(), LOCK_TTL)  # renewed
        progress.read(run)

    progress.phase("scoring the tests")
    keys = await store.tests_recorded_since(key, started)
    await history.score_tests(store, key, keys, config, branch=repo.default_branch)

    progress.phase("labelling the failures")
    await store.save_backfill(key, {"status": "labelling"})
    counts = await store.backfill_counts(key, since, until)
    summary.runs, summary.jobs, summary.failures = counts["runs"], counts["jobs"], counts["failures"]
    labels = await label(store, key, since, until, repo.default_branch)
    summary.flake, summary.real = labels.count("flake"), labels.count("real")
    summary.unlabelled = summary.failures - summary.flake - summary.real

    if train:
        progress.phase("training a first model")
        await store.save_backfill(key, {"status": "training"})
        await first_model(ctx, key, summary, options or RetrainOptions())
    await store.save_backfill(key, {"status": "done", "finished_at": _iso(datetime.now(UTC)),
                                    "result": summary.as_state()})  # fmt: skip
    if (prefix := cache_prefix(forge, repo)) is not None:
        await store.cache_drop(prefix)
    log.info("backfill of %s: %s", key, summary.as_json())
    return summary


def cache_prefix(forge: Forge, repo: Repo) -> str | None:
    """The keys of the repository's kept answers (gidgethub keys them by URL; GitHub only)."""
    api = getattr(forge, "api_url", None)
    return f"{api}/repos/{repo.full_name}/" if api else None


async def label(store: AsyncStore, key: str, since: str, until: str, default_branch: str) -> list[str | None]:
    """Infer and store the weak label of every failure of the window's runs; the labels, one a failure."""
    failures = await store.backfill_failures(key, since, until)
    found: list[str | None] = []
    weak: list[WeakLabel] = []
    for (test, job), group in groupby(failures, key=lambda f: (f.test, f.job)):
        mine = list(group)
        inferred = infer(mine, await store.test_runs(key, test, job), default_branch)
        for failure, label_ in zip(mine, inferred, strict=True):
            found.append(label_.label if label_ else None)
            if label_ is not None:
                weak.append(WeakLabel(failure.run_id, failure.attempt, job, test, label_.label, label_.rule))
    await store.label_weak(key, weak)
    return found


async def first_model(ctx: Context, key: str, summary: Summary, options: RetrainOptions) -> None:
    """Train, trial and maybe activate the repository's model through the retrain's gate; the outcome
    goes into ``summary`` (with how many labelled failures are missing when there were too few)."""
    from bot.retrain import retrain

    root = ctx.models.root  # the model directory, or the database (PostgreSQL)

    def run(store: Store) -> dict[str, Any]:
        with repo_lock(store, key, f"backfill:{uuid.uuid4().hex[:12]}"):
            return retrain(store, key, root, options)

    try:
        result = await ctx.store.batch(run)
    except RetrainBusy as exc:
        summary.outcome, summary.reason = "busy", f"{exc}: the first model is left to it"
        return
    summary.outcome, summary.reason = result["outcome"], result["reason"]
    if result["outcome"] == "promoted":
        summary.model = result["version"]
    elif result["outcome"] == "refused":
        summary.missing = missing_labels(result.get("counts") or {}, options)


def missing_labels(counts: dict[str, Any], options: RetrainOptions) -> int | None:
    """How many more labelled failures a first model needs, when too few labelled ones are why it was
    refused (a trial needs ``min_holdout`` labelled failures newer than what it learns from)."""
    unseen = counts.get("unseen_labelled")
    if unseen is None or unseen >= options.min_holdout:
        return None
    return options.min_holdout - unseen
