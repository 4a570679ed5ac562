"""flakebot's storage behind one interface, split by concern (``bot/store/base.py``).

:class:`Store` is everything the service keeps: the durable queue of webhook deliveries, every judged
test run (passes too), the failures kept for retraining with their labels, each change's comment
state and the re-runs asked for, quarantine issues, infrastructure incidents, the backfills of
repositories' CI histories, named locks, and (on PostgreSQL) the flake model versions. Two backends
implement it:

* **SQLite** (``bot/store/sqlite/``), the embedded default: one file in the data directory, for one
  instance (a second service on the same file refuses to start);
* **PostgreSQL** (``bot/store/postgres/``), chosen by ``FLAKEBOT_DATABASE_URL``: several instances on
  one database (psycopg 3 and its asynchronous connection pool; the queue claims with ``FOR UPDATE SKIP
  LOCKED`` and wakes workers with ``LISTEN/NOTIFY``; a lock per change is an advisory lock).

The schema of both is versioned (``bot/store/migrations.py``) and brought up to date when a store is
opened. The service uses an :class:`AsyncStore` (:func:`open_async_store`), the command line a
:class:`Store` (:func:`open_store`). Nothing secret is stored (``bot/store/masking.py``).
"""

from __future__ import annotations

from pathlib import Path

from bot.store.base import (
    AsyncStore,
    BackfillStore,
    ChangeStore,
    HistoryStore,
    IncidentStore,
    LockStore,
    ModelStore,
    QuarantineStore,
    QueueStore,
    Store,
    TrainingStore,
)
from bot.store.masking import masked
from bot.store.records import ChangeRun, Delivery, Failure, HistoryRun, WeakLabel

__all__ = [
    "AsyncStore",
    "BackfillStore",
    "ChangeRun",
    "ChangeStore",
    "Delivery",
    "Failure",
    "HistoryRun",
    "HistoryStore",
    "IncidentStore",
    "LockStore",
    "ModelStore",
    "QuarantineStore",
    "QueueStore",
    "Store",
    "StoreError",
    "TrainingStore",
    "WeakLabel",
    "is_database_url",
    "masked",
    "open_async_store",
    "open_store",
]  # fmt: skip


class StoreError(Exception):
    """The database cannot be used as it is (empty, corrupt, newer than this flakebot, in use by another
    service); the message says what to do."""


def is_database_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))


def configured_url() -> str | None:
    """``FLAKEBOT_DATABASE_URL`` (the command line reads it from the environment, as the service does:
    the URL may hold a password, never given on a command line)."""
    import os

    return (os.environ.get("FLAKEBOT_DATABASE_URL") or "").strip() or None


def open_store(data_dir: str | Path, url: str | None = None) -> Store:
    """The store for the command line: PostgreSQL at ``url`` when given, else SQLite in
    ``data_dir/flakebot.db`` (made when missing). Raises :class:`StoreError` for a database that cannot
    be used as it is."""
    if url:
        from bot.store.adapters import BlockingStore
        from bot.store.postgres import PostgresStore

        return BlockingStore.start(lambda: PostgresStore.open(url))
    from bot.store.sqlite import SQLiteStore

    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(path / "flakebot.db")


async def open_async_store(
    data_dir: str | Path, url: str | None = None, *, service: bool = False, lease: float = 120.0
) -> AsyncStore:
    """The store for the service. ``service``: this process is *the* service of an SQLite file, and
    refuses to start while another one runs on it. ``lease``: how long a lock held for a block of code
    lasts without renewal on SQLite (the queue's lease; PostgreSQL's advisory locks need none)."""
    if url:
        from bot.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    from bot.store.adapters import ThreadedStore
    from bot.store.sqlite import SQLiteStore

    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return ThreadedStore(SQLiteStore(path / "flakebot.db", guard=service), lock_lease=lease)
