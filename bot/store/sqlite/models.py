"""Flake model versions kept in the database, on SQLite (the same tables as on PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

from bot.store.base import ModelStore
from bot.store.sqlite.db import SQLiteDB, now_iso


class SQLiteModels(SQLiteDB, ModelStore):
    def save_model(self, scope: str, version: str, meta: dict[str, Any], model: bytes) -> bool:
        with self.db.conn:
            return (
                self.db.execute(
                    "INSERT INTO model_versions (scope, version, meta, model, created_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [scope, version, json.dumps(meta, default=str), model, now_iso()],
                ).rowcount
                == 1
            )

    def activate_model(self, scope: str, version: str) -> bool:
        with self.db.conn:
            made = self.db.execute(
                "INSERT INTO model_active (scope, version, activated_at) SELECT scope, version, ? FROM "
                "model_versions WHERE scope = ? AND version = ? ON CONFLICT (scope) "
                "DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
                [now_iso(), scope, version],
            ).rowcount
            if made:
                self.db.execute(
                    "INSERT INTO model_activations (scope, version, at) VALUES (?, ?, ?)",
                    [scope, version, now_iso()],
                )
        return made == 1

    def model_activations(self, scope: str) -> list[str]:
        rows = self.db.execute("SELECT version FROM model_activations WHERE scope = ? ORDER BY id", [scope])
        return [r[0] for r in rows]

    def active_model(self, scope: str) -> str | None:
        row = self.db.execute("SELECT version FROM model_active WHERE scope = ?", [scope]).fetchone()
        return row[0] if row else None

    def model_record(self, scope: str, version: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT meta, trial FROM model_versions WHERE scope = ? AND version = ?", [scope, version]
        ).fetchone()
        if row is None:
            return None
        trials = self.db.execute(
            "SELECT figures FROM model_trials WHERE scope = ? AND version = ? ORDER BY id", [scope, version]
        ).fetchall()
        return {"meta": json.loads(row[0]), "trial": json.loads(row[1]) if row[1] else None,
                "trials": [json.loads(t[0]) for t in trials]}  # fmt: skip

    def model_blob(self, scope: str, version: str) -> bytes | None:
        row = self.db.execute(
            "SELECT model FROM model_versions WHERE scope = ? AND version = ?", [scope, version]
        ).fetchone()
        return bytes(row[0]) if row else None

    def write_model_trial(self, scope: str, version: str, figures: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE model_versions SET trial = ? WHERE scope = ? AND version = ?",
                [json.dumps(figures, default=str), scope, version],
            )

    def add_model_trial(self, scope: str, version: str, figures: dict[str, Any]) -> bool:
        with self.db.conn:
            return (
                self.db.execute(
                    "INSERT INTO model_trials (scope, version, figures, added_at) SELECT scope, version, ?, ? "
                    "FROM model_versions WHERE scope = ? AND version = ?",
                    [json.dumps(figures, default=str), now_iso(), scope, version],
                ).rowcount
                == 1
            )

    def model_versions(self, scope: str) -> list[str]:
        rows = self.db.execute(
            "SELECT version FROM model_versions WHERE scope = ? ORDER BY version", [scope]
        ).fetchall()
        return [r[0] for r in rows]

    def model_scopes(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT scope FROM model_versions ORDER BY scope")]

    def note_model_retrain(self, scope: str, outcome: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO model_retrains (scope, outcome, at) VALUES (?, ?, ?) ON CONFLICT (scope) "
                "DO UPDATE SET outcome = excluded.outcome, at = excluded.at",
                [scope, json.dumps(outcome, default=str), now_iso()],
            )

    def last_model_retrain(self, scope: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT outcome FROM model_retrains WHERE scope = ?", [scope]).fetchone()
        return json.loads(row[0]) if row else None
