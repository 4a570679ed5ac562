"""flakebot's storage behind one small interface.

:class:`Store` is everything the service keeps: the durable queue of webhook deliveries, every judged
test run (passes too), the failures kept for retraining with their labels, each change's comment
state, quarantine issues, and named locks. :class:`SQLiteStore` (``bot/store/sqlite.py``) is the
embedded default; a PostgreSQL backend for deployments with several instances implements the same
methods (the SQL is plain and the queue is lease-based, so it carries over).

All methods are synchronous and quick; the service calls them through :class:`AsyncStore`, which runs
them on one dedicated thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bot.scoring import HistorySummary, Run, parse_time

T = TypeVar("T")


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

    def as_scoring_run(self) -> Run:
        return Run(
            status=self.status,
            attempt=self.attempt,
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


class Store(ABC):
    """What flakebot stores. ``repo`` is always ``"<forge>:<full name>"``.

    A test's history is kept per job (``test`` and ``job``): in a matrix, a test that always passes on
    one platform and always fails on another is broken there, not flaky.
    """

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
        """Every scored test (of a repository), most flaky first, with its last runs."""

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
        self, repo: str, test: str, *, number: int | None, url: str | None, state: str
    ) -> None: ...

    @abstractmethod
    def quarantined(self, repo: str | None = None) -> list[dict[str, Any]]:
        """Tests with an open quarantine issue (or a manual quarantine)."""

    @abstractmethod
    def set_override(self, repo: str, test: str, override: str | None, who: str | None) -> None:
        """A maintainer's ``quarantine``/``unquarantine`` of a test (None lifts it); the automatic
        lifecycle never undoes it."""

    @abstractmethod
    def overrides(self, repo: str) -> dict[str, dict[str, Any]]:
        """The tests with a manual override: test → ``{"override", "by", "at"}``."""

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

    @abstractmethod
    def close(self) -> None: ...


def open_store(data_dir: str | Path) -> Store:
    """The embedded default: SQLite in ``data_dir/flakebot.db``."""
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
