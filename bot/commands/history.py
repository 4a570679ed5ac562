"""Test history commands: ``flakebot score`` (scores of histories given as JSONL), ``flakebot scores``
(the history the service recorded) and ``flakebot quarantine-list`` (the quarantined tests)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from bot.records import (
    MAX_LINE_BYTES,
    STREAM_ERRORS,
    BadRun,
    InputError,
    RecordError,
    _lines,
    json_error,
    open_binary,
)
from bot.scoring import COMPONENTS, Run, ScoringConfig, score_runs

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)


def parse_history_line(text: str) -> tuple[str, list[Run]]:
    """``{"test": ..., "runs": [...]}`` → (test, runs); ValueError saying what is wrong."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(json_error(exc)) from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    test, runs = obj.get("test"), obj.get("runs")
    if not isinstance(test, str) or not test.strip():
        raise ValueError("test must be a non-empty string")
    if not isinstance(runs, list):
        raise ValueError("runs must be a list of runs, oldest first")
    parsed = []
    for index, run in enumerate(runs, start=1):
        try:
            parsed.append(Run.from_dict(run))
        except ValueError as exc:
            raise ValueError(f"run {index}: {exc}") from None
    return test, parsed


def load_config(
    path: str | None, window: int | None, min_runs: int | None, weights: tuple[str, ...]
) -> ScoringConfig:
    """The scoring config from a YAML file and command-line overrides; UsageError when invalid."""
    import yaml

    try:
        config = ScoringConfig()
        if path:
            with open(path, encoding="utf-8") as handle:
                config = ScoringConfig.from_mapping(yaml.safe_load(handle))
        overrides: dict[str, Any] = {}
        if window is not None:
            overrides["window"] = window
        if min_runs is not None:
            overrides["min_runs"] = min_runs
        elif window is not None and config.min_runs > window:
            overrides["min_runs"] = window
        if weights:
            values = {}
            for item in weights:
                name, sep, value = item.partition("=")
                if not sep or name not in COMPONENTS:
                    raise ValueError(f"--weight takes NAME=VALUE with NAME one of {', '.join(COMPONENTS)}")
                values[name] = float(value)
            overrides["weights"] = dataclasses.replace(config.weights, **values)
        return dataclasses.replace(config, **overrides)
    except (OSError, yaml.YAMLError, ValueError, TypeError) as exc:
        raise click.UsageError(f"scoring configuration: {exc}") from None


