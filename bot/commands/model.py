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
    metavar="DIR|URL",
    help="Model directory (versions are kept inside it; the active one is used), or the PostgreSQL "
    "database of several instances (postgresql://…: the shared model there).",
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


def _refuse_cut_short(stats: ReadStats, command: str, done: str) -> None:
    """``train`` and ``trial`` do nothing on an input that ends early (a cut or corrupt .gz): a model
    or a trial of part of the data would be stored as if it were of all of it, and a trial's retry
    threshold decides the service's re-runs. ``classify`` writes what it read, then fails the same way."""
    cut = stats.cut_short
    if cut is not None:
        raise click.ClickException(
            f"{cut.source} ends early at line {cut.line} ({stats.records} records before it): nothing was "
            f"{done}. Use the whole file, or give the part you mean on purpose (e.g. `zcat FILE | head -n "
            f"{max(1, cut.line - 1)} | flakebot {command} ... -`)"
        )


_TARGET_OPTION = click.option(
    "--target-precision",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.97,
    show_default=True,
    help="The precision the retry threshold must reach on held-out failures.",
)


def _max_distance(value: str) -> float | None:
    if str(value).lower() == "none":
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a number or 'none'", param_hint="--max-distance") from exc


def _model_of(cockpit: bool, mode: str | None, params: dict[str, Any]) -> Any:
    from bot.model import FlakeClassifier

    model = (
        FlakeClassifier.cockpit(mode=mode or "exact", **params)
        if cockpit
        else FlakeClassifier(mode=mode or "fast", **params)
    )
    try:
        model.validate_params()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return model


def _newest_failures(
    data: tuple[str, ...], strict: bool, limit: int, slim: Any
) -> tuple[list[dict[str, Any]], int, int, ReadStats]:
    """The newest ``limit`` failed runs of the input, slimmed, oldest first; (records, dropped, passed, stats)."""
    stats = ReadStats()
    seq = itertools.count()
    newest: list[tuple[str, int, dict[str, Any]]] = []  # heap of (date, order, slim record)
    passed = 0
    for record in _read(data, strict, stats):
        if record["status"] not in FAILED_STATUSES:
            passed += 1
            continue
        item = (str(record.get("date") or ""), next(seq), slim(record))
        if len(newest) < limit:
            heapq.heappush(newest, item)
        else:
            heapq.heappushpop(newest, item)
    _report_skipped(stats)
    records = [item[2] for item in sorted(newest)]
    return records, next(seq) - len(records), passed, stats


_MODEL_PARAMS = [
    click.option(
        "--mode",
        type=click.Choice(["fast", "exact"]),
        help="fast (default): compression distances only between likely neighbours; "
        "exact: all pairs, as Cockpit (the default with --cockpit).",
    ),
    click.option(
        "--cockpit", is_flag=True, help="Cockpit's learner exactly as it was (whole logs, no cut-off, …)."
    ),
    click.option("--eps", type=float, default=0.3, show_default=True, help="DBSCAN neighbourhood radius."),
    click.option("--min-samples", type=int, default=3, show_default=True, help="DBSCAN core size."),
    click.option(
        "--threshold",
        type=float,
        help="A failure is a flake when its flake probability exceeds this [default: 0.5; 0.4 with --cockpit].",
    ),
    click.option(
        "--max-distance",
        default="none",
        show_default=True,
        help="A fixed cut-off: farther than this from every known failure is 'unknown'. "
        "'none': unknown only when the evidence is far and split.",
    ),
    click.option(
        "--no-second-opinion", is_flag=True, help="Neighbours only: no linear text model beside them."
    ),
    click.option(
        "--jobs", type=int, default=-1, show_default=True, help="Threads for distances (-1: all cores)."
    ),
]


def _model_params(f: Any) -> Any:
    for option in reversed(_MODEL_PARAMS):
        f = option(f)
    return f


def _params(eps, min_samples, threshold, max_distance, no_second_opinion, jobs, cockpit) -> dict[str, Any]:
    params: dict[str, Any] = dict(eps=eps, min_samples=min_samples, n_jobs=jobs)
    if threshold is not None:
        params["threshold"] = threshold
    if not cockpit:
        params["max_distance"] = _max_distance(max_distance)
        params["second_opinion"] = not no_second_opinion
    return params


