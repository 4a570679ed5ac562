"""What every handler needs: settings, the store, the active flake model, known issues, metrics."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.metrics import Metrics
from bot.modelstore import ModelError, ModelStore
from bot.store import AsyncStore, Store
from bot.store.owner import process_owner
from bot.storedmodels import DatabaseModels, ModelRoot, copy_versions, models_at

log = logging.getLogger(__name__)
Models = ModelStore | DatabaseModels


def model_stores(model_root: ModelRoot, repo: str | None) -> list[tuple[str, Models]]:
    """Where a repository's flake model is looked for, in order: its own ("repository", made by
    ``/flake retrain`` and ``flakebot retrain``), then the shared one ("shared", ``flakebot train``).
    ``model_root`` is a model directory, or the store (PostgreSQL: the models are in the database).
    ModelError for a name that is no repository's."""
    own = [("repository", models_at(model_root, repo))] if repo else []
    return [*own, ("shared", models_at(model_root, None))]


def active_model(model_root: ModelRoot, repo: str | None) -> tuple[str, Models, str] | None:
    """(scope, store, version) of the model that judges the repository's failures now, without loading
    it: the first of :func:`model_stores` with an active version."""
    for scope, store in model_stores(model_root, repo):
        version = store.active_version()
        if version is not None:
            return scope, store, version
    return None


RETRY_BROKEN_AFTER = 300.0  # seconds before a version that could not be loaded is tried again


@dataclass(frozen=True)
class LoadedModel:
    """The model that judges a repository's failures: ``model`` None when there is none; ``problem``
    says why it is not the active one (that could not be loaded), for the comment and ``/healthz``."""

    model: Any = None
    meta: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class _Loaded:
    active: str  # the version the store's ``active`` names
    model: Any
    meta: dict[str, Any] | None  # of the version in use: the active one, or the one fallen back on
    problem: str | None
    at: float


