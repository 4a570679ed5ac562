"""The embedded store: one SQLite file through sqlite-utils, for one instance.

WAL journal, so ``flakebot scores`` can read while the service writes; ``synchronous=NORMAL``: a
delivery acknowledged is on disk as far as the operating system is concerned, so a crash or a
``kill -9`` of flakebot loses nothing (a power cut may lose the last transactions).

One service per file: the service holds an exclusive lock on ``flakebot.db.service`` beside the
database for as long as it runs, and a second one refuses to start (SQLite serves one instance;
several share PostgreSQL). The command line and the retrain process may open the file meanwhile.

Each concern of the interface is a module of this package; this one opens the file and brings its
schema up to date (``bot/store/migrations.py``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

import sqlite_utils

from bot.store import StoreError
from bot.store.base import Store
from bot.store.migrations import migrate_sqlite
from bot.store.sqlite.backfill import SQLiteBackfill
from bot.store.sqlite.changes import SQLiteChanges
from bot.store.sqlite.configs import SQLiteConfigs
from bot.store.sqlite.history import SQLiteHistory
from bot.store.sqlite.incidents import SQLiteIncidents
from bot.store.sqlite.models import SQLiteModels
from bot.store.sqlite.quarantine import SQLiteQuarantine
from bot.store.sqlite.queue import SQLiteQueue
from bot.store.sqlite.training import SQLiteTraining


def _refuse_an_empty_file(path: Path) -> None:
    """SQLite takes a zero-byte file for a new database; for flakebot it is one that lost its data (a
    failed copy or restore, a full disk), and going on would drop all history without a word."""
    if path.is_file() and path.stat().st_size == 0:
        raise StoreError(
            f"{path} is empty (0 bytes): flakebot's database, with the test history, the comments' and "
            "quarantines' state and the deliveries already handled, was probably truncated (a failed copy "
            "or restore, a full disk). flakebot does not start on it, as that would lose all of this without "
            f"a word. Restore it from a backup; to start afresh on purpose, delete it (rm {path}) and "
            "flakebot makes a new one"
        )


def _guard(path: Path) -> int:
    """Hold the service's lock on the database (released by the kernel when the process ends, however
    it ends); StoreError when another service holds it."""
    lock = path.with_name(path.name + ".service")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(
            f"another flakebot service ({holder}) is running on {path}. SQLite serves one instance: stop the "
            "other one first, or, to run several instances, give them one PostgreSQL database "
            "(FLAKEBOT_DATABASE_URL; docs/deploy.md)"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode(), 0)
    return fd


class SQLiteStore(
    SQLiteQueue,
    SQLiteHistory,
    SQLiteTraining,
    SQLiteChanges,
    SQLiteQuarantine,
    SQLiteIncidents,
    SQLiteBackfill,
    SQLiteConfigs,
    SQLiteModels,
    Store,
):
    """``guard``: this process is the service of the file (a second one refuses to start)."""

    def __init__(self, path: str | Path, *, guard: bool = False):
        self.path = str(path)
        _refuse_an_empty_file(Path(path))
        self._guard = _guard(Path(path)) if guard else None
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.isolation_level = None  # the migrations say where their transactions begin and end
            migrate_sqlite(conn)
            conn.isolation_level = ""
            self.db = sqlite_utils.Database(conn)
        except (sqlite3.DatabaseError, StoreError) as exc:
            conn.close()
            self._release()
            if isinstance(exc, StoreError) or "locked" in str(exc) or "busy" in str(exc):
                raise
            raise StoreError(
                f"{path} is not a readable flakebot database ({exc}). Restore it from a backup, or move it "
                "away to start afresh (flakebot then makes a new, empty one)"
            ) from exc

    def _release(self) -> None:
        if self._guard is not None:
            os.close(self._guard)
            self._guard = None

    def close(self) -> None:
        self.db.conn.close()
        self._release()
