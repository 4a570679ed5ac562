"""Held-out evaluation of a flake model, in the spirit of ClueBot NG's trainer trial reports.

A trial classifies labelled failures the model has not seen and reports, for the "flake" class:
precision, recall and F1, the confusion matrix, a threshold table (precision and recall if the flake
probability threshold were 0.1 … 0.9), and the false positives and false negatives themselves.

Scoring rules (also in ``docs/model.md``):

* the truth is a record's ``label`` (flake|real), else Cockpit's ``merged`` (true: flake; false: real —
  weak: a failure on an unmerged revision may still be a flake); records with neither are counted as
  ``unlabelled`` and not scored;
* only a "flake" verdict counts as a positive; "unknown" (far from every known failure) counts as a
  negative — the bot does not retry it — and is also reported on its own (``unknown``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from bot.records import truth

THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass
class TrialReport:
    figures: dict[str, Any]
    thresholds: list[dict[str, Any]]
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    false_negatives: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def text(self) -> str:
        f = self.figures
        lines = [
            "flakebot trial report",
            "",
            f"failures judged: {f['judged']} (unlabelled, not scored: {f['unlabelled']})",
            f"flake precision: {f['precision']:.3f}   recall: {f['recall']:.3f}   F1: {f['f1']:.3f}",
            f"unknown (far from every known failure): {f['unknown']}",
            "",
            "confusion matrix       verdict flake   verdict real/unknown",
            f"  truth flake          {f['tp']:>13}   {f['fn']:>20}",
            f"  truth real           {f['fp']:>13}   {f['tn']:>20}",
        ]
        return "\n".join(lines) + "\n"

    def threshold_text(self) -> str:
        lines = ["threshold  precision  recall  flagged"]
        for row in self.thresholds:
            lines.append(
                f"{row['threshold']:>9.1f}  {row['precision']:>9.3f}  {row['recall']:>6.3f}  {row['flagged']:>7}"
            )
        return "\n".join(lines) + "\n"


def _scores(y_true: list[int], y_pred: list[int]) -> tuple[float, float, float]:
    if not y_true:
        return 0.0, 0.0, 0.0
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[1], average="binary", pos_label=1, zero_division=0
    )
    return float(p), float(r), float(f)


def evaluate(records: Sequence[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]]) -> TrialReport:
    """Compare verdicts (from ``FlakeClassifier.explain``) with the records' truth."""
    if len(records) != len(verdicts):
        raise ValueError(f"{len(records)} records but {len(verdicts)} verdicts")
    y_true: list[int] = []
    y_pred: list[int] = []
    probs: list[float | None] = []
    unknown = unlabelled = 0
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
        probs.append(None if verdict["verdict"] == "unknown" else verdict.get("flake_probability"))
        unknown += verdict["verdict"] == "unknown"
        if predicted and not actual:
            fps.append(row)
        elif actual and not predicted:
            fns.append(row)

    if y_true:
        tn, fp, fn, tp = (int(x) for x in confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel())
    else:
        tn = fp = fn = tp = 0
    precision, recall, f1 = _scores(y_true, y_pred)
    figures = {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "unknown": unknown,
        "judged": len(y_true),
        "unlabelled": unlabelled,
    }
    table = []
    for t in THRESHOLDS:
        flagged = [1 if p is not None and p > t else 0 for p in probs]
        p_t, r_t, _ = _scores(y_true, flagged)
        table.append(
            {"threshold": t, "precision": round(p_t, 4), "recall": round(r_t, 4), "flagged": sum(flagged)}
        )
    return TrialReport(figures, table, fps, fns, rows)


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
