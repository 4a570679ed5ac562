"""Flake model versions kept in the store's database, with the meaning of a model directory's files.

With PostgreSQL (``FLAKEBOT_DATABASE_URL``) the models live in the database, so every instance serves
the same model and a retrain on one is seen by all. :class:`DatabaseModels` has the methods of
:class:`bot.modelstore.ModelStore` and keeps exactly its semantics: a version has its ``meta`` (what
``meta.json`` holds), its own ``trial`` (``trial.json``: the held-out trial made when it was trained)
and later ``trials`` (``trials.jsonl``: ``flakebot trial`` runs, oldest first); ``meta(version)``
merges them as the directory store does, so :func:`bot.modelstore.retry_threshold` picks the same
threshold. A version is written whole in one statement and the active one switched in another: a
reader sees the old model or the new one. ``scope`` is ``""`` for the shared model, a repository's key
(``"github:owner/name"``) for its own.

:func:`models_at` picks the place of a scope's models: a model directory (a path) or the store.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sklearn

from bot import __version__
from bot.modelstore import MODEL_FORMAT, ModelError, ModelStore, fall_back_order, repo_dir, retry_threshold
from bot.store import Store, is_database_url, open_store

ModelRoot = str | os.PathLike[str] | Store  # a model directory, or the store's database


class DatabaseModels:
    def __init__(self, store: Store, scope: str = ""):
        self.db, self.scope = store, scope
        self.root = f"the database ({scope or 'shared model'})"

    def __repr__(self) -> str:
        return f"DatabaseModels({self.scope!r})"

    # --- writing -------------------------------------------------------------------------------
    def save(self, model: Any, meta: dict[str, Any], *, activate: bool = True) -> str:
        now = datetime.now(UTC)
        version = f"{now:%Y%m%dT%H%M%S%fZ}-{os.urandom(2).hex()}"  # sorts by time, as in a directory
        full_meta = {"version": version, "format": MODEL_FORMAT, "created_at": f"{now:%Y-%m-%dT%H:%M:%SZ}",
                     "flakebot": __version__, "scikit_learn": sklearn.__version__, **meta}  # fmt: skip
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as out:
            pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
        self.db.save_model(
            self.scope, version, json.loads(json.dumps(full_meta, default=str)), buffer.getvalue()
        )
        if activate:
            self.activate(version)
        return version

    def activate(self, version: str) -> None:
        if not self.db.activate_model(self.scope, version):
            raise ModelError(f"no model version {version!r} in {self.root}")

    def write_trial(self, version: str, figures: dict[str, Any]) -> None:
        self.db.write_model_trial(self.scope, version, figures)

    def add_trial(self, version: str, figures: dict[str, Any]) -> None:
        if not self.db.add_model_trial(self.scope, version, figures):
            raise ModelError(f"no model version {version!r} in {self.root}")

    def note_retrain(self, outcome: dict[str, Any]) -> None:
        self.db.note_model_retrain(self.scope, outcome)

    def last_retrain(self) -> dict[str, Any] | None:
        return self.db.last_model_retrain(self.scope)

    # --- reading -------------------------------------------------------------------------------
    def active_version(self) -> str | None:
        return self.db.active_model(self.scope)

    def meta(self, version: str) -> dict[str, Any]:
        record = self.db.model_record(self.scope, version)
        if record is None:
            raise ModelError(f"no model version {version!r} in {self.root}")
        meta = record["meta"]
        if record["trial"] is not None:
            meta["trial"] = record["trial"]
        if record["trials"]:
            meta["trials"] = record["trials"]
        return meta

    def load(self, version: str | None = None) -> tuple[Any, dict[str, Any]]:
        version = version or self.active_version()
        if version is None:
            raise ModelError(
                f"no model in {self.root}: train one with `flakebot train DATA.jsonl --model URL`"
            )
        meta = self.meta(version)
        if meta.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"model {version} has format {meta.get('format')}, this flakebot reads format {MODEL_FORMAT}: retrain it"
            )
        blob = self.db.model_blob(self.scope, version)
        if blob is None:
            raise ModelError(f"no model version {version!r} in {self.root}")
        with gzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb") as src:
            model = pickle.load(src)  # noqa: S301 - the service's own database
        if hasattr(model, "retry_threshold_"):
            model.retry_threshold_ = retry_threshold(meta)
        return model, meta

    def earlier_active(self, version: str) -> list[str]:
        """The versions that were active before ``version``, the latest first (as a model directory's,
        ``bot.modelstore.fall_back_order``): what to fall back on when ``version`` cannot be loaded."""

        def own_trial(name: str) -> dict[str, Any] | None:
            record = self.db.model_record(self.scope, name)
            return record["trial"] if record else None

        return fall_back_order(
            version, self.db.model_activations(self.scope), self.db.model_versions(self.scope), own_trial
        )

    def versions(self) -> list[dict[str, Any]]:
        active = self.active_version()
        found = []
        for version in self.db.model_versions(self.scope):
            meta = self.meta(version)
            meta["active"] = version == active
            found.append(meta)
        return sorted(found, key=lambda m: m["version"], reverse=True)


def models_at(root: ModelRoot, repo: str | None) -> ModelStore | DatabaseModels:
    """The shared models (``repo`` None) or a repository's own, in a model directory or in the store.
    ModelError for a name that is no repository's."""
    if isinstance(root, Store):
        if repo:
            repo_dir(".", repo)  # the same names as on disk
        return DatabaseModels(root, repo or "")
    return ModelStore(repo_dir(root, repo) if repo else root)


def open_models(spec: str | Path) -> ModelStore | DatabaseModels:
    """``--model`` of the command line: a model directory, or a PostgreSQL URL (the shared model)."""
    if is_database_url(str(spec)):
        return DatabaseModels(open_store("", str(spec)))
    return ModelStore(spec)


def copy_versions(source: ModelStore | DatabaseModels, target: ModelStore | DatabaseModels) -> list[str]:
    """Copy the versions ``target`` lacks, with their trials, and make ``source``'s active one active
    there (when ``target`` has none): how a model directory comes into the database. Returns the
    versions copied."""
    have = {m["version"] for m in target.versions()}
    copied = []
    for meta in reversed(source.versions()):
        version = meta["version"]
        if version in have:
            continue
        model, _ = source.load(version)
        own = {k: v for k, v in meta.items() if k not in ("trial", "trials", "active")}
        if not _save_as(target, version, own, model):
            continue  # another instance copied it meanwhile
        if "trial" in meta:
            target.write_trial(version, meta["trial"])
        for trial in meta.get("trials") or []:
            target.add_trial(version, trial)
        copied.append(version)
    active = source.active_version()
    if active is not None and target.active_version() is None:
        target.activate(active)
    return copied


def _save_as(target: ModelStore | DatabaseModels, version: str, meta: dict[str, Any], model: Any) -> bool:
    """Store a version under its own name and meta (a copy, not a new version); False when it is there."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as out:
        pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
    if isinstance(target, DatabaseModels):
        return target.db.save_model(target.scope, version, meta, buffer.getvalue())
    folder = target.versions_dir / version
    folder.mkdir(parents=True, exist_ok=False)
    (folder / "model.pkl.gz").write_bytes(buffer.getvalue())
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return True