@click.command()
@click.argument("data", nargs=-1, required=True, type=click.Path(allow_dash=True))
@_MODEL_OPTION
@_model_params
@click.option(
    "--limit",
    type=int,
    default=15000,
    show_default=True,
    help="Learn from at most this many failures, the newest by date.",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of the labelled failures, the newest, that judge the model before it learns from them too.",
)
@click.option(
    "--min-holdout", type=int, default=10, show_default=True, help="Held-out failures a trial needs."
)
@_TARGET_OPTION
@click.option(
    "--force", is_flag=True, help="Activate even a model that cannot be trialled (it never retries)."
)
@click.option("--strict", is_flag=True, help="Stop at the first malformed input line.")
@click.option("--no-activate", is_flag=True, help="Store the new version without making it active.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(data, model_dir, mode, cockpit, eps, min_samples, threshold, max_distance, no_second_opinion, jobs,
          limit, holdout, min_holdout, target_precision, force, strict, no_activate, quiet):  # fmt: skip
    """Learn a flake model from past test failures, trial it, and make it active.

    DATA is JSONL (plain or .gz, `-` for stdin), one test run a line, with `status`, `test` and `log`,
    and the ground truth as `label` (flake|real) or Cockpit's `merged`. Passed and skipped runs are
    counted and ignored.

    The newest --holdout share of the labelled failures first judges a model trained on the older
    ones (its trial: precision, recall, and the retry threshold — the lowest flake probability at
    which it reached --target-precision). The stored model then learns from every failure and keeps
    that threshold: the service re-runs jobs only above it. A model with no flake evidence, or too
    few labelled failures to trial, is refused (--force stores it; it will never retry).

    \b
    Examples:
      flakebot train failures.jsonl.gz --model models/
      flakebot split job.log --job build | flakebot train - --model models/ --force
      flakebot train old.jsonl --model cockpit-model/ --cockpit      # the original method
    """
    from bot.storedmodels import open_models
    from bot.training import Refused, train_and_save

    model = _model_of(
        cockpit, mode, _params(eps, min_samples, threshold, max_distance, no_second_opinion, jobs, cockpit)
    )
    start = time.perf_counter()
    records, dropped, passed, stats = _newest_failures(data, strict, limit, model.slim)
    _refuse_cut_short(stats, "train", "trained")
    if len(records) < 2:
        raise click.ClickException(
            f"need at least 2 failed runs to learn from, found {len(records)} ({stats.summary()})"
        )

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
    }
    bars = _Bars(enabled=not quiet and sys.stderr.isatty())
    try:
        version, trained = train_and_save(open_models(model_dir), records, meta, model=model,
                                          activate=not no_activate, force=force, holdout_share=holdout,
                                          min_holdout=min_holdout, target_precision=target_precision,
                                          progress=bars)  # fmt: skip
    except Refused as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        bars.close()
    summary = trained.model.summary()
    elapsed = time.perf_counter() - start
    _echo(
        f"trained {version} on {summary['failures']} failures ({summary['flake_evidence']} flake evidence): "
        f"{summary['clusters']} clusters, {summary['noise']} noise, {summary['distances_computed']} distances, "
        f"{elapsed:.1f}s" + ("" if no_activate else "; now active")
    )
    if trained.trial is not None:
        f = trained.trial.figures
        _echo(
            f"its trial on the newest {f['judged']} labelled failures (model trained on the older ones): "
            f"precision {f['precision']:.2f}, recall {f['recall']:.2f}, unknown {f['unknown']}"
        )
        _echo(trained.trial.retry_text())
    else:
        _echo(f"warning: {trained.refused}; stored because of --force: it will never re-run a job")
    if dropped:
        _echo(f"note: {dropped} older failures beyond --limit {limit} were not used")


