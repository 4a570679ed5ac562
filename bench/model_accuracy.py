"""Accuracy of the flake model on the labelled data we have, time-ordered 60/40 split.

    python -m bench.model_accuracy

Two data sets:

* **Cockpit** — shared/data/cockpit/test-example.jsonl.gz, 200 real failures (3 days of July 2017).
  Its only label is `merged`, set per revision: the same infrastructure failure (an image download)
  is "merged" 35 times and "not merged" 40 times. No method can score well on it; the baselines show
  where the label caps everyone.
* **Synthetic** — bench/ci_corpus.py, 2,000 failures over 60 days in four runner formats with exact
  labels, recurring flaky causes and new real bugs (three seeds). It measures the method's
  properties, not anyone's real CI.

Methods: Cockpit as it was; Cockpit with only the eps cut-off added; flakebot's defaults; a TF-IDF +
logistic regression on the last 200 lines (the "plain text classifier" of the issue); the same on the
test and job name alone.
"""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bench._shared import shared, table
from bench.ci_corpus import generate
from bot.model import FlakeClassifier
from bot.records import truth


def _figures(pred: list[str], records: list[dict]) -> dict:
    y = np.array([truth(r) == "flake" for r in records])
    p = np.array([v == "flake" for v in pred])
    tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    unknown = sum(v == "unknown" for v in pred) / len(pred)
    return {
        "precision": f"{precision:.2f}",
        "recall": f"{recall:.2f}",
        "F1": f"{f1:.2f}",
        "unknown": f"{unknown:.0%}",
    }


def _text_baseline(train: list[dict], test: list[dict], field: str) -> list[str]:
    def text(r: dict) -> str:
        if field == "name":
            return f"{r.get('test', '')} {r.get('context', '')} {r.get('job', '')}"
        return "\n".join(r["log"].splitlines()[-200:])

    y = [truth(r) == "flake" for r in train]
    vec = TfidfVectorizer(sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(map(text, train)), y)
    return ["flake" if p else "real" for p in clf.predict(vec.transform(map(text, test)))]


METHODS = {
    "Cockpit as it was": lambda: FlakeClassifier.cockpit(),
    "Cockpit + eps cut-off": lambda: FlakeClassifier.cockpit(max_distance=0.3),
    "flakebot (fast, defaults)": lambda: FlakeClassifier(),
}


def evaluate(name: str, records: list[dict]) -> list[dict]:
    cut = int(len(records) * 0.6)
    train, test = records[:cut], records[cut:]
    rows = []
    for method, make in METHODS.items():
        model = make()
        start = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = list(model.predict(test))
        ms = (time.perf_counter() - start) / len(test) * 1000
        rows.append(
            {
                "data": name,
                "method": method,
                **_figures(pred, test),
                "train s": f"{fit_s:.1f}",
                "ms/log": f"{ms:.1f}",
            }
        )
    for method, field in (("TF-IDF + LR, last 200 lines", "log"), ("TF-IDF + LR, test/job name", "name")):
        start = time.perf_counter()
        pred = _text_baseline(train, test, field)
        rows.append(
            {
                "data": name,
                "method": method,
                **_figures(pred, test),
                "train s": f"{time.perf_counter() - start:.1f}",
                "ms/log": "-",
            }
        )
    return rows


def main() -> None:
    with gzip.open(shared("data", "cockpit", "test-example.jsonl.gz"), "rt") as fh:
        cockpit = sorted((json.loads(line) for line in fh), key=lambda r: r["date"])
    rows = evaluate("Cockpit 200 (weak labels)", cockpit)
    for seed in (1, 2, 3):
        rows += evaluate(f"synthetic 2000 seed {seed}", list(generate(2000, seed=seed)))
    print(table(rows, "flake precision/recall on unseen (later) failures, time-ordered 60/40"))


if __name__ == "__main__":
    main()
