"""flakebot's storage behind one small interface.

:class:`Store` is everything the service keeps: the durable queue of webhook deliveries, every judged
test run (passes too), the failures kept for retraining with their labels, each change's comment
state, quarantine issues, and named locks. :class:`SQLiteStore` (``bot/store/sqlite.py``) is the
embedded default; a PostgreSQL backend for deployments with several instances implements the same
methods (the SQL is plain and the queue is lease-based, so it carries over).

All methods are synchronous and quick; the service calls them through :class:`AsyncStore`, which runs
them on one dedicated thread so the event loop never waits on the disk.

Nothing secret is stored: every method of a backend gets its arguments with secrets masked
(:func:`masked`, :func:`bot.redact.mask_secrets` on every string they hold; the webhook payload's bytes
are kept as received until the delivery is done). Test names, failures, logs, messages, comment state
and errors are masked before they are written, and the names a lookup is given the same way, so a test
whose name held a secret is found under its masked name (docs/hardening.md, 11).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bot.incidents import Incident, Occurrence
from bot.redact import secret_masker
from bot.scoring import HistorySummary, Run, parse_time

T = TypeVar("T")


def masked(value: Any, mask: Callable[[str], str] | None = None) -> Any:
    """``value`` with secrets masked in every string it holds: strings, the keys and values of dicts,
    lists, tuples and dataclasses (a copy; bytes and numbers as they are)."""
    mask = mask or secret_masker()
    if isinstance(value, str):
        return mask(value) if len(value) >= 6 else value  # nothing shorter is a secret
    if isinstance(value, dict):
        return {masked(k, mask): masked(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(masked(v, mask) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            if f.init and (new := masked(old, mask)) != old:
                changed[f.name] = new
        return dataclasses.replace(value, **changed) if changed else value
    return value


def _remembering(mask: Callable[[str], str], longest: int = 500) -> Callable[[str], str]:
    """``mask`` that remembers its answers for short texts: a run asks about the same test, job and
    repository names several times (window, summary, score)."""
    remembered = functools.lru_cache(maxsize=8192)(mask)
    return lambda text: remembered(text) if len(text) <= longest else mask(text)


_masking_now = threading.local()


def _masking(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def call(self: Store, *args: Any, **kwargs: Any) -> T:
        if getattr(_masking_now, "active", False):  # a store method calling another: masked already
            return method(self, *args, **kwargs)
        _masking_now.active = True
        try:
            return method(self, *masked(args, self.secret_mask), **masked(kwargs, self.secret_mask))
        finally:
            _masking_now.active = False

    call.masks_secrets = True  # type: ignore[attr-defined]
    return call


@dataclass
class Delivery:
    id: int
    forge: str
    delivery_id: str
    event: str
    payload: bytes
    attempts: int
    status: str


@dataclass
class HistoryRun:
    """One judged run of one test (a row of its history)."""

    test: str
    status: str  # passed | failed | error | skipped
    run_id: int
    attempt: int = 1
    job: str = ""
    revision: str | None = None
    branch: str | None = None
    duration: float | None = None
    message: str | None = None
    verdict: str | None = None  # the final verdict of a failure
    url: str | None = None
    created_at: str | None = None
    retry: int = 0  # the test runner's own re-run of the test within the job (JUnit flaky reruns): 0 first

    def as_scoring_run(self) -> Run:
        return Run(
            status=self.status,
            attempt=self.attempt + self.retry,  # a re-run within the job is a re-run for the score
            time=self.duration,
            created_at=parse_time(self.created_at),
            revision=self.revision,
            message=self.message,
        )


@dataclass
class Failure:
    """A judged failure kept for retraining (a record of ``bot/records.py`` plus where it came from),
    and the judgement's evidence that ``/flake explain`` shows again."""

    test: str
    log: str
    run_id: int
    attempt: int
    job: str
    revision: str | None
    change_number: int | None = None
    model: dict[str, Any] = field(default_factory=dict)  # the log model's verdict and evidence
    verdict: str | None = None  # the final verdict
    url: str | None = None
    created_at: str | None = None
    judgement: dict[str, Any] = field(default_factory=dict)  # Judgement.evidence(): log, history, rule...


