"""``flakebot retrain``, ``models`` and ``rollback``: a repository's model versions from the command line.

They read the service's store (``FLAKEBOT_DATA_DIR``, or ``--data-dir``) and model directory
(``FLAKEBOT_MODEL``, default ``DATA_DIR/model``), so they can run next to the service; with
``FLAKEBOT_DATABASE_URL`` (PostgreSQL) both are the database.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from bot.modelstore import ModelError

_DATA_OPTION = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FLAKEBOT_DATA_DIR",
    default="data",
    show_default=True,
    help="The service's data directory (also FLAKEBOT_DATA_DIR).",
)
_MODEL_OPTION = click.option(
    "--model-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FLAKEBOT_MODEL",
    help="The model directory (also FLAKEBOT_MODEL; default DATA_DIR/model).",
)
_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")


def _model_root(data_dir: Path, model_dir: Path | None) -> Any:
    """Where the models are: the database with FLAKEBOT_DATABASE_URL (PostgreSQL), else the model
    directory."""
    from bot.store import configured_url, open_store

    if url := configured_url():
        return open_store(data_dir, url)
    return model_dir or data_dir / "model"


def _check_repo(repo: str, model_root: Any) -> None:
    from bot.storedmodels import models_at

    try:
        models_at(model_root, repo)
    except ModelError as exc:
        raise click.BadParameter(str(exc), param_hint="--repo") from exc


def _store_of(repo: str | None, model_root: Any) -> Any:
    from bot.storedmodels import models_at

    return models_at(model_root, repo)


def _repos_with_models(model_root: Any) -> list[str]:
    from bot.modelstore import repo_dirs
    from bot.store import Store

    if isinstance(model_root, Store):
        return [scope for scope in model_root.model_scopes() if scope]
    return list(repo_dirs(model_root))


@click.command()
@click.option("--repo", required=True, metavar="FORGE:OWNER/NAME", help="e.g. github:octo-org/shop.")
@_DATA_OPTION
@_MODEL_OPTION
@click.option(
    "--dry-run", is_flag=True, help="Print what the retrain would learn from and judge on; train nothing."
)
@_JSON_OPTION
@click.option(
    "--holdout", type=float, default=0.2, show_default=True, help="Share of the labelled failures held out."
)
@click.option(
    "--min-holdout", type=int, default=10, show_default=True, help="Held-out failures a trial needs."
)
@click.option("--min-train", type=int, default=20, show_default=True, help="Failures the candidate needs.")
@click.option(
    "--min-precision",
    type=float,
    default=0.8,
    show_default=True,
    help="The precision bar when there is no active model (or it flags nothing).",
)
@click.option(
    "--target-precision",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.97,
    show_default=True,
    help="The precision the new model's retry threshold must reach on the held-out failures.",
)
@click.option("--lock-owner", hidden=True, help="Run under this holder of the repository's retrain lock.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")  # fmt: skip
def retrain(repo, data_dir, model_dir, dry_run, as_json, holdout, min_holdout, min_train, min_precision,
            target_precision, lock_owner, quiet):  # fmt: skip
    """Retrain a repository's flake model from the failures the service recorded.

    The newest labelled failures are held out; a candidate learns from the older ones; both the
    candidate and the active model judge the held-out failures, and the candidate becomes the
    repository's model only if it is not worse, precision first. Every candidate is kept as a version
    with its trial report (`flakebot models`). The service does the same for `/flake retrain`.

    \b
    Examples:
      flakebot retrain --repo github:octo-org/shop --dry-run
      flakebot retrain --repo gitlab:group/sub/project --data-dir /srv/flakebot/data
      flakebot retrain --repo github:octo-org/shop --json | jq .outcome
    """
    from bot.commands.model import _Bars
    from bot.render import render
    from bot.retrain import RetrainBusy, RetrainOptions, repo_lock
    from bot.retrain import retrain as run
    from bot.store import Store, configured_url, open_store

    root = _model_root(data_dir, model_dir)
    _check_repo(repo, root)
    try:
        options = RetrainOptions(
            holdout, min_holdout, min_train, min_precision, target_precision=target_precision
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    url = configured_url()
    if not url and not (data_dir / "flakebot.db").is_file():
        raise click.ClickException(
            f"no flakebot database in {data_dir} (set FLAKEBOT_DATA_DIR or --data-dir)"
        )
    store = root if isinstance(root, Store) else open_store(data_dir, url)
    bars = _Bars(enabled=not (quiet or as_json) and sys.stderr.isatty())
    try:
        if not any(True for _ in store.training_records(repo)):
            known = ", ".join(store.repos()) or "none"
            raise click.ClickException(
                f"no failures of {repo} are recorded (repositories with history: {known})"
            )
        owner = lock_owner or f"cli:{os.uname().nodename}:{os.getpid()}"
        with repo_lock(store, repo, owner):
            result = run(store, repo, root, options, dry_run=dry_run, progress=bars)
    except RetrainBusy as exc:
        raise click.ClickException(f"{exc}; try again when it has finished") from exc
    finally:
        bars.close()
        store.close()
    if as_json:
        click.echo(json.dumps(result, default=str))
    else:
        click.echo(render("retrain_report.md.j2", r=result).strip())


@click.command()
@click.option(
    "--repo", metavar="FORGE:OWNER/NAME", help="A repository's own models (default: the shared ones)."
)
@_DATA_OPTION
@_MODEL_OPTION
@_JSON_OPTION
def models(repo, data_dir, model_dir, as_json):
    """List model versions, newest first, with their own trial figures; * marks the active one.

    Each version's own trial is the one made when it was trained (`flakebot train`'s held-out newest
    failures, or a retrain's gate); a later `flakebot trial` is shown beneath it. "retry >" is the
    flake probability above which the service re-runs jobs on its verdicts ("never": no threshold
    reached the target precision, or it was never trialled).

    \b
    Examples:
      flakebot models                          # the shared model (flakebot train)
      flakebot models --repo github:octo-org/shop
      flakebot models --repo github:octo-org/shop --json
    """
    root = _model_root(data_dir, model_dir)
    if repo:
        _check_repo(repo, root)
    store = _store_of(repo, root)
    try:
        versions = store.versions()
    except (ModelError, OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the models in {store.root}: {exc}") from exc
    if as_json:
        for meta in versions:
            click.echo(json.dumps(_row(meta), default=str))
        return
    where = f"{repo}" if repo else "the shared model"
    if not versions:
        click.echo(f"no model versions for {where} in {store.root}")
    else:
        click.echo(f"model versions of {where} ({store.root}):")
        click.echo(
            f"  {'version':<27} {'trained':<20} {'failures':>8} {'precision':>9} {'recall':>6} {'retry >':>7}  own trial"
        )
        for meta in versions:
            row = _row(meta)
            mark = "*" if row["active"] else " "
            p, r, t = row["precision"], row["recall"], row["retry_threshold"]
            click.echo(
                f"{mark} {row['version']:<27} {row['created_at'] or '':<20} {row['failures'] or '':>8} "
                f"{_num(p):>9} {_num(r):>6} {_num(t, 'never'):>7}  {row['decision']}"
            )
            if (later := row["latest_trial"]) is not None:
                note = " (overlaps its training data)" if later.get("overlap") else ""
                click.echo(
                    f"  {'':<27} latest trial {later.get('at') or ''}: precision {_num(later.get('precision'))}, "
                    f"recall {_num(later.get('recall'))} on {later.get('judged')} failures{note}"
                )
    others = [name for name in _repos_with_models(root) if name != repo]
    if not repo and others:
        click.echo(f"repositories with their own models: {', '.join(others)} (flakebot models --repo NAME)")


def _num(value: Any, none: str = "") -> str:
    return none if value is None else f"{value:.2f}"


def _row(meta: dict[str, Any]) -> dict[str, Any]:
    """A version's figures: its own trial (made when it was trained), its latest later trial, and the
    retry threshold the service uses."""
    from bot.modelstore import retry_threshold

    trial = meta.get("trial") or {}
    later = (meta.get("trials") or [None])[-1]
    decision = trial.get("decision") or {}
    if decision:
        verdict = ("promoted: " if decision.get("promoted") else "kept: ") + decision.get("reason", "")
    elif trial:
        verdict = "trialled when trained"
    else:
        verdict = "not trialled"
    return {
        "version": meta["version"],
        "active": meta.get("active", False),
        "created_at": meta.get("created_at"),
        "failures": (meta.get("trained_on") or {}).get("failures"),
        "precision": trial.get("precision"),
        "recall": trial.get("recall"),
        "unknown": trial.get("unknown"),
        "retry_threshold": retry_threshold(meta),
        "decision": verdict,
        "latest_trial": None
        if later is None
        else {k: later.get(k) for k in ("at", "precision", "recall", "unknown", "judged", "overlap", "data")},
        "trained_on": meta.get("trained_on"),
    }


@click.command()
@click.argument("version")
@click.option(
    "--repo", metavar="FORGE:OWNER/NAME", help="A repository's own models (default: the shared ones)."
)
@_DATA_OPTION
@_MODEL_OPTION
def rollback(version, repo, data_dir, model_dir):
    """Make an earlier model VERSION the active one again (see `flakebot models`).

    The running service picks it up at its next classification, without a restart.

    \b
    Examples:
      flakebot rollback 20240601T120000000000Z-1a2b --repo github:octo-org/shop
      flakebot rollback 20240601T120000000000Z-1a2b        # the shared model
    """
    root = _model_root(data_dir, model_dir)
    if repo:
        _check_repo(repo, root)
    store = _store_of(repo, root)
    previous = store.active_version()
    try:
        store.activate(version)
    except ModelError as exc:
        known = ", ".join(m["version"] for m in store.versions()) or "none"
        raise click.ClickException(f"{exc} (versions: {known})") from exc
    where = repo or "the shared model"
    click.echo(f"{version} is now the active model of {where} (was {previous or 'none'})")
