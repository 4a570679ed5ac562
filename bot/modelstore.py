"""Versioned model files with an atomic switch of the active one.

::

    DIR/
      active                     the active version's name (replaced atomically)
      versions/<version>/
        model.pkl.gz             the fitted FlakeClassifier (gzip pickle)
        meta.json                what it was trained on, its parameters and summary
        trial.json               its trial figures, when it has been trialled

A version directory is written under a temporary name and renamed into place when complete, and
``active`` is swapped with ``os.replace``: a reader (the running bot) sees the old model or the new
one, never half of one; a training run that fails or is interrupted leaves the active model as it
was. Loading a model unpickles it: only load model directories you trust.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sklearn

from bot import __version__

MODEL_FORMAT = 1


class ModelError(Exception):
    """No usable model: a clear message for the user."""


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    # --- writing -------------------------------------------------------------------------------
    def save(self, model: Any, meta: dict[str, Any], *, activate: bool = True) -> str:
        """Store a fitted model as a new version (and make it active). Returns the version name."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        version = f"{now:%Y%m%dT%H%M%S%fZ}-{os.urandom(2).hex()}"  # sorts by time
        full_meta = {
            "version": version,
            "format": MODEL_FORMAT,
            "created_at": f"{now:%Y-%m-%dT%H:%M:%SZ}",
            "flakebot": __version__,
            "scikit_learn": sklearn.__version__,
            **meta,
        }
        tmp = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=".incoming-"))
        try:
            with gzip.open(tmp / "model.pkl.gz", "wb", compresslevel=6) as out:
                pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
            (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2, default=str) + "\n")
            os.replace(tmp, self.versions_dir / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if activate:
            self.activate(version)
        return version

    def activate(self, version: str) -> None:
        if not (self.versions_dir / version / "model.pkl.gz").is_file():
            raise ModelError(f"no model version {version!r} in {self.root}")
        _write_atomic(self.root / "active", (version + "\n").encode())

    def write_trial(self, version: str, figures: dict[str, Any]) -> None:
        path = self.versions_dir / version / "trial.json"
        _write_atomic(path, (json.dumps(figures, indent=2, default=str) + "\n").encode())

    # --- reading -------------------------------------------------------------------------------
    def active_version(self) -> str | None:
        try:
            return (self.root / "active").read_text().strip() or None
        except FileNotFoundError:
            return None

    def meta(self, version: str) -> dict[str, Any]:
        folder = self.versions_dir / version
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"no model version {version!r} in {self.root}") from exc
        trial = folder / "trial.json"
        if trial.is_file():
            meta["trial"] = json.loads(trial.read_text())
        return meta

    def load(self, version: str | None = None) -> tuple[Any, dict[str, Any]]:
        """The model and its metadata (the active version unless one is named)."""
        version = version or self.active_version()
        if version is None:
            raise ModelError(
                f"no model in {self.root}: train one with `flakebot train DATA.jsonl --model {self.root}`"
            )
        meta = self.meta(version)
        if meta.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"model {version} has format {meta.get('format')}, this flakebot reads format {MODEL_FORMAT}: retrain it"
            )
        with gzip.open(self.versions_dir / version / "model.pkl.gz", "rb") as src:
            model = pickle.load(src)  # noqa: S301 - model directories are trusted local files
        return model, meta

    def versions(self) -> list[dict[str, Any]]:
        """Every complete version, newest first, with ``active`` set on the active one."""
        if not self.versions_dir.is_dir():
            return []
        active = self.active_version()
        found = []
        for folder in self.versions_dir.iterdir():
            if folder.name.startswith(".") or not (folder / "model.pkl.gz").is_file():
                continue
            meta = self.meta(folder.name)
            meta["active"] = folder.name == active
            found.append(meta)
        return sorted(found, key=lambda m: m["version"], reverse=True)