@dataclass
class ChangeRun:
    """A run flakebot judged on a change's newest commit (one per workflow or pipeline source): what
    ``/flake retry`` re-runs unless a later attempt passed."""

    name: str  # the workflow's name (GitHub), the pipeline's name or source (GitLab), else "run <id>"
    run_id: int
    sha: str
    attempt: int
    url: str = ""
    event: str = ""  # a third-party check suite ("check_suite") cannot be re-run
    passed: bool = False


@dataclass(frozen=True)
class WeakLabel:
    """A label a backfill inferred for a stored failure from what happened next (docs/backfill.md):
    weaker than a maintainer's and than a pass on retry seen live, which win over it."""

    run_id: int
    attempt: int
    job: str
    test: str
    label: str  # flake | real
    rule: str  # which rule gave it, in words


class Store(ABC):
    """What flakebot stores. ``repo`` is always ``"<forge>:<full name>"``.

    A test's history is kept per job (``test`` and ``job``): in a matrix, a test that always passes on
    one platform and always fails on another is broken there, not flaky.

    A backend's methods of this interface mask the secrets in their arguments (see the module's
    docstring): the masking wraps them when the backend class is defined, so none can forget it.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in Store.__abstractmethods__ - {"close"}:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "masks_secrets", False):
                setattr(cls, name, _masking(method))

    @functools.cached_property
    def secret_mask(self) -> Callable[[str], str]:
        """Masks flakebot's own secrets (those of the environment when the store was first used, as
        the service reads its settings once) and every credential pattern of :mod:`bot.redact`."""
        return _remembering(secret_masker())

    # --- the durable queue ---------------------------------------------------------------------
    @abstractmethod
    def enqueue(self, forge: str, delivery_id: str, event: str, payload: bytes) -> bool:
        """Store a delivery; False when this delivery id was seen before (a redelivery)."""

    @abstractmethod
    def claim(
        self, now: float, lease: float, owner: str = "", forges: Sequence[str] | None = None
    ) -> Delivery | None:
        """Take the oldest due delivery for ``lease`` seconds on behalf of ``owner``, or None.
        ``forges`` limits the claim to deliveries of those forges (``"internal"``: flakebot's own jobs)."""

    @abstractmethod
    def renew(self, delivery: int, until: float) -> None:
        """Extend the lease of a delivery being worked on."""

    @abstractmethod
    def finish(self, delivery: int) -> None: ...

    @abstractmethod
    def fail(self, delivery: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt; ``retry_at`` None gives up on the delivery (it stays, as dead)."""

    @abstractmethod
    def recover(self, now: float, owners: list[str] | None = None) -> int:
        """Put back in the queue the deliveries whose lease ran out, and those claimed by ``owners``
        (processes known to be dead)."""

    @abstractmethod
    def working_owners(self) -> list[str]:
        """The owners of the deliveries being worked on."""

    @abstractmethod
    def queue_depth(self) -> int:
        """Deliveries waiting or being worked on."""

    @abstractmethod
    def deliveries(self, status: str | None = None) -> list[dict[str, Any]]: ...

    # --- test history ----------------------------------------------------------------------------
    @abstractmethod
    def record_runs(self, repo: str, runs: list[HistoryRun]) -> list[HistoryRun]:
        """Add runs to the history (a run already recorded is ignored); returns the new ones."""

    @abstractmethod
    def window(self, repo: str, test: str, job: str, limit: int, branch: str | None) -> list[HistoryRun]:
        """The runs that score a test in a job, oldest first: those of ``branch`` (the repository's
        default branch), and those of any revision that ran more than once (see docs/history.md), the
        newest ``limit``."""

    @abstractmethod
    def summary(self, repo: str, test: str, job: str) -> HistorySummary: ...

    @abstractmethod
    def save_score(self, repo: str, test: str, job: str, score: dict[str, Any]) -> None: ...

    @abstractmethod
    def scores(self, repo: str | None = None) -> list[dict[str, Any]]:
        """Every scored test (of a repository), most flaky first, with its last runs and its quarantine
        issue (``issue``, ``issue_url``, ``quarantine``: its state, ``quarantine_jobs``,
        ``quarantine_expires_at``)."""

    @abstractmethod
    def tests_of_job(self, repo: str, job: str) -> list[str]:
        """Tests seen in a job of this name (a green job means they all passed)."""

    @abstractmethod
    def recent_failures(self, repo: str, test: str, limit: int) -> list[HistoryRun]:
        """A test's newest failures, in any job."""

    @abstractmethod
    def tests_like(self, repo: str, name: str, limit: int = 20) -> list[str]:
        """Tests of the history named ``name`` or ending with it (to find a test a maintainer named)."""

    @abstractmethod
    def test_scores(self, repo: str, test: str) -> list[dict[str, Any]]:
        """The saved score of a test in each of its jobs: ``{"job", "score", "updated_at"}``."""

    @abstractmethod
    def repos(self) -> list[str]: ...

    # --- failures kept for retraining ---------------------------------------------------------------
    @abstractmethod
    def record_failures(self, repo: str, failures: list[Failure]) -> None: ...

    @abstractmethod
    def label_merged(self, repo: str, revision: str) -> int:
        """The change whose head is ``revision`` was merged: its failures are flake evidence."""

    @abstractmethod
    def label_passed_on_retry(
        self, repo: str, run_id: int, before_attempt: int, tests: list[str] | None, job: str | None = None
    ) -> int:
        """These tests (all when None; of one job when given) passed when run ``run_id`` was retried:
        their failures of earlier attempts are strong flake evidence."""

    @abstractmethod
    def label_by_human(self, repo: str, change_number: int, test: str, label: str, who: str) -> int:
        """A maintainer's flake/real label for a test's failures on a change."""

    @abstractmethod
    def failures_of_change(self, repo: str, change_number: int) -> list[dict[str, Any]]:
        """The failures kept for a change, oldest first: the :class:`Failure` fields (``model`` and
        ``judgement`` parsed) and their labels (``label``, ``labelled_by``, ``merged``,
        ``passed_on_retry``)."""

    @abstractmethod
    def training_records(self, repo: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored failures as JSONL records (``bot/records.py``), oldest first, with their labels and
        ``failure_id`` (increasing with time: what a retrain cuts its held-out data by)."""

    @abstractmethod
    def last_labelled(self) -> dict[str, str]:
        """When each repository's failures last got a label (merged, passed on retry, human), ISO-8601."""

    # --- reading a repository's CI history (backfill) ------------------------------------------------
    # Tables ``backfills`` (one row a repository: its window, status and outcome), ``backfill_runs`` (the
    # runs of the window, pending or done: what makes a backfill resumable) and ``forge_cache`` (ETags and
    # answers for conditional requests); columns ``failures.weak_label`` and ``failures.weak_rule``.
    @abstractmethod
    def has_history(self, repo: str) -> bool:
        """Whether any test run of the repository is recorded."""

    @abstractmethod
    def backfill_state(self, repo: str) -> dict[str, Any] | None:
        """The repository's backfill (``status``, ``days``, ``since``, ``until``, ``requested_by``,
        ``started_at``, ``updated_at``, ``finished_at``, ``result``: a dict), None when it never had one."""

    @abstractmethod
    def save_backfill(self, repo: str, fields: dict[str, Any], *, only_new: bool = False) -> bool:
        """Set these fields of the repository's backfill (made when missing); with ``only_new``, only
        when it has none yet. False when nothing was written."""

    @abstractmethod
    def add_backfill_runs(self, repo: str, runs: list[dict[str, Any]]) -> int:
        """Remember runs listed for the backfill (``run_id``, ``created_at``, ``attempt``, ``run``: a dict),
        pending. A run already read goes back to pending only when it has a new attempt since. Returns how
        many are pending now among them."""

    @abstractmethod
    def pending_backfill_runs(self, repo: str, since: str, until: str) -> list[dict[str, Any]]:
        """The pending runs created in [since, until], oldest first: ``run_id``, ``created_at``, ``run``."""

    @abstractmethod
    def finish_backfill_run(self, repo: str, run_id: int, jobs: int) -> None:
        """The run is read (its history and failures are stored): it is never read again."""

    @abstractmethod
    def backfill_counts(self, repo: str, since: str, until: str) -> dict[str, int]:
        """Of the runs read in [since, until]: ``runs``, ``jobs`` (of every attempt), ``failures`` (failed
        test or job rows of the history), ``pending`` runs."""

    @abstractmethod
    def backfill_failures(self, repo: str, since: str, until: str) -> list[HistoryRun]:
        """The failed history rows (test, job, run, attempt, revision, branch) of the runs read in
        [since, until]."""

    @abstractmethod
    def test_runs(self, repo: str, test: str, job: str) -> list[HistoryRun]:
        """Every recorded run of a test in a job, in the order recorded."""

    @abstractmethod
    def tests_recorded_since(self, repo: str, at: str) -> list[tuple[str, str]]:
        """The (test, job) pairs whose history got a run (or a score) at ``at`` or later."""

    @abstractmethod
    def label_weak(self, repo: str, labels: list[WeakLabel]) -> int:
        """Store inferred labels on the failures they name (a label that changes counts as new for the
        retrain schedule); returns how many changed."""

    @abstractmethod
    def cache_get(self, key: str) -> str | None:
        """A forge answer kept for a conditional request (text), or None."""

    @abstractmethod
    def cache_put(self, key: str, value: str) -> None: ...

    @abstractmethod
    def cache_drop(self, prefix: str) -> int:
        """Forget the kept answers whose key starts with ``prefix``."""

    # --- comments, quarantine, locks --------------------------------------------------------------
    @abstractmethod
    def change_state(self, repo: str, number: int) -> dict[str, Any]: ...

    @abstractmethod
    def save_change_state(self, repo: str, number: int, state: dict[str, Any]) -> None: ...

    @abstractmethod
    def save_change_run(self, repo: str, number: int, run: ChangeRun) -> None:
        """Record a run of the change, replacing the one of the same name; the change's runs of other
        commits are forgotten (it moved on)."""

    @abstractmethod
    def change_runs(self, repo: str, number: int) -> list[ChangeRun]:
        """The runs recorded for the change's newest commit, newest first."""

    @abstractmethod
    def set_quarantine(
        self,
        repo: str,
        test: str,
        *,
        number: int | None,
        url: str | None,
        state: str,
        jobs: Sequence[str] | None = None,
        expires_at: str | None = None,
    ) -> None:
        """Record a test's quarantine issue: ``jobs`` the jobs it is quarantined in (None: every job),
        ``expires_at`` when it ends unless renewed (ISO-8601; None: never)."""

    @abstractmethod
    def quarantined(self, repo: str | None = None) -> list[dict[str, Any]]:
        """Tests with an open quarantine issue (or a manual quarantine): ``repo``, ``test``, ``number``,
        ``url``, ``state``, ``since``, ``jobs`` (a list, None for every job), ``expires_at``."""

    @abstractmethod
    def set_override(self, repo: str, test: str, override: str | None, who: str | None) -> None:
        """A maintainer's ``quarantine``/``unquarantine`` of a test (None lifts it); the automatic
        lifecycle never undoes it."""

    @abstractmethod
    def overrides(self, repo: str) -> dict[str, dict[str, Any]]:
        """The tests with a manual override: test → ``{"override", "by", "at"}``."""

    # --- infrastructure incidents (issue 13) -----------------------------------------------------------
    @abstractmethod
    def record_occurrences(self, repo: str, occurrences: Sequence[Occurrence]) -> int:
        """Keep each failure's signature in its change (a failure already recorded is ignored); forget
        those older than a week, unless their incident is open. Returns how many were new."""

    @abstractmethod
    def occurrences(self, repo: str, signatures: Sequence[str], since: str) -> list[Occurrence]:
        """The occurrences of these signatures at or after ``since`` (ISO-8601), newest first."""

    @abstractmethod
    def save_incident(self, repo: str, incident: Incident) -> None:
        """Record an incident (one per repository and signature), replacing what was kept of it."""

    @abstractmethod
    def incidents(self, repo: str | None = None, state: str | None = None) -> list[Incident]:
        """The incidents (of a repository; ``open`` or ``closed`` ones), open first, newest first."""

    @abstractmethod
    def set_aside_runs(
        self, repo: str, runs: Sequence[tuple[int, int, str, str]], message: str
    ) -> list[tuple[str, str]]:
        """Take failures (run id, attempt, job, test) out of their tests' scores: recorded as skipped with
        ``message``, their tests' summaries made again. Returns the (test, job) whose history changed."""

    @abstractmethod
    def remember_reply(self, repo: str, number: int, user: str, kind: str) -> bool:
        """Note that ``user`` got the reply ``kind`` on this change; False when they had it already."""

    @abstractmethod
    def forget_reply(self, repo: str, number: int, user: str, kind: str) -> None:
        """Undo :meth:`remember_reply` (the reply could not be posted)."""

    @abstractmethod
    def try_lock(self, name: str, owner: str, now: float, ttl: float) -> bool:
        """Take the named lock unless someone else holds an unexpired one."""

    @abstractmethod
    def unlock(self, name: str, owner: str) -> None: ...

    @abstractmethod
    def lock_holder(self, name: str, now: float) -> str | None:
        """The owner of the named lock while it is held, else None."""

    # --- hardening (issue 15): signed bodies seen, each repository's last settings --------------
    @abstractmethod
    def remember_body(self, forge: str, digest: bytes, now: float, window: float) -> bool:
        """Note a webhook body by its hash; False when the same body came within the last ``window``
        seconds (a replay under a new delivery id). Older entries are forgotten."""

    @abstractmethod
    def forget_body(self, forge: str, digest: bytes) -> None:
        """Undo :meth:`remember_body` (the delivery could not be queued)."""

    @abstractmethod
    def remember_config(self, repo: str, text: str | None) -> None:
        """The repository's settings file as just read (None: it has none, so the defaults apply)."""

    @abstractmethod
    def last_config(self, repo: str) -> dict[str, Any] | None:
        """``{"text", "read_at"}`` of the settings last read for the repository, or None if never."""

    @abstractmethod
    def defer(self, delivery: int, reason: str, until: float) -> int:
        """Put a claimed delivery back in the queue until ``until`` without counting the attempt (the
        forge asked to wait: a rate limit); returns how many times it has been deferred so far."""

    @abstractmethod
    def close(self) -> None: ...


class StoreError(Exception):
    """The database cannot be used as it is (empty, corrupt); the message says what to do."""


def open_store(data_dir: str | Path) -> Store:
    """The embedded default: SQLite in ``data_dir/flakebot.db`` (made when missing). Raises
    :class:`StoreError` for a file that is empty or not a flakebot database."""
    from bot.store.sqlite import SQLiteStore

    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(path / "flakebot.db")


class AsyncStore:
    """A :class:`Store` whose methods are awaited and run on one dedicated thread."""

    def __init__(self, store: Store):
        self.store = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flakebot-store")

    async def batch(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the store's thread: many small calls for the price of one hop (keep
        each batch short, the webhooks' acknowledgements wait behind it)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn, self.store)

    def blocking(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the store's thread and wait for it, for a caller that cannot await (a
        library's synchronous hook, such as gidgethub's cache). It holds up the event loop: keep it short,
        and never call it from the store's own thread."""
        return self._thread.submit(fn, self.store).result()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, functools.partial(method, *args, **kwargs))

        return call

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self.store.close)
        self._thread.shutdown(wait=True)
