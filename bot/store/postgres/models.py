"""Flake model versions on PostgreSQL: every instance serves the same model, and sees a retrain made
on any of them. Called through ``BlockingStore`` (the model loader runs in a worker thread)."""

from __future__ import annotations

import json
from typing import Any

from bot.store.postgres.db import PostgresDB, now_iso


class PostgresModels(PostgresDB):
    async def save_model(self, scope: str, version: str, meta: dict[str, Any], model: bytes) -> bool:
        return (
            await self._exec(
                "INSERT INTO model_versions (scope, version, meta, model, created_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [scope, version, json.dumps(meta, default=str), model, now_iso()],
            )
            == 1
        )

    async def activate_model(self, scope: str, version: str) -> bool:
        row = await self._one(
            "WITH made AS (INSERT INTO model_active (scope, version, activated_at) SELECT scope, version, %(now)s "
            "FROM model_versions WHERE scope = %(scope)s AND version = %(version)s ON CONFLICT (scope) "
            "DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at RETURNING scope, version), "
            "noted AS (INSERT INTO model_activations (scope, version, at) SELECT scope, version, %(now)s FROM made) "
            "SELECT count(*) AS n FROM made",
            {"now": now_iso(), "scope": scope, "version": version},
        )
        return bool(row and row["n"] == 1)

    async def model_activations(self, scope: str) -> list[str]:
        rows = await self._rows("SELECT version FROM model_activations WHERE scope = %s ORDER BY id", [scope])
        return [r["version"] for r in rows]

    async def active_model(self, scope: str) -> str | None:
        row = await self._one("SELECT version FROM model_active WHERE scope = %s", [scope])
        return row["version"] if row else None

    async def model_record(self, scope: str, version: str) -> dict[str, Any] | None:
        row = await self._one(
            "SELECT meta, trial, ARRAY(SELECT figures FROM model_trials t WHERE t.scope = v.scope AND "
            "t.version = v.version ORDER BY t.id) AS trials FROM model_versions v WHERE scope = %s AND version = %s",
            [scope, version],
        )
        if row is None:
            return None
        return {"meta": json.loads(row["meta"]), "trial": json.loads(row["trial"]) if row["trial"] else None,
                "trials": [json.loads(t) for t in row["trials"]]}  # fmt: skip

    async def model_blob(self, scope: str, version: str) -> bytes | None:
        row = await self._one(
            "SELECT model FROM model_versions WHERE scope = %s AND version = %s", [scope, version]
        )
        return bytes(row["model"]) if row else None

    async def write_model_trial(self, scope: str, version: str, figures: dict[str, Any]) -> None:
        await self._exec(
            "UPDATE model_versions SET trial = %s WHERE scope = %s AND version = %s",
            [json.dumps(figures, default=str), scope, version],
        )

    async def add_model_trial(self, scope: str, version: str, figures: dict[str, Any]) -> bool:
        return (
            await self._exec(
                "INSERT INTO model_trials (scope, version, figures, added_at) SELECT scope, version, %s, %s "
                "FROM model_versions WHERE scope = %s AND version = %s",
                [json.dumps(figures, default=str), now_iso(), scope, version],
            )
            == 1
        )

    async def model_versions(self, scope: str) -> list[str]:
        rows = await self._rows(
            'SELECT version FROM model_versions WHERE scope = %s ORDER BY version COLLATE "C"', [scope]
        )
        return [r["version"] for r in rows]

    async def model_scopes(self) -> list[str]:
        rows = await self._rows('SELECT scope FROM model_versions GROUP BY scope ORDER BY scope COLLATE "C"')
        return [r["scope"] for r in rows]

    async def note_model_retrain(self, scope: str, outcome: dict[str, Any]) -> None:
        await self._exec(
            "INSERT INTO model_retrains (scope, outcome, at) VALUES (%s, %s, %s) ON CONFLICT (scope) "
            "DO UPDATE SET outcome = excluded.outcome, at = excluded.at",
            [scope, json.dumps(outcome, default=str), now_iso()],
        )

    async def last_model_retrain(self, scope: str) -> dict[str, Any] | None:
        row = await self._one("SELECT outcome FROM model_retrains WHERE scope = %s", [scope])
        return json.loads(row["outcome"]) if row else None
