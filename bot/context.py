"""What every handler needs: settings, the store, the active flake model, known issues, metrics."""

from __future__ import annotations

import contextlib
import logging
import threading
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


class ModelProvider:
    """The active flake model of a repository: its own (``/flake retrain``, ``flakebot retrain``) when
    it has one, else the shared model of the model directory (``flakebot train``). Reloaded when a
    retrain, a rollback or ``flakebot train`` activates another version (checked on every use: reading
    a small file)."""

    def __init__(self, model_root: ModelRoot):
        self.root = model_root if isinstance(model_root, Store) else Path(model_root)
        self.store = models_at(self.root, None)  # the shared one
        self._loaded: dict[Any, tuple[str, Any, dict[str, Any]]] = {}  # store root -> (version, model, meta)
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

    def get(self, repo: str | None = None) -> tuple[Any, dict[str, Any] | None]:
        """(model, meta) for the repository, or (None, None) when no model has been trained yet.
        Blocking: call it in a thread."""
        with self._lock:
            for _scope, store in self.stores(repo):
                active = store.active_version()
                if active is None:
                    continue
                model, meta = self._load(store, active)
                if model is not None:
                    return model, meta
            return None, None

    def _load(self, store: Models, active: str) -> tuple[Any, dict[str, Any] | None]:
        cached = self._loaded.get(store.root)
        if cached is not None and cached[0] == active:
            return cached[1], cached[2]
        try:
            model, meta = store.load(active)
        except (ModelError, OSError, EOFError) as exc:
            kept = cached[0] if cached else None
            log.error("cannot load model %s of %s: %s (keeping %s)", active, store.root, exc, kept)
            return (cached[1], cached[2]) if cached else (None, None)
        self._loaded[store.root] = (active, model, meta)
        log.info("flake model %s of %s loaded", active, store.root)
        return model, meta


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
