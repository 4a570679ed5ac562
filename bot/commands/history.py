"""``flakebot score``: flakiness scores of test histories given as JSONL."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import sys
from typing import IO, Any

import click

from bot.records import MAX_LINE_BYTES, RecordError, _lines, open_binary
from bot.scoring import COMPONENTS, Run, ScoringConfig, score_runs

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 20  # malformed lines shown one by one; the rest are counted


def parse_history_line(text: str) -> tuple[str, list[Run]]:
    """``{"test": ..., "runs": [...]}`` → (test, runs); ValueError saying what is wrong."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
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
    recommendation (action stable|monitor|investigate|quarantine, reason, priority) and the evidence.

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
    stream, name = open_binary(history)
    lines = scored = skipped = 0
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
                if skipped <= MAX_REPORTED_ERRORS:
                    click.echo(f"skipping {error}", err=True)
                continue
            result = score_runs(runs, config)
            output.write(json.dumps({"test": test, **result.to_dict()}, ensure_ascii=False) + "\n")
            scored += 1
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        error = RecordError(name, lines + 1, f"unreadable input: {exc}")
        if strict:
            raise click.ClickException(str(error)) from None
        skipped += 1
        click.echo(f"stopping at {error}", err=True)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    summary = f"scored {scored} tests from {lines} lines"
    if skipped:
        summary += f", {skipped} malformed lines skipped"
        if skipped > MAX_REPORTED_ERRORS:
            summary += f" (the first {MAX_REPORTED_ERRORS} shown)"
    click.echo(summary, err=True)
