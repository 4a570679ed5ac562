"""Held-out evaluation of a flake model, in the spirit of ClueBot NG's trainer trial reports.

A trial classifies labelled failures the model has not seen and reports, for the "flake" class:
precision, recall and F1, the confusion matrix, a threshold table, the false positives and false
negatives themselves, and the **retry threshold**: the lowest flake probability above which the
trial's verdicts reached the precision the user chose (0.97 by default). The service re-runs jobs
only above it.

Scoring rules (also in ``docs/model.md``):

* the truth is a record's ``label`` (flake|real), else Cockpit's ``merged`` (true: flake; false: real —
  weak: a failure on an unmerged revision may still be a flake); records with neither are counted as
  ``unlabelled`` and not scored;
* only a "flake" verdict counts as a positive; "unknown" counts as a negative — the bot neither
  retries nor explains it — so abstaining costs recall, visibly: the figures also give the share of
  unknowns and the precision and recall had the unknowns been decided by their probability
  (``precision_if_decided``, ``recall_if_decided``), and each row of the threshold table counts the
  unknowns above its threshold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from bot.records import truth

THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
TARGET_PRECISION = 0.97


def lowest_threshold(
    probabilities: Sequence[float], truths: Sequence[bool], precision: float
) -> float | None:
    """The lowest threshold t (a flake when p > t) at which the verdicts reach ``precision``: midway
    between two consecutive probabilities; None when no threshold that flags anything reaches it."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(truths, dtype=bool)
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    tp = np.cumsum(y)
    best = None
    for k in range(len(p)):
        # flag the k+1 most likely: possible only when the next one is less likely
        if k + 1 < len(p) and p[k + 1] == p[k]:
            continue
        if tp[k] / (k + 1) >= precision:
            best = float(p[k] + p[k + 1]) / 2 if k + 1 < len(p) else 0.0
    return None if best is None else round(best, 4)


@dataclass
class TrialReport:
    figures: dict[str, Any]
    thresholds: list[dict[str, Any]]
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    false_negatives: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        f = self.figures
        judged = f["judged"] or 1
        lines = [
            "flakebot trial report",
            "",
            f"failures judged: {f['judged']} (unlabelled, not scored: {f['unlabelled']})",
            f"flake precision: {f['precision']:.3f}   recall: {f['recall']:.3f}   F1: {f['f1']:.3f}",
            f"unknown (far from every known failure, evidence split): {f['unknown']} "
            f"({f['unknown'] / judged:.1%}); had they been decided by their probability: "
            f"precision {f['precision_if_decided']:.3f}, recall {f['recall_if_decided']:.3f}",
            "",
            "confusion matrix       verdict flake   verdict real/unknown",
            f"  truth flake          {f['tp']:>13}   {f['fn']:>20}",
            f"  truth real           {f['fp']:>13}   {f['tn']:>20}",
            "",
            self.retry_text(),
        ]
        if f.get("overlap"):
            lines += ["", overlap_warning(f["overlap"], f["judged"] + f["unlabelled"])]
        return "\n".join(lines) + "\n"

    def retry_text(self) -> str:
        f = self.figures
        target = f["target_precision"]
        if f["retry_threshold"] is None:
            return (
                f"retries: no flake probability threshold reached a precision of {target:.2f} on these "
                "failures, so the service will not re-run jobs on this model's verdicts"
            )
        return (
            f"retries: above a flake probability of {f['retry_threshold']:.2f}, where this trial reached "
            f"a precision of at least {target:.2f} (recall there: {f['retry_recall']:.3f})"
        )

    def threshold_text(self) -> str:
        lines = ["threshold  precision  recall  flagged  unknown above"]
        for row in self.thresholds:
            lines.append(
                f"{row['threshold']:>9.2f}  {row['precision']:>9.3f}  {row['recall']:>6.3f}  "
                f"{row['flagged']:>7}  {row['unknown']:>13}"
            )
        return "\n".join(lines) + "\n"


def overlap_warning(overlap: int, total: int) -> str:
    return (
        f"warning: {overlap} of the {total} trial failures are failures the model learnt from: "
        "these figures are optimistic, and the retry threshold was not changed"
    )


def _scores(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[float, float, float]:
    if not len(y_true):
        return 0.0, 0.0, 0.0
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[1], average="binary", pos_label=1, zero_division=0
    )
    return float(p), float(r), float(f)


