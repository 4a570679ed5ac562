"""How many labelled failures a useful model needs: a learning curve on Veloren's real, manually labelled jobs.

    python -m bench.learning_curve [--windows 3] [--window 25] [--sizes 20,30,...]

Data: ``../shared/data/veloren/train.jsonl.gz``, 219 real failed GitLab CI jobs of the Veloren project
(July 2022 – November 2023, whole job traces, manual flake/real labels: 71 flaky, 148 real), in time
order. The newest ``--windows`` × ``--window`` jobs are judged, a window at a time; each window is
judged by a model of flakebot's defaults that learnt from the N jobs just before it, as a backfill of
the last weeks would give it, with ``flakebot train``'s own trial on its newest labelled failures
choosing the retry threshold (``bot.training.train_with_trial``). The verdicts of all windows are
pooled. For each N:

* **verdict** precision and recall: of the judged jobs the model calls "flake", how many were, and of
  the flaky ones, how many it called so (what the PR comment says);
* **retry** precision and recall: the same for the model's retry decision (flake probability above the
  retry threshold its trial chose; a model whose trial reached no threshold re-runs nothing).

Figures of one project's jobs, on 75 judged jobs: one wrong verdict moves precision by a few points.
They say how the model grows with the labelled history, not what it will do on yours.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._shared import shared, table  # noqa: E402


def load() -> list[dict]:
    with gzip.open(shared("data", "veloren", "train.jsonl.gz"), "rt") as fh:
        return sorted((json.loads(line) for line in fh), key=lambda r: r["date"])


def rates(flagged: list[bool], flaky: list[bool]) -> tuple[str, str]:
    tp = sum(f and y for f, y in zip(flagged, flaky, strict=True))
    called, actual = sum(flagged), sum(flaky)
    precision = f"{tp / called:.2f}" if called else "–"
    return precision, f"{tp / actual:.2f} ({tp}/{actual})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=3, help="judged windows, the newest (default 3)")
    parser.add_argument("--window", type=int, default=25, help="jobs a window (default 25)")
    parser.add_argument("--sizes", default="10,20,30,40,60,80,100,119")
    args = parser.parse_args()
    from bot.model import FlakeClassifier
    from bot.training import train_with_trial

    records = load()
    ends = [len(records) - k * args.window for k in range(args.windows)][::-1]
    judged_all = [r for end in ends for r in records[end - args.window : end]]
    flaky = [r["label"] == "flake" for r in judged_all]
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        if ends[0] - args.window - n < 0:
            continue
        start = time.perf_counter()
        verdicts: list[dict] = []
        retried: list[bool] = []
        thresholds, refused, learnt_flaky = [], 0, 0
        for end in ends:
            train, judged = (
                records[end - args.window - n : end - args.window],
                records[end - args.window : end],
            )
            learnt_flaky += sum(r["label"] == "flake" for r in train)
            trained = train_with_trial(FlakeClassifier(), train)
            if trained.model is None:  # too few labelled failures for a trial: no model
                refused += 1
                verdicts += [{"verdict": "unknown"}] * len(judged)
                retried += [False] * len(judged)
                continue
            mine = trained.model.explain(judged)
            threshold = getattr(trained.model, "retry_threshold_", None)
            thresholds.append("none" if threshold is None else f"{threshold:.2f}")
            verdicts += mine
            retried += [threshold is not None and v["verdict"] == "flake" and (v.get("flake_probability") or 0) > threshold
                        for v in mine]  # fmt: skip
        verdict_p, verdict_r = rates([v["verdict"] == "flake" for v in verdicts], flaky)
        retry_p, retry_r = rates(retried, flaky)
        rows.append({
            "labelled failures": n,
            "flaky among them (mean)": f"{learnt_flaky / len(ends):.0f}",
            "verdict precision": verdict_p,
            "verdict recall": verdict_r,
            "retry thresholds": " ".join(thresholds) + (f" ({refused} refused)" if refused else ""),
            "retry precision": retry_p,
            "retry recall": retry_r,
            "unknown": f"{sum(v['verdict'] == 'unknown' for v in verdicts) / len(verdicts):.0%}",
            "seconds": f"{time.perf_counter() - start:.0f}",
        })  # fmt: skip
        print(f"  {rows[-1]}", file=sys.stderr)
    print(table(rows, f"Veloren (real GitLab jobs, manual labels): the newest {len(judged_all)} jobs ({sum(flaky)} "
                      f"flaky) judged {args.window} at a time by models of the N jobs before each window"))  # fmt: skip


if __name__ == "__main__":
    main()
