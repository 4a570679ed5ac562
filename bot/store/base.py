"""The store's interface, one small interface per concern.

=================  ==========================================================================================
``QueueStore``     the durable queue of webhook deliveries and flakebot's own jobs (leases, retries, waits
                   a forge asked for), and the signed bodies seen lately (replays)
``HistoryStore``   every judged test run (passes too), each test's summary and score
``TrainingStore``  the failures kept for retraining, with their labels and judgements
``ChangeStore``    each change's comment state and judged runs, the replies given, the re-runs asked for
``QuarantineStore`` quarantine issues (their jobs and expiry) and maintainers' overrides
``IncidentStore``  failures' signatures by change, infrastructure incidents, failures set aside for them
``BackfillStore``  reading a repository's CI history: its backfill, the runs listed and read, the forge's
                   answers kept for conditional requests
``ConfigStore``    each repository's settings file as last read (used when it cannot be read)
``LockStore``      named locks that outlive a call (a retrain's, the leader's)
``ModelStore``     flake model versions, the active one and those active before, their trials and the
                   last retrain's outcome
=================  ==========================================================================================

:class:`Store` is all of them, synchronous (the command line, the retrain process, tests);
:class:`AsyncStore` is the same methods awaited, as the service uses them, plus what only a running
service needs (a lock held for a block of code, being woken when a delivery arrives). Each backend
implements the concerns in a module of its own (``bot/store/sqlite/``, ``bot/store/postgres/``).
``repo`` is always ``"<forge>:<full name>"``; a model's ``scope`` is ``""`` for the shared model and a
repository's key for its own.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from bot.scoring import HistorySummary
from bot.store.masking import Masking
from bot.store.records import ChangeRun, Delivery, Failure, HistoryRun, WeakLabel

if TYPE_CHECKING:
    from bot.incidents import Incident, Occurrence

T = TypeVar("T")


# --- the synchronous interface ------------------------------------------------------------------------
class QueueStore(ABC):
    @abstractmethod
    def enqueue(self, forge: str, delivery_id: str, event: str, payload: bytes) -> bool:
        """Store a delivery; False when this delivery id was seen before (a redelivery)."""

    @abstractmethod
    def claim(
        self, now: float, lease: float, owner: str = "", forges: Sequence[str] | None = None
    ) -> Delivery | None:
        """Take the oldest due delivery for ``lease`` seconds on behalf of ``owner``, or None: a pending
        one that is due, or one being worked on whose lease ran out (its worker died: any live process
        takes it over). ``forges`` limits the claim to deliveries of those forges (``"internal"``:
        flakebot's own jobs)."""

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
        (processes known to be dead), and release the locks those owners held."""

    @abstractmethod
    def working_owners(self) -> list[str]:
        """The owners of the deliveries being worked on and of the locks held."""

    @abstractmethod
    def queue_depth(self) -> int:
        """Deliveries waiting or being worked on."""

    @abstractmethod
    def deliveries(self, status: str | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def defer(self, delivery: int, reason: str, until: float) -> int:
        """Put a claimed delivery back in the queue until ``until`` without counting the attempt (the
        forge asked to wait: a rate limit); returns how many times it has been deferred so far."""

    @abstractmethod
    def remember_body(self, forge: str, digest: bytes, now: float, window: float) -> bool:
        """Note a webhook body by its hash; False when the same body came within the last ``window``
        seconds (a replay under a new delivery id). Older entries are forgotten."""

    @abstractmethod
    def forget_body(self, forge: str, digest: bytes) -> None:
        """Undo :meth:`remember_body` (the delivery could not be queued)."""


class HistoryStore(ABC):
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

    @abstractmethod
    def has_history(self, repo: str) -> bool:
        """Whether any test run of the repository is recorded."""

    @abstractmethod
    def test_runs(self, repo: str, test: str, job: str) -> list[HistoryRun]:
        """Every recorded run of a test in a job, in the order recorded."""

    @abstractmethod
    def tests_recorded_since(self, repo: str, at: str) -> list[tuple[str, str]]:
        """The (test, job) pairs whose history got a run (or a score) at ``at`` or later."""


class TrainingStore(ABC):
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
        """When each repository's failures last got a label (merged, passed on retry, human, weak),
        ISO-8601."""

    @abstractmethod
    def label_weak(self, repo: str, labels: list[WeakLabel]) -> int:
        """Store inferred labels on the failures they name (a label that changes counts as new for the
        retrain schedule); returns how many changed. A maintainer's label and a pass on retry win over
        them in :meth:`training_records`."""


class ChangeStore(ABC):
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
    def remember_reply(self, repo: str, number: int, user: str, kind: str) -> bool:
        """Note that ``user`` got the reply ``kind`` on this change; False when they had it already."""

    @abstractmethod
    def forget_reply(self, repo: str, number: int, user: str, kind: str) -> None:
        """Undo :meth:`remember_reply` (the reply could not be posted)."""

    @abstractmethod
    def begin_rerun(self, repo: str, run_id: int, attempt: int) -> str | None:
        """Record the intent to re-run attempt ``attempt`` of a run, before asking the forge. None when
        recorded now; else what an earlier processing of the run recorded (``"asked"``: it may have
        been interrupted after the call, ``"made"``, ``"refused"``)."""

    @abstractmethod
    def end_rerun(self, repo: str, run_id: int, attempt: int, outcome: str) -> None:
        """What became of the re-run: ``"made"`` or ``"refused"``."""


class QuarantineStore(ABC):
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


class IncidentStore(ABC):
    """Infrastructure incidents (``bot/incidents.py`` decides; ``bot/run/incidents.py`` acts)."""

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


class BackfillStore(ABC):
    """Reading a repository's CI history (``bot/backfill.py``): tables ``backfills`` (one row a
    repository: its window, status and outcome), ``backfill_runs`` (the runs of the window, pending or
    done: what makes a backfill resumable) and ``forge_cache`` (ETags and answers for conditional
    requests)."""

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
        """The failed history rows of the runs read in [since, until], by test and job, in the order
        recorded."""

    @abstractmethod
    def cache_get(self, key: str) -> str | None:
        """A forge answer kept for a conditional request (text), or None."""

    @abstractmethod
    def cache_put(self, key: str, value: str) -> None: ...

    @abstractmethod
    def cache_drop(self, prefix: str) -> int:
        """Forget the kept answers whose key starts with ``prefix``; how many."""


class ConfigStore(ABC):
    @abstractmethod
    def remember_config(self, repo: str, text: str | None) -> None:
        """The repository's settings file as just read (None: it has none, so the defaults apply)."""

    @abstractmethod
    def last_config(self, repo: str) -> dict[str, Any] | None:
        """``{"text", "read_at"}`` of the settings last read for the repository, or None if never."""


