"""What every handler needs: settings, the store, the active flake model, known issues, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.metrics import Metrics
from bot.modelstore import ModelError, ModelStore, repo_dir
from bot.store import AsyncStore

log = logging.getLogger(__name__)


def model_stores(model_root: str | os.PathLike[str], repo: str | None) -> list[tuple[str, ModelStore]]:
    """Where a repository's flake model is looked for, in order: its own ("repository", made by
    ``/flake retrain`` and ``flakebot retrain``), then the shared one ("shared", ``flakebot train``).
    ModelError for a name that is no repository's."""
    own = [("repository", ModelStore(repo_dir(model_root, repo)))] if repo else []
    return [*own, ("shared", ModelStore(model_root))]


def active_model(model_root: str | os.PathLike[str], repo: str | None) -> tuple[str, ModelStore, str] | None:
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

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.root = Path(model_dir)
        self.store = ModelStore(model_dir)  # the shared one
        self._loaded: dict[Path, tuple[str, Any, dict[str, Any]]] = {}  # store root -> (version, model, meta)
        self._lock = threading.Lock()

    def repo_store(self, repo: str) -> ModelStore:
        """The model store of a repository ("forge:owner/name"); ModelError for a name that is not one."""
        return ModelStore(repo_dir(self.root, repo))

    def stores(self, repo: str | None) -> list[tuple[str, ModelStore]]:
        """:func:`model_stores`; only the shared one for a name that is no repository's (logged)."""
        try:
            return model_stores(self.root, repo)
        except ModelError as exc:
            log.warning("%s", exc)
            return [("shared", self.store)]

    def active(self, repo: str | None = None) -> tuple[str, ModelStore, str] | None:
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

    def _load(self, store: ModelStore, active: str) -> tuple[Any, dict[str, Any] | None]:
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
    owner: str = field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    @contextlib.asynccontextmanager
    async def lock(self, name: str, ttl: float = 120.0, wait: float = 60.0) -> AsyncIterator[None]:
        """A named lock in the store (so it also holds across instances sharing a database)."""
        deadline = time.monotonic() + wait
        owner = f"{self.owner}:{uuid.uuid4().hex[:12]}"  # each holder its own, even within a process
        while not await self.store.try_lock(name, owner, time.time(), ttl):
            if time.monotonic() > deadline:
                raise TimeoutError(f"lock {name} is still held after {wait:.0f}s")
            await asyncio.sleep(0.05)
        try:
            yield
        finally:
            await self.store.unlock(name, owner)
