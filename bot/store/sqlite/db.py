"""What every part of the SQLite backend shares: the connection and two helpers."""

from __future__ import annotations

import time
from typing import Any

import sqlite_utils


class SQLiteDB:
    db: sqlite_utils.Database

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