class LockStore(ABC):
    @abstractmethod
    def try_lock(self, name: str, owner: str, now: float, ttl: float) -> bool:
        """Take the named lock unless someone else holds an unexpired one (the owner renews it)."""

    @abstractmethod
    def unlock(self, name: str, owner: str) -> None: ...

    @abstractmethod
    def lock_holder(self, name: str, now: float) -> str | None:
        """The owner of the named lock while it is held, else None."""


class ModelStore(ABC):
    """Model versions kept in the database (``bot/modelstore.py``'s ``DatabaseModels`` reads and writes
    them with the same meaning as a model directory's files)."""

    @abstractmethod
    def save_model(self, scope: str, version: str, meta: dict[str, Any], model: bytes) -> bool:
        """Store a complete version (its meta.json and its gzip pickle), not active; False when the
        scope has a version of that name already (a copy made twice)."""

    @abstractmethod
    def activate_model(self, scope: str, version: str) -> bool:
        """Make the version active (and note it among the scope's activations); False when there is
        no such version."""

    @abstractmethod
    def model_activations(self, scope: str) -> list[str]:
        """The versions made active in the scope, oldest first (a version again each time it was)."""

    @abstractmethod
    def active_model(self, scope: str) -> str | None: ...

    @abstractmethod
    def model_record(self, scope: str, version: str) -> dict[str, Any] | None:
        """``{"meta", "trial", "trials"}`` of a version (its own trial or None, later trials oldest
        first), None when there is no such version."""

    @abstractmethod
    def model_blob(self, scope: str, version: str) -> bytes | None:
        """The version's gzip pickle."""

    @abstractmethod
    def write_model_trial(self, scope: str, version: str, figures: dict[str, Any]) -> None:
        """The version's own trial (made when it was trained)."""

    @abstractmethod
    def add_model_trial(self, scope: str, version: str, figures: dict[str, Any]) -> bool:
        """A later trial of the version; False when there is no such version."""

    @abstractmethod
    def model_versions(self, scope: str) -> list[str]:
        """The scope's versions, oldest first."""

    @abstractmethod
    def model_scopes(self) -> list[str]:
        """The scopes that have a version (``""`` and repositories)."""

    @abstractmethod
    def note_model_retrain(self, scope: str, outcome: dict[str, Any]) -> None: ...

    @abstractmethod
    def last_model_retrain(self, scope: str) -> dict[str, Any] | None: ...


