"""Versioned model files with an atomic switch of the active one.

::

    DIR/
      active                     the active version's name (replaced atomically)
      versions/<version>/
        model.pkl.gz             the fitted FlakeClassifier (gzip pickle)
        meta.json                what it was trained on, its parameters and summary
        trial.json               its own trial: the held-out trial made when it was trained
        trials.jsonl             later trials (`flakebot trial`), one a line, newest last
      activations.jsonl          each version made active, when (one a line, newest last): the versions
                                 to fall back on when the active one cannot be loaded
      last_retrain.json          the outcome of the latest retrain (promoted, kept or refused)
      repos/<forge>/<owner>/<name>/
                                 a repository's own models, laid out the same way (``repo_store``)

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
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sklearn

from bot import __version__

MODEL_FORMAT = 2  # 2: the second opinion, its combination and the trial-chosen retry threshold
_PATH_PART = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*")


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


def repo_dir(root: str | Path, repo: str) -> Path:
    """Where a repository's own models live: ``ROOT/repos/<forge>/<path>`` for ``"<forge>:<path>"``.

    Every part of the name must be a plain file name (GitHub and GitLab names are), so no repository
    name can reach outside ``ROOT/repos``.
    """
    forge, _, path = repo.partition(":")
    parts = [forge, *path.split("/")]
    if (
        forge not in ("github", "gitlab")
        or not path
        or any(not _PATH_PART.fullmatch(p) or p in (".", "..") for p in parts)
    ):
        raise ModelError(f"not a repository name: {repo!r} (expected forge:owner/name)")
    return Path(root, "repos", *parts)


def repo_dirs(root: str | Path) -> dict[str, Path]:
    """The repositories that have a model directory of their own: ``"forge:owner/name"`` → directory."""
    base = Path(root, "repos")
    found = {}
    for versions in sorted(base.glob("*/**/versions")):
        folder = versions.parent
        if not any(versions.glob("*/model.pkl.gz")):
            continue  # not a model directory (or a project that happens to be called "versions")
        forge, *path = folder.relative_to(base).parts
        found[f"{forge}:{'/'.join(path)}"] = folder
    return found


def retry_threshold(meta: dict[str, Any]) -> float | None:
    """The flake probability above which the service re-runs jobs on this version's verdicts: chosen
    by its latest trial on failures it did not learn from (a later ``flakebot trial``, else its own
    trial); None — no retries on its verdicts — when it was never trialled or no threshold reached
    the target precision."""
    for trial in [*reversed(meta.get("trials") or []), meta.get("trial") or {}]:
        if trial.get("overlap"):
            continue  # judged failures it learnt from: optimistic
        if "retry_threshold" in trial:
            return trial["retry_threshold"]
    return None


def fall_back_order(
    version: str,
    activated: list[str],
    versions: list[str],
    own_trial: Callable[[str], dict[str, Any] | None],
) -> list[str]:
    """The versions to fall back on when ``version`` cannot be loaded, the latest first (pure; a model
    directory and the database answer alike): those made active before it (``activated``, oldest
    first) that still exist, then, for what came before activations were recorded, the existing
    versions older than all of those whose own trial did not refuse them."""
    existing = set(versions)
    seen: list[str] = []
    for name in reversed(activated):
        if name != version and name not in seen and name in existing:
            seen.append(name)
    first = min([*seen, version])  # older than anything recorded: from before the record
    older = sorted((name for name in existing if name < first), reverse=True)
    return seen + [
        name for name in older if ((own_trial(name) or {}).get("decision") or {}).get("promoted") is not False
    ]


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
        with open(self.root / "activations.jsonl", "a") as out:
            out.write(
                json.dumps({"version": version, "at": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"}) + "\n"
            )

    def earlier_active(self, version: str) -> list[str]:
        """The versions that were active before ``version``, the latest first: what to fall back on when
        ``version`` cannot be loaded. A version never made active (``--no-activate``, a retrain's
        candidate that was not promoted) is not one. After those recorded in ``activations.jsonl``
        (kept since hardening 12), for what came before the record: the versions older than
        ``version`` whose own trial did not refuse them."""
        try:
            lines = (self.root / "activations.jsonl").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        activated = []
        for line in lines:
            try:
                activated.append(str(json.loads(line)["version"]))
            except (ValueError, KeyError, TypeError):
                continue
        versions = [p.name for p in self.versions_dir.glob("*") if p.is_dir() and not p.name.startswith(".")]
        return fall_back_order(version, activated, versions, self._own_trial)

    def _own_trial(self, version: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.versions_dir / version / "trial.json").read_text())
        except (OSError, ValueError):
            return None

    def write_trial(self, version: str, figures: dict[str, Any]) -> None:
        """The version's own trial, made when it was trained (``flakebot train``, a retrain's gate)."""
        path = self.versions_dir / version / "trial.json"
        _write_atomic(path, (json.dumps(figures, indent=2, default=str) + "\n").encode())

    def add_trial(self, version: str, figures: dict[str, Any]) -> None:
        """A later trial of the version (``flakebot trial``), kept beside its own."""
        folder = self.versions_dir / version
        if not (folder / "model.pkl.gz").is_file():
            raise ModelError(f"no model version {version!r} in {self.root}")
        with open(folder / "trials.jsonl", "a") as out:
            out.write(json.dumps(figures, default=str) + "\n")

    def note_retrain(self, outcome: dict[str, Any]) -> None:
        """Remember the latest retrain's outcome (the schedule and ``/flake status`` read it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(
            self.root / "last_retrain.json", (json.dumps(outcome, indent=2, default=str) + "\n").encode()
        )

    def last_retrain(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / "last_retrain.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

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
        later = folder / "trials.jsonl"
        if later.is_file():
            meta["trials"] = [json.loads(line) for line in later.read_text().splitlines() if line.strip()]
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
        if hasattr(model, "retry_threshold_"):
            model.retry_threshold_ = retry_threshold(meta)
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
