"""``flakebot train``, ``trial`` and ``classify``: the flake model from the command line."""

from __future__ import annotations

import heapq
import itertools
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from bot.records import FAILED_STATUSES, InputError, ReadStats, RecordError, read_records

_MODEL_OPTION = click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory (versions are kept inside it; the active one is used).",
)


def _echo(message: str) -> None:
    click.echo(message, err=True)


class _Bars:
    """One click progress bar per training stage, on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, advance: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = click.progressbar(length=total, label=f"{stage:<10}", file=sys.stderr, show_pos=True)
            self.bar.__enter__()
        self.bar.update(advance)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _read(paths: tuple[str, ...], strict: bool, stats: ReadStats) -> Iterator[dict[str, Any]]:
    try:
        for path in paths:
            yield from read_records(path, strict=strict, stats=stats)
    except InputError as exc:
        raise click.ClickException(str(exc)) from None
    except RecordError as exc:
        raise click.ClickException(f"{exc} (without --strict such lines are skipped and counted)") from exc
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc


def _report_skipped(stats: ReadStats) -> None:
    if stats.skipped:
        _echo(f"warning: {stats.skipped} malformed line(s) skipped; first: {stats.errors[0]}")


@click.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(allow_dash=True))
@_MODEL_OPTION
@click.option(
    "--mode",
    type=click.Choice(["fast", "exact"]),
    help="fast (default): compression distances only between likely neighbours; "
    "exact: all pairs, as Cockpit (the default with --cockpit).",
)
@click.option(
    "--cockpit", is_flag=True, help="Cockpit's learner exactly as it was (whole logs, no cut-off, …)."
)
@click.option("--eps", type=float, default=0.3, show_default=True, help="DBSCAN neighbourhood radius.")
@click.option("--min-samples", type=int, default=3, show_default=True, help="DBSCAN core size.")
@click.option(
    "--threshold",
    type=float,
    default=0.4,
    show_default=True,
    help="A failure is a flake when its flake probability exceeds this.",
)
@click.option(
    "--max-distance",
    default="0.3",
    show_default=True,
    help="Prediction cut-off: farther than this from every known failure is 'unknown' ('none': off).",
)
@click.option(
    "--limit",
    type=int,
    default=15000,
    show_default=True,
    help="Learn from at most this many failures, the newest by date.",
)
@click.option(
    "--jobs", type=int, default=-1, show_default=True, help="Threads for distances (-1: all cores)."
)
@click.option("--strict", is_flag=True, help="Stop at the first malformed input line.")
@click.option("--no-activate", is_flag=True, help="Store the new version without making it active.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(
    data,
    model_dir,
    mode,
    cockpit,
    eps,
    min_samples,
    threshold,
    max_distance,
    limit,
    jobs,
    strict,
    no_activate,
    quiet,
):
    """Learn a flake model from past test failures.

    DATA is JSONL (plain or .gz, `-` for stdin), one test run a line, with `status`, `test` and `log`,
    and the ground truth as `label` (flake|real) or Cockpit's `merged`. Passed and skipped runs are
    counted and ignored. Each run stores a new model version in --model and makes it active.

    \b
    Examples:
      flakebot train failures.jsonl.gz --model models/
      flakebot split job.log --job build | flakebot train - --model models/
      flakebot train old.jsonl --model cockpit-model/ --cockpit      # the original method
    """
    from bot.model import FlakeClassifier
    from bot.modelstore import ModelStore

    params = dict(eps=eps, min_samples=min_samples, threshold=threshold, n_jobs=jobs)
    if cockpit:
        model = FlakeClassifier.cockpit(mode=mode or "exact", **params)
    else:
        cut = None if str(max_distance).lower() == "none" else float(max_distance)
        model = FlakeClassifier(mode=mode or "fast", max_distance=cut, **params)
    try:
        model.validate_params()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc

    start = time.perf_counter()
    stats = ReadStats()
    seq = itertools.count()
    newest: list[tuple[str, int, dict[str, Any]]] = []  # heap of (date, order, slim record)
    passed = 0
    for record in _read(data, strict, stats):
        if record["status"] not in FAILED_STATUSES:
            passed += 1
            continue
        item = (str(record.get("date") or ""), next(seq), model.slim(record))
        if len(newest) < limit:
            heapq.heappush(newest, item)
        else:
            heapq.heappushpop(newest, item)
    _report_skipped(stats)
    records = [item[2] for item in sorted(newest)]
    dropped = next(seq) - len(records)
    if len(records) < 2:
        raise click.ClickException(
            f"need at least 2 failed runs to learn from, found {len(records)} ({stats.summary()})"
        )

    bars = _Bars(enabled=not quiet and sys.stderr.isatty())
    try:
        model.fit(records, progress=bars)
    finally:
        bars.close()
    summary = model.summary()
    meta = {
        "trained_on": {
            "sources": list(data),
            "lines": stats.lines,
            "failures": len(records),
            "older_failures_dropped": dropped,
            "passed_or_skipped": passed,
            "malformed_lines": stats.skipped,
            "dates": [records[0].get("date"), records[-1].get("date")],
        },
        "summary": summary,
    }
    version = ModelStore(model_dir).save(model, meta, activate=not no_activate)
    elapsed = time.perf_counter() - start
    _echo(
        f"trained {version} on {summary['failures']} failures ({summary['flake_evidence']} flake evidence): "
        f"{summary['clusters']} clusters, {summary['noise']} noise, {summary['distances_computed']} distances, "
        f"{elapsed:.1f}s" + ("" if no_activate else "; now active")
    )
    if dropped:
        _echo(f"note: {dropped} older failures beyond --limit {limit} were not used")


@click.command()
@_MODEL_OPTION
@click.argument("data", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the report files (default: DIR/trials/<version>-<time>/).",
)
@click.option("--version", "version", help="Trial this model version instead of the active one.")
@click.option("--strict", is_flag=True, help="Stop at the first malformed input line.")
def trial(model_dir, data, as_json, report_dir, version, strict):
    """Judge a model on labelled failures it has not seen.

    Prints precision, recall and F1 for "flake", the confusion matrix and a threshold table, and
    writes report.txt, thresholds.txt, figures.json, false_positives.jsonl, false_negatives.jsonl and
    verdicts.jsonl. A verdict "unknown" counts as "not a flake"; the truth is `label`, else `merged`.

    \b
    Examples:
      flakebot trial --model models/ held-out.jsonl.gz
      flakebot trial --model models/ held-out.jsonl --json | jq .precision
    """
    from bot.modelstore import ModelError, ModelStore
    from bot.trial import evaluate, write_report

    store = ModelStore(model_dir)
    try:
        model, meta = store.load(version)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    stats = ReadStats()
    records = [model.slim(r) for r in _read(data, strict, stats) if r["status"] in FAILED_STATUSES]
    _report_skipped(stats)
    if not records:
        raise click.ClickException(f"no failed runs to judge ({stats.summary()})")
    report = evaluate(records, model.explain(records))
    out = report_dir or Path(model_dir) / "trials" / f"{meta['version']}-{time.strftime('%Y%m%dT%H%M%S')}"
    write_report(report, out)
    store.write_trial(
        meta["version"], {**report.figures, "thresholds": report.thresholds, "data": list(data)}
    )
    if as_json:
        click.echo(json.dumps({**report.figures, "thresholds": report.thresholds, "report_dir": str(out)}))
    else:
        click.echo(f"model {meta['version']}\n" + report.text() + "\n" + report.threshold_text())
        click.echo(f"report files: {out}")


@click.command()
@_MODEL_OPTION
@click.argument("input_path", metavar="INPUT", type=click.Path(allow_dash=True))
@click.option("--version", "version", help="Use this model version instead of the active one.")
@click.option("--strict", is_flag=True, help="Stop at the first malformed input line.")
@click.option("--batch", type=int, default=64, show_default=True, help="Records classified together.")
def classify(model_dir, input_path, version, strict, batch):
    """Classify test failures: JSONL in, one JSON verdict a line out.

    Each verdict says flake, real or unknown, with its evidence: the cluster, its flake share and
    size, the distance to the nearest past failures and their test names. Runs that did not fail get
    a line with "verdict": null.

    \b
    Examples:
      flakebot classify --model models/ new-failures.jsonl
      flakebot split job.log --job test | flakebot classify --model models/ -
    """
    from bot.modelstore import ModelError, ModelStore

    try:
        model, _ = ModelStore(model_dir).load(version)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    stats = ReadStats()
    records = _read((input_path,), strict, stats)
    out = sys.stdout
    judged = 0
    while chunk := list(itertools.islice(records, batch)):
        failed = [r for r in chunk if r["status"] in FAILED_STATUSES]
        verdicts = iter(model.explain(failed)) if failed else iter(())
        judged += len(failed)
        for record in chunk:
            keep = {k: record[k] for k in ("test", "status", "job", "context", "lines") if k in record}
            if record["status"] in FAILED_STATUSES:
                keep.update(next(verdicts))
            else:
                keep.update(verdict=None, reason=f"status {record['status']}: nothing to judge")
            out.write(json.dumps(keep, ensure_ascii=False) + "\n")
    if stats.records == 0:  # nothing usable: an empty file, only malformed lines
        raise click.ClickException(f"nothing to classify: {stats.why_nothing()}")
    _echo(f"classified {judged} failed runs: {stats.summary()}")
    if stats.cut_short is not None:
        raise click.ClickException(
            f"{stats.cut_short.source} ends early at line {stats.cut_short.line}: the verdicts written are "
            f"for the {stats.records} records before it"
        )