def evaluate(
    records: Sequence[Mapping[str, Any]],
    verdicts: Sequence[Mapping[str, Any]],
    target_precision: float = TARGET_PRECISION,
) -> TrialReport:
    """Compare verdicts (from ``FlakeClassifier.explain``) with the records' truth."""
    if len(records) != len(verdicts):
        raise ValueError(f"{len(records)} records but {len(verdicts)} verdicts")
    if not 0 < target_precision <= 1:
        raise ValueError(f"the target precision must be in (0, 1], got {target_precision}")
    y_true: list[int] = []
    y_pred: list[int] = []
    probs: list[float] = []
    abstained: list[bool] = []
    unlabelled = 0
    fps: list[dict[str, Any]] = []
    fns: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for record, verdict in zip(records, verdicts, strict=True):
        row = {"test": record.get("test"), "truth": truth(record), **verdict}
        rows.append(row)
        if row["truth"] is None:
            unlabelled += 1
            continue
        actual = 1 if row["truth"] == "flake" else 0
        predicted = 1 if verdict["verdict"] == "flake" else 0
        y_true.append(actual)
        y_pred.append(predicted)
        p = verdict.get("flake_probability")
        probs.append(float(p) if p is not None else 0.0)
        abstained.append(verdict["verdict"] == "unknown")
        if predicted and not actual:
            fps.append(row)
        elif actual and not predicted:
            fns.append(row)

    if y_true:
        tn, fp, fn, tp = (int(x) for x in confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel())
    else:
        tn = fp = fn = tp = 0
    precision, recall, f1 = _scores(y_true, y_pred)
    truths, p_all, unknown = np.array(y_true, dtype=bool), np.array(probs), np.array(abstained, dtype=bool)
    threshold = _model_threshold(verdicts)
    # the unknowns decided by their probability; every other verdict as it was
    decided = [int(a or (u and p > threshold)) for a, u, p in zip(y_pred, unknown, p_all, strict=True)]
    p_dec, r_dec, _ = _scores(y_true, decided)
    # retries happen only on decided verdicts: an unknown is never re-run, whatever its probability
    retry_p = np.where(unknown, -1.0, p_all)
    retry_threshold = lowest_threshold(retry_p, truths, target_precision) if truths.any() else None
    retry_flags = retry_p > retry_threshold if retry_threshold is not None else np.zeros(len(p_all), bool)
    figures = {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "unknown": int(unknown.sum()),
        "unknown_share": round(float(unknown.mean()), 4) if len(unknown) else 0.0,
        "precision_if_decided": round(p_dec, 4),
        "recall_if_decided": round(r_dec, 4),
        "judged": len(y_true),
        "unlabelled": unlabelled,
        "threshold": threshold,
        "target_precision": target_precision,
        "retry_threshold": retry_threshold,
        "retry_recall": round(_scores(y_true, retry_flags.astype(int))[1], 4),
    }
    table = []
    for t in sorted({*THRESHOLDS, *([retry_threshold] if retry_threshold is not None else [])}):
        flagged = ((p_all > t) & ~unknown).astype(int)
        p_t, r_t, _ = _scores(y_true, flagged)
        table.append(
            {
                "threshold": t,
                "precision": round(p_t, 4),
                "recall": round(r_t, 4),
                "flagged": int(flagged.sum()),
                "unknown": int(((p_all > t) & unknown).sum()),
            }
        )
    return TrialReport(figures, table, fps, fns, rows)


def _model_threshold(verdicts: Sequence[Mapping[str, Any]]) -> float:
    for v in verdicts:
        if isinstance(v.get("threshold"), int | float):
            return float(v["threshold"])
    return 0.5


def time_ordered_folds(n: int, k: int) -> list[tuple[range, range]]:
    """K expanding-window folds over ``n`` items in time order: the items are cut into k + 1 parts;
    fold i trains on parts 0..i-1 and judges part i."""
    if k < 1 or n < k + 1:
        raise ValueError(
            f"time-ordered cross-validation with {k} folds needs at least {k + 1} items, got {n}"
        )
    cuts = [round(n * i / (k + 1)) for i in range(k + 2)]
    return [(range(0, cuts[i]), range(cuts[i], cuts[i + 1])) for i in range(1, k + 1)]


def cross_validate(
    records: Sequence[Mapping[str, Any]],
    k: int,
    make_model: Callable[[], Any],
    target_precision: float = TARGET_PRECISION,
    on_fold: Callable[[int, dict[str, Any]], None] | None = None,
) -> tuple[TrialReport, list[dict[str, Any]]]:
    """Time-ordered cross-validation: ``records`` oldest first; each fold's model learns from the
    failures before it and judges the next part. Returns the pooled report and each fold's figures."""
    folds = time_ordered_folds(len(records), k)
    judged: list[Mapping[str, Any]] = []
    verdicts: list[Mapping[str, Any]] = []
    per_fold = []
    for i, (train, test) in enumerate(folds, 1):
        part = [records[j] for j in test]
        model = make_model().fit([records[j] for j in train])
        found = model.explain(part)
        fold = evaluate(part, found, target_precision).figures
        fold.update(fold=i, train=len(train), test=len(test))
        per_fold.append(fold)
        if on_fold:
            on_fold(i, fold)
        judged += part
        verdicts += found
    return evaluate(judged, verdicts, target_precision), per_fold


def write_report(report: TrialReport, directory: str | Path) -> Path:
    """Write report.txt, thresholds.txt, figures.json, false_positives.jsonl, false_negatives.jsonl and
    verdicts.jsonl into ``directory``; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.txt").write_text(report.text())
    (out / "thresholds.txt").write_text(report.threshold_text())
    (out / "figures.json").write_text(
        json.dumps({**report.figures, "thresholds": report.thresholds}, indent=2) + "\n"
    )
    for name, rows in (
        ("false_positives.jsonl", report.false_positives),
        ("false_negatives.jsonl", report.false_negatives),
        ("verdicts.jsonl", report.verdicts),
    ):
        with open(out / name, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return out
