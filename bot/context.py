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
from typing import Any

from bot.config import Settings
from bot.metrics import Metrics
from bot.modelstore import ModelError, ModelStore
from bot.store import AsyncStore

log = logging.getLogger(__name__)


class ModelProvider:
    """The active model of a model directory, reloaded when ``flakebot train`` or a retrain
    activates another version (checked on every use: reading a small file)."""

    def __init__(self, model_dir: str | os.PathLike[str]):
        self.store = ModelStore(model_dir)
        self._version: str | None = None
        self._model: Any = None
        self._meta: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def get(self) -> tuple[Any, dict[str, Any] | None]:
        """(model, meta), or (None, None) when no model has been trained yet. Blocking: call it in a thread."""
        with self._lock:
            active = self.store.active_version()
            if active is None:
                return None, None
            if active != self._version:
                try:
                    self._model, self._meta = self.store.load(active)
                    self._version = active
                    log.info("flake model %s loaded", active)
                except (ModelError, OSError, EOFError) as exc:
                    log.error("cannot load model %s: %s (keeping %s)", active, exc, self._version)
            return self._model, self._meta


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