@click.command("score")
@click.argument("history", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--window", type=click.IntRange(min=2), help="Score the newest N runs (default 50).")
@click.option("--min-runs", type=click.IntRange(min=1), help="Runs needed for a verdict (default 5).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="Scoring YAML.")
@click.option("--weight", "weights", multiple=True, metavar="NAME=VALUE", help="Override one weight.")
@click.option("--strict", is_flag=True, help="Stop at the first malformed line (exit status 1).")
@click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-", help="Output file.")
def score(
    history: str,
    window: int | None,
    min_runs: int | None,
    config_path: str | None,
    weights: tuple[str, ...],
    strict: bool,
    output: IO[str],
) -> None:
    """Score test histories: one JSON object a test in, one a test out.

    HISTORY is JSONL, plain or gzip, or - for stdin; each line one test, its runs oldest first:

    \b
      {"test": "tests/test_x.py::test_y", "runs": [
        {"status": "passed", "attempt": 1, "time": 1.2, "created_at": "2024-05-01T10:00:00Z",
         "revision": "4f2a9c1", "message": null}, ...]}

    status is passed|failed|error|skipped (errors count as failures, skipped runs are ignored).
    Each output line has the test, score, confidence, components (null when not measurable),
    recommendation (action stable|monitor|investigate|quarantine, reason, priority) and the evidence,
    among it the failure pattern (flaky, broken, regression, ...) and broken_since: the revision from
    which a broken test has failed every run. Give each run its revision: the patterns need them.

    \b
    Examples:
      flakebot score history.jsonl.gz > scores.jsonl
      flakebot score --window 100 --weight consecutive_failure_penalty=0.5 h.jsonl
      flakebot score --config scoring.yml --strict h.jsonl

    The --config YAML takes the settings of docs/scoring.md (window, min_runs, weights: {...},
    thresholds, confidences), optionally under a top-level scoring: key. Malformed lines are
    reported on stderr with their line number and skipped; --strict makes the first one fatal.
    """
    config = load_config(config_path, window, min_runs, weights)
    try:
        stream, name = open_binary(history)
    except (InputError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    lines = scored = skipped = 0
    bad, cut_short = BadRun(), None
    try:
        for number, raw in enumerate(_lines(stream, MAX_LINE_BYTES), start=1):
            lines = number
            if raw is not None and not raw.strip():
                continue
            try:
                if raw is None:
                    raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
                test, runs = parse_history_line(raw.decode("utf-8", errors="replace"))
            except ValueError as exc:
                error = RecordError(name, number, str(exc))
                if strict:
                    raise click.ClickException(str(error)) from None
                skipped += 1
                bad.add(error)
                continue
            bad.report()
            result = score_runs(runs, config)
            output.write(json.dumps({"test": test, **result.to_dict()}, ensure_ascii=False) + "\n")
            scored += 1
    except STREAM_ERRORS as exc:
        cut_short = RecordError(name, lines + 1, f"the input ends early ({exc}); kept what came before it")
        if strict:
            raise click.ClickException(str(cut_short)) from None
        bad.report()
        log.warning("%s", cut_short)
    finally:
        bad.report()
        if stream is not sys.stdin.buffer:
            stream.close()
    summary = f"scored {scored} tests from {lines} lines"
    if skipped:
        summary += f", {skipped} malformed lines skipped"
    if scored == 0:
        why = f"{name} is empty" if lines == 0 else f"no line of {name} is a test's history"
        raise click.ClickException(f"nothing to score: {summary if lines else why}")
    click.echo(summary, err=True)
    if cut_short is not None:
        raise click.ClickException(f"{name} ends early at line {cut_short.line}: the scores written are "
                                   f"for the {scored} tests before it")  # fmt: skip


# --- the store's history: ``flakebot scores`` and ``flakebot quarantine-list`` ----------------------

DATA_DIR_HELP = "The service's data directory (also FLAKEBOT_DATA_DIR)."
REPO_HELP = "Only this repository: forge:owner/name (owner/name when only one forge has it)."


@contextlib.contextmanager
def existing_store(data_dir: str) -> Iterator[Store]:
    """The service's store: PostgreSQL with ``FLAKEBOT_DATABASE_URL``, else SQLite in ``data_dir``,
    never created here: a clear error when it is missing or not a flakebot database."""
    import sqlite3

    from bot.store import StoreError, configured_url, open_store

    path = Path(data_dir) / "flakebot.db"
    if (url := configured_url()) is not None:
        try:
            store = open_store(data_dir, url)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        try:
            yield store
        finally:
            store.close()
        return
    if not path.is_file():
        raise click.ClickException(
            f"no test history yet: {path} does not exist. flakebot serve writes it as webhooks arrive; "
            "point --data-dir (or FLAKEBOT_DATA_DIR) at the service's data directory"
        )
    try:
        store = open_store(data_dir)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield store
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{path} could not be read: {exc}") from None
    finally:
        store.close()


def pick_repo(store: Store, repo: str | None) -> str | None:
    if repo is None:
        return None
    from bot.scoreboard import UnknownRepo, resolve_repo

    try:
        return resolve_repo(repo, store.repos())
    except UnknownRepo as exc:
        raise click.ClickException(str(exc)) from None


@click.command("scores")
@click.option("--repo", metavar="FORGE:OWNER/NAME", help=REPO_HELP)
@click.option("--data-dir", envvar="FLAKEBOT_DATA_DIR", default="data", show_default=True, help=DATA_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line instead of a table.")
@click.option("--limit", type=click.IntRange(min=1), help="Show the N most flaky only.")
@click.option(
    "--recommendation",
    type=click.Choice(["quarantine", "investigate", "monitor", "stable"]),
    help="Only tests with this recommendation.",
)
def scores(
    data_dir: str, repo: str | None, as_json: bool, limit: int | None, recommendation: str | None
) -> None:
    """The test history the service recorded, most flaky first.

    One row a test and job (a test that fails on one platform only is broken there, not flaky):
    score, confidence, recommendation, failures of the scored runs, the newest runs as a sparkline
    (▁ passed, █ failed, · skipped; oldest first) and the quarantine issue.

    \b
    Examples:
      flakebot scores --data-dir /srv/flakebot/data
      flakebot scores --repo github:octo-org/shop --recommendation quarantine
      flakebot scores --json --limit 20 | jq .test
    """
    from bot.scoreboard import select, text_table

    with existing_store(data_dir) as store:
        key = pick_repo(store, repo)
        rows = select(store.scores(key), recommendation=recommendation, limit=limit)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.to_dict(), ensure_ascii=False))
        return
    if not rows:
        what = f" with recommendation {recommendation}" if recommendation else ""
        click.echo(f"no scored tests{what}" + (f" in {key}" if key else ""), err=True)
        return
    click.echo(text_table(rows), nl=False)


@click.command("quarantine-list")
@click.option("--repo", metavar="FORGE:OWNER/NAME", help=REPO_HELP)
@click.option("--data-dir", envvar="FLAKEBOT_DATA_DIR", default="data", show_default=True, help=DATA_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="The JSON quarantine list the pytest plugin reads.")
def quarantine_list(data_dir: str, repo: str | None, as_json: bool) -> None:
    """The quarantined tests: those with an open quarantine issue.

    --json prints the quarantine list (version 1) that the pytest plugin reads:

    \b
      flakebot quarantine-list --repo github:octo-org/shop --json > quarantine.json
      pytest --flakebot-quarantine=quarantine.json     # with pytest-flakebot installed
    """
    from bot import quarantine_list as qlist
    from bot.scoreboard import printable, quarantine_entries

    with existing_store(data_dir) as store:
        key = pick_repo(store, repo)
        rows = store.quarantined(key)
    if as_json:
        now = _now()
        document = qlist.quarantine_list(quarantine_entries(rows, now), generated_at=now)
        click.echo(json.dumps(document, ensure_ascii=False, indent=1))
        return
    if not rows:
        click.echo("no test is quarantined" + (f" in {key}" if key else ""), err=True)
        return
    now = _now()
    for row in rows:
        issue = f"#{row['number']} {row['url'] or ''}".strip() if row["number"] is not None else "manual"
        jobs = (
            ", ".join(printable(job) for job in row["jobs"])
            if row.get("jobs") and all(row["jobs"])
            else "every job"
        )
        until = ""
        if row.get("expires_at"):
            until = f"  {'expired' if row['expires_at'] <= now else 'until'} {row['expires_at']}"
        click.echo(
            f"{printable(row['repo'])}  {printable(row['test'])}  in {jobs}  {issue}  since {row['since']}{until}"
        )


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
