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

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.root = Path(model_dir)
        self.store = ModelStore(model_dir)  # the shared one
        self._loaded: dict[Path, _Loaded] = {}  # store root -> what is in use
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

    def _load(self, store: ModelStore, active: str) -> _Loaded:
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

    def _fall_back(self, store: ModelStore, broken: str, error: str) -> _Loaded:
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