@click.command()
@click.option(
    "--model",
    "model_dir",
    metavar="DIR|URL",
    help="Model directory (versions are kept inside it; the active one is trialled), or a PostgreSQL URL "
    "(the database's shared model). Not with --cv.",
)
@click.argument("data", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(
    "--cv",
    type=click.IntRange(min=1),
    help="Time-ordered cross-validation with this many folds: models of the --model's parameters "
    "(or the defaults) learn from the older failures and judge the newer, fold by fold.",
)
@_TARGET_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the report files (default: DIR/trials/<version>-<time>/, or ./trial-cv-<time>/).",
)
@click.option("--version", "version", help="Trial this model version instead of the active one.")
@click.option("--strict", is_flag=True, help="Stop at the first malformed input line.")
def trial(model_dir, data, cv, target_precision, as_json, report_dir, version, strict):
    """Judge a model on labelled failures it has not seen.

    Prints precision, recall and F1 for "flake" (an "unknown" verdict counts as not a flake; the
    report also says how many there were and the figures had they been decided), the confusion
    matrix, a threshold table and the retry threshold: the lowest flake probability at which the
    verdicts reached --target-precision. The trial is stored with the model version, and the service
    re-runs jobs only above its threshold. Writes report.txt, thresholds.txt, figures.json,
    false_positives.jsonl, false_negatives.jsonl and verdicts.jsonl. The truth is `label`, else
    `merged`. A warning says when the data overlaps what the model learnt from.

    \b
    Examples:
      flakebot trial --model models/ held-out.jsonl.gz
      flakebot trial --model models/ held-out.jsonl --json | jq .precision
      flakebot trial --cv 5 labelled.jsonl.gz          # time-ordered cross-validation, 5 folds
    """
    from bot.modelstore import ModelError
    from bot.storedmodels import open_models
    from bot.trial import cross_validate, evaluate, overlap_warning, write_report

    if cv is None and model_dir is None:
        raise click.UsageError("give --model DIR (the model to judge) or --cv K (cross-validate)")
    stats = ReadStats()
    if cv is not None:
        template = None
        if model_dir is not None:
            try:
                template, _ = open_models(model_dir).load(version)
            except ModelError as exc:
                raise click.ClickException(str(exc)) from exc
        records = _cv_records(data, strict, stats, template)
        from sklearn.base import clone

        from bot.model import FlakeClassifier

        def make() -> Any:
            return clone(template) if template is not None else FlakeClassifier()

        def on_fold(i: int, f: dict[str, Any]) -> None:
            if not as_json:
                _echo(f"fold {i}/{cv}: learnt from {f['train']}, judged {f['test']}: precision {f['precision']:.2f}, "
                      f"recall {f['recall']:.2f}, unknown {f['unknown']}")  # fmt: skip

        try:
            report, folds = cross_validate(records, cv, make, target_precision, on_fold)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        out = report_dir or Path(f"trial-cv-{time.strftime('%Y%m%dT%H%M%S')}")
        write_report(report, out)
        if as_json:
            click.echo(json.dumps({**report.figures, "thresholds": report.thresholds, "folds": folds,
                                   "report_dir": str(out)}))  # fmt: skip
        else:
            click.echo(f"time-ordered cross-validation, {cv} folds, {len(records)} failures\n" + report.text()
                       + "\n" + report.threshold_text())  # fmt: skip
            click.echo(f"report files: {out}")
        return

    store = open_models(model_dir)
    try:
        model, meta = store.load(version)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    records = [model.slim(r) for r in _read(data, strict, stats) if r["status"] in FAILED_STATUSES]
    _report_skipped(stats)
    _refuse_cut_short(stats, "trial", "trialled")
    if not records:
        raise click.ClickException(f"no failed runs to judge ({stats.summary()})")
    report = evaluate(records, model.explain(records), target_precision)
    overlap = int(model.learnt_from(records).sum()) if hasattr(model, "learnt_from") else 0
    report.figures["overlap"] = overlap
    if overlap:
        _echo(overlap_warning(overlap, len(records)))
    from bot.store import is_database_url

    reports = Path("trials") if is_database_url(str(model_dir)) else Path(model_dir) / "trials"
    out = report_dir or reports / f"{meta['version']}-{time.strftime('%Y%m%dT%H%M%S')}"
    write_report(report, out)
    store.add_trial(
        meta["version"],
        {**report.figures, "thresholds": report.thresholds, "data": list(data),
         "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps({**report.figures, "thresholds": report.thresholds, "report_dir": str(out)}))
    else:
        click.echo(f"model {meta['version']}\n" + report.text() + "\n" + report.threshold_text())
        click.echo(f"report files: {out}")


def _cv_records(data: tuple[str, ...], strict: bool, stats: ReadStats, template: Any) -> list[dict[str, Any]]:
    from bot.model import FlakeClassifier

    slim = (template or FlakeClassifier()).slim
    records = [slim(r) for r in _read(data, strict, stats) if r["status"] in FAILED_STATUSES]
    _report_skipped(stats)
    _refuse_cut_short(stats, "trial", "trialled")
    if not records:
        raise click.ClickException(f"no failed runs to judge ({stats.summary()})")
    return sorted(records, key=lambda r: str(r.get("date") or ""))


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
    from bot.modelstore import ModelError
    from bot.storedmodels import open_models

    try:
        model, _ = open_models(model_dir).load(version)
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