class Store(
    QueueStore,
    HistoryStore,
    TrainingStore,
    ChangeStore,
    QuarantineStore,
    IncidentStore,
    BackfillStore,
    ConfigStore,
    LockStore,
    ModelStore,
    Masking,
):
    """Everything flakebot keeps, synchronous. A backend's methods of this interface mask the secrets
    in their arguments (``bot/store/masking.py``): the masking wraps them when the backend class is
    defined, so none can forget it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.mask_methods(Store)

    @abstractmethod
    def close(self) -> None: ...


# --- the service's interface: the same, awaited ------------------------------------------------------
class AsyncQueueStore(ABC):
    @abstractmethod
    async def enqueue(self, forge: str, delivery_id: str, event: str, payload: bytes) -> bool: ...
    @abstractmethod
    async def claim(
        self, now: float, lease: float, owner: str = "", forges: Sequence[str] | None = None
    ) -> Delivery | None: ...
    @abstractmethod
    async def renew(self, delivery: int, until: float) -> None: ...
    @abstractmethod
    async def finish(self, delivery: int) -> None: ...
    @abstractmethod
    async def fail(self, delivery: int, error: str, retry_at: float | None) -> None: ...
    @abstractmethod
    async def recover(self, now: float, owners: list[str] | None = None) -> int: ...
    @abstractmethod
    async def working_owners(self) -> list[str]: ...
    @abstractmethod
    async def queue_depth(self) -> int: ...
    @abstractmethod
    async def deliveries(self, status: str | None = None) -> list[dict[str, Any]]: ...
    @abstractmethod
    async def defer(self, delivery: int, reason: str, until: float) -> int: ...
    @abstractmethod
    async def remember_body(self, forge: str, digest: bytes, now: float, window: float) -> bool: ...
    @abstractmethod
    async def forget_body(self, forge: str, digest: bytes) -> None: ...


class AsyncHistoryStore(ABC):
    @abstractmethod
    async def record_runs(self, repo: str, runs: list[HistoryRun]) -> list[HistoryRun]: ...
    @abstractmethod
    async def window(
        self, repo: str, test: str, job: str, limit: int, branch: str | None
    ) -> list[HistoryRun]: ...
    @abstractmethod
    async def summary(self, repo: str, test: str, job: str) -> HistorySummary: ...
    @abstractmethod
    async def save_score(self, repo: str, test: str, job: str, score: dict[str, Any]) -> None: ...
    @abstractmethod
    async def scores(self, repo: str | None = None) -> list[dict[str, Any]]: ...
    @abstractmethod
    async def tests_of_job(self, repo: str, job: str) -> list[str]: ...
    @abstractmethod
    async def recent_failures(self, repo: str, test: str, limit: int) -> list[HistoryRun]: ...
    @abstractmethod
    async def tests_like(self, repo: str, name: str, limit: int = 20) -> list[str]: ...
    @abstractmethod
    async def test_scores(self, repo: str, test: str) -> list[dict[str, Any]]: ...
    @abstractmethod
    async def repos(self) -> list[str]: ...
    @abstractmethod
    async def has_history(self, repo: str) -> bool: ...
    @abstractmethod
    async def test_runs(self, repo: str, test: str, job: str) -> list[HistoryRun]: ...
    @abstractmethod
    async def tests_recorded_since(self, repo: str, at: str) -> list[tuple[str, str]]: ...

    @abstractmethod
    async def score_inputs(
        self, repo: str, keys: list[tuple[str, str]], limit: int, branch: str | None
    ) -> list[tuple[list[HistoryRun], HistorySummary]]:
        """What scoring reads of each (test, job) of ``keys``, in their order: its :meth:`window` and
        its :meth:`summary`, in one trip."""

    @abstractmethod
    async def save_scores(self, repo: str, scores: list[tuple[str, str, dict[str, Any]]]) -> None:
        """:meth:`save_score` of each (test, job, score), in one trip."""


class AsyncTrainingStore(ABC):
    @abstractmethod
    async def record_failures(self, repo: str, failures: list[Failure]) -> None: ...
    @abstractmethod
    async def label_merged(self, repo: str, revision: str) -> int: ...
    @abstractmethod
    async def label_passed_on_retry(
        self, repo: str, run_id: int, before_attempt: int, tests: list[str] | None, job: str | None = None
    ) -> int: ...
    @abstractmethod
    async def label_by_human(self, repo: str, change_number: int, test: str, label: str, who: str) -> int: ...
    @abstractmethod
    async def failures_of_change(self, repo: str, change_number: int) -> list[dict[str, Any]]: ...
    @abstractmethod
    async def training_records(self, repo: str | None = None) -> list[dict[str, Any]]:
        """A list here (the service never streams them)."""

    @abstractmethod
    async def last_labelled(self) -> dict[str, str]: ...
    @abstractmethod
    async def label_weak(self, repo: str, labels: list[WeakLabel]) -> int: ...


class AsyncChangeStore(ABC):
    @abstractmethod
    async def change_state(self, repo: str, number: int) -> dict[str, Any]: ...
    @abstractmethod
    async def save_change_state(self, repo: str, number: int, state: dict[str, Any]) -> None: ...
    @abstractmethod
    async def save_change_run(self, repo: str, number: int, run: ChangeRun) -> None: ...
    @abstractmethod
    async def change_runs(self, repo: str, number: int) -> list[ChangeRun]: ...
    @abstractmethod
    async def remember_reply(self, repo: str, number: int, user: str, kind: str) -> bool: ...
    @abstractmethod
    async def forget_reply(self, repo: str, number: int, user: str, kind: str) -> None: ...
    @abstractmethod
    async def begin_rerun(self, repo: str, run_id: int, attempt: int) -> str | None: ...
    @abstractmethod
    async def end_rerun(self, repo: str, run_id: int, attempt: int, outcome: str) -> None: ...


class AsyncQuarantineStore(ABC):
    @abstractmethod
    async def set_quarantine(
        self,
        repo: str,
        test: str,
        *,
        number: int | None,
        url: str | None,
        state: str,
        jobs: Sequence[str] | None = None,
        expires_at: str | None = None,
    ) -> None: ...
    @abstractmethod
    async def quarantined(self, repo: str | None = None) -> list[dict[str, Any]]: ...
    @abstractmethod
    async def set_override(self, repo: str, test: str, override: str | None, who: str | None) -> None: ...
    @abstractmethod
    async def overrides(self, repo: str) -> dict[str, dict[str, Any]]: ...


class AsyncIncidentStore(ABC):
    @abstractmethod
    async def record_occurrences(self, repo: str, occurrences: Sequence[Occurrence]) -> int: ...
    @abstractmethod
    async def occurrences(self, repo: str, signatures: Sequence[str], since: str) -> list[Occurrence]: ...
    @abstractmethod
    async def save_incident(self, repo: str, incident: Incident) -> None: ...
    @abstractmethod
    async def incidents(self, repo: str | None = None, state: str | None = None) -> list[Incident]: ...
    @abstractmethod
    async def set_aside_runs(
        self, repo: str, runs: Sequence[tuple[int, int, str, str]], message: str
    ) -> list[tuple[str, str]]: ...


class AsyncBackfillStore(ABC):
    @abstractmethod
    async def backfill_state(self, repo: str) -> dict[str, Any] | None: ...
    @abstractmethod
    async def save_backfill(self, repo: str, fields: dict[str, Any], *, only_new: bool = False) -> bool: ...
    @abstractmethod
    async def add_backfill_runs(self, repo: str, runs: list[dict[str, Any]]) -> int: ...
    @abstractmethod
    async def pending_backfill_runs(self, repo: str, since: str, until: str) -> list[dict[str, Any]]: ...
    @abstractmethod
    async def finish_backfill_run(self, repo: str, run_id: int, jobs: int) -> None: ...
    @abstractmethod
    async def backfill_counts(self, repo: str, since: str, until: str) -> dict[str, int]: ...
    @abstractmethod
    async def backfill_failures(self, repo: str, since: str, until: str) -> list[HistoryRun]: ...
    @abstractmethod
    async def cache_get(self, key: str) -> str | None: ...
    @abstractmethod
    async def cache_put(self, key: str, value: str) -> None: ...
    @abstractmethod
    async def cache_drop(self, prefix: str) -> int: ...


class AsyncConfigStore(ABC):
    @abstractmethod
    async def remember_config(self, repo: str, text: str | None) -> None: ...
    @abstractmethod
    async def last_config(self, repo: str) -> dict[str, Any] | None: ...


class AsyncLockStore(ABC):
    @abstractmethod
    async def try_lock(self, name: str, owner: str, now: float, ttl: float) -> bool: ...
    @abstractmethod
    async def unlock(self, name: str, owner: str) -> None: ...
    @abstractmethod
    async def lock_holder(self, name: str, now: float) -> str | None: ...

    @abstractmethod
    def hold(self, name: str, owner: str, wait: float) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the named lock for a block of code, for as long as the holder lives: released at the
        block's end, and when the process dies (PostgreSQL: an advisory lock on the holder's
        connection; SQLite: a lock row renewed while held and released when its owner is found dead).
        TimeoutError when it is still held by another after ``wait`` seconds."""


class AsyncStore(
    AsyncQueueStore,
    AsyncHistoryStore,
    AsyncTrainingStore,
    AsyncChangeStore,
    AsyncQuarantineStore,
    AsyncIncidentStore,
    AsyncBackfillStore,
    AsyncConfigStore,
    AsyncLockStore,
    Masking,
):
    """What the service uses. ``blocking`` is the same store for code that runs in a worker thread
    (the model loader and model versions, scoring batches); never call it on the event loop."""

    blocking: Store
    score_batch = 20  # tests scored a trip (SQLite: the acknowledgements wait behind each trip)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.mask_methods(AsyncStore)
        cls.mask_methods(Store)  # a native backend's model methods, awaited through ``blocking``

    async def batch(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` off the event loop with the synchronous store: many small calls for the
        price of one hop (keep each batch short)."""
        import asyncio

        return await asyncio.to_thread(fn, self.blocking)

    def on_delivery(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` when another process stores a delivery (PostgreSQL: LISTEN/NOTIFY). In one
        process the webhook handler wakes the workers itself."""

    @abstractmethod
    async def aclose(self) -> None: ...