class ModelProvider:
    """The active flake model of a repository: its own (``/flake retrain``, ``flakebot retrain``) when
    it has one, else the shared model of the model directory (``flakebot train``). Reloaded when a
    retrain, a rollback or ``flakebot train`` activates another version (checked on every use: reading
    a small file).

    An active version that cannot be loaded (its file missing, cut or corrupt) is not taken for "no
    model": the version active before it that loads judges instead (``ModelStore.earlier_active``), the
    error is logged, and :meth:`load` and :meth:`health` say so; the broken one is tried again every
    :data:`RETRY_BROKEN_AFTER` seconds, so a repaired file is used again without a restart."""

    def __init__(self, model_root: ModelRoot):
        self.root = model_root if isinstance(model_root, Store) else Path(model_root)
        self.store = models_at(self.root, None)  # the shared one
        self._loaded: dict[Any, _Loaded] = {}  # store root -> what is in use
        self._lock = threading.Lock()

    @classmethod
    def for_service(cls, settings: Settings, store: Store) -> ModelProvider:
        """The service's models: the model directory's with SQLite; the database's with PostgreSQL,
        where an empty database first gets the model directory's versions (the model shipped with the
        app). Blocking: call it in a thread."""
        if not settings.database_url:
            return cls(settings.model_dir)
        provider = cls(store)
        if provider.store.active_version() is None and ModelStore(settings.model_dir).active_version():
            copied = copy_versions(ModelStore(settings.model_dir), provider.store)
            log.info(
                "the database had no shared model: %d version(s) of %s copied in",
                len(copied),
                settings.model_dir,
            )
        return provider

    def repo_store(self, repo: str) -> Models:
        """The model store of a repository ("forge:owner/name"); ModelError for a name that is not one."""
        return models_at(self.root, repo)

    def stores(self, repo: str | None) -> list[tuple[str, Models]]:
        """:func:`model_stores`; only the shared one for a name that is no repository's (logged)."""
        try:
            return model_stores(self.root, repo)
        except ModelError as exc:
            log.warning("%s", exc)
            return [("shared", self.store)]

    def active(self, repo: str | None = None) -> tuple[str, Models, str] | None:
        """(scope, store, version) of the model that judges the repository's failures, without loading it."""
        try:
            return active_model(self.root, repo)
        except ModelError as exc:
            log.warning("%s", exc)
            return active_model(self.root, None)

    def load(self, repo: str | None = None) -> LoadedModel:
        """The model that judges the repository's failures (see the class doc). Blocking: call it in a
        thread."""
        problems = []
        with self._lock:
            for _scope, store in self.stores(repo):
                active = store.active_version()
                if active is None:
                    continue
                loaded = self._load(store, active)
                if loaded.model is None:
                    problems.append(loaded.problem or "")
                    continue
                if problems and loaded.problem is None:  # the repository's own is broken: the shared judged
                    problems.append(f"the shared model {active} judged instead")
                elif loaded.problem:
                    problems.append(loaded.problem)
                return LoadedModel(loaded.model, loaded.meta, "; ".join(problems) or None)
        if problems:
            problems[-1] += (
                ": every failure is unknown until it is repaired or rolled back (flakebot rollback)"
            )
        return LoadedModel(problem="; ".join(problems) or None)

    def get(self, repo: str | None = None) -> tuple[Any, dict[str, Any] | None]:
        """(model, meta) for the repository, or (None, None) when there is no model (:meth:`load`)."""
        loaded = self.load(repo)
        return loaded.model, loaded.meta

    def health(self) -> dict[str, Any]:
        """The shared model as ``/healthz`` shows it: the version named active, the one in use, and
        every load error known (of the shared model and of the repositories' own). Blocking."""
        self.load(None)
        with self._lock:
            shared = self._loaded.get(self.store.root)
            errors = [entry.problem for entry in self._loaded.values() if entry.problem]
        return {
            "active": self.store.active_version(),
            "in_use": shared.meta.get("version") if shared and shared.meta else None,
            "errors": errors,
        }

    def _load(self, store: Models, active: str) -> _Loaded:
        cached = self._loaded.get(store.root)
        fresh = cached is not None and (
            cached.problem is None or time.monotonic() - cached.at < RETRY_BROKEN_AFTER
        )
        if cached is not None and cached.active == active and fresh:
            return cached
        try:
            model, meta = store.load(active)
        except Exception as exc:  # a cut, corrupt or foreign file fails in any way unpickling can
            loaded = self._fall_back(store, active, f"{type(exc).__name__}: {exc}")
        else:
            loaded = _Loaded(active, model, meta, None, time.monotonic())
            log.info("flake model %s of %s loaded", active, store.root)
        self._loaded[store.root] = loaded
        return loaded

    def _fall_back(self, store: Models, broken: str, error: str) -> _Loaded:
        """The version active before ``broken`` that loads, with the problem worded for the comment."""
        for version in store.earlier_active(broken):
            try:
                model, meta = store.load(version)
            except Exception as exc:  # as in _load
                log.error("cannot load model %s of %s either: %s", version, store.root, exc)
                continue
            problem = (f"the active flake model {broken} could not be loaded ({error}): the failures were "
                       f"judged by the previous version {version}")  # fmt: skip
            log.error("cannot load model %s of %s (%s): using the previous version %s", broken, store.root,
                      error, version)  # fmt: skip
            return _Loaded(broken, model, meta, problem, time.monotonic())
        problem = (
            f"the active flake model {broken} could not be loaded ({error}) and no earlier version could"
        )
        log.error("cannot load model %s of %s (%s), and no earlier version loads", broken, store.root, error)
        return _Loaded(broken, None, None, problem, time.monotonic())


@dataclass
class Context:
    settings: Settings
    store: AsyncStore
    models: ModelProvider
    metrics: Metrics = field(default_factory=Metrics)
    known_issues: Any = None  # bot.known_issues.KnownIssues, when configured
    owner: str = field(default_factory=process_owner)

    @contextlib.asynccontextmanager
    async def lock(self, name: str, wait: float = 60.0) -> AsyncIterator[None]:
        """A named lock in the store, so it holds across instances sharing a database, and lives no
        longer than its holder (``AsyncStore.hold``): a crashed process leaves none behind."""
        owner = f"{self.owner}/{uuid.uuid4().hex[:12]}"  # each holder its own, even within a process
        async with self.store.hold(name, owner, wait):
            yield
