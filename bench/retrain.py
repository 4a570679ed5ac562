"""Retraining a repository's model from its stored failures: time, memory and the event loop meanwhile.

    python -m bench.retrain                      # sizes 300, 1000, 3000
    python -m bench.retrain --sizes 500 --labelled 0.5

For each size, a fresh SQLite store gets that many failures of the synthetic CI corpus
(bench/ci_corpus.py: four projects, recurring flaky causes, one-off real bugs, in time order), a share of
them labelled as the bot would have learnt (``/flake real``, passes on retry, merged commits), the
rest unlabelled. Then:

* **retrain**: ``flakebot retrain --json`` as the service runs it (a child process): wall time, the
  child's peak RSS, the split, the outcome and the candidate's trial figures;
* **again**: the same retrain once more with nothing new recorded (refused: nothing unseen to judge on);
* **event loop lag** while a retrain runs, measured by a coroutine that wakes every 10 ms: with the
  retrain in a child process (what the service does) and, for comparison, in a thread of the service
  process (``asyncio.to_thread``).

Needs no ../shared data (the corpus is generated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._shared import table
from bench.ci_corpus import generate

REPO = "github:bench/shop"


def fill(data_dir: Path, n: int, labelled: float, seed: int = 5) -> None:
    from bot.store import Failure, open_store

    rng = random.Random(seed)
    store = open_store(data_dir)
    for i, record in enumerate(generate(n, seed=seed)):
        change, run = 10_000 + i, 50_000 + i
        failure = Failure(test=record["test"], log=record["log"], run_id=run, attempt=1, job=record["context"],
                          revision=f"{run:040x}", change_number=change, created_at=record["date"])  # fmt: skip
        store.record_failures(REPO, [failure])
        if rng.random() >= labelled:
            continue
        if record["label"] == "real":
            store.label_by_human(REPO, change, record["test"], "real", "bench")
        elif rng.random() < 0.5:
            store.label_passed_on_retry(REPO, run, 2, [record["test"]])
        else:
            store.label_merged(REPO, f"{run:040x}")
    store.close()


def child_retrain(data_dir: Path, model_dir: Path) -> tuple[dict, float, float]:
    """(result, seconds, peak RSS MB of the child) of one `flakebot retrain` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "bot", "retrain", "--repo", REPO, "--data-dir", str(data_dir),
         "--model-dir", str(model_dir), "--json", "--quiet"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    seconds = time.perf_counter() - start
    rss = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return json.loads(out), seconds, rss


async def loop_lag(work) -> list[float]:
    """Lateness (ms) of a 10 ms ticker while ``work`` (a coroutine) runs."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - start - 0.01) * 1000)

    task = asyncio.create_task(ticker())
    try:
        await work
    finally:
        done.set()
        await task
    return lags


def lag_figures(lags: list[float]) -> dict[str, str]:
    ordered = sorted(lags)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {
        "lag p50 ms": f"{statistics.median(ordered):.1f}",
        "lag p99 ms": f"{p99:.1f}",
        "lag max ms": f"{ordered[-1]:.0f}",
    }


async def lag_in_child(data_dir: Path, model_dir: Path) -> list[float]:
    async def work() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "retrain", "--repo", REPO, "--data-dir", str(data_dir),
            "--model-dir", str(model_dir), "--json", "--quiet",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()

    return await loop_lag(work())


async def lag_in_thread(data_dir: Path, model_dir: Path) -> list[float]:
    from bot.retrain import retrain
    from bot.store import open_store

    def work() -> None:
        store = open_store(data_dir)
        try:
            retrain(store, REPO, model_dir)
        finally:
            store.close()

    return await loop_lag(asyncio.to_thread(work))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--labelled", type=float, default=0.6, help="share of the failures labelled")
    args = parser.parse_args()
    rows, lag_rows = [], []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            data, models = Path(tmp, "data"), Path(tmp, "model")
            fill(data, n, args.labelled)
            result, seconds, rss = child_retrain(data, models)
            c = result["counts"]
            cand = result["candidate"] or {}
            again, again_seconds, _ = child_retrain(data, models)
            rows.append({
                "failures": n, "labelled": c["labelled"], "train": c["train"], "held out": c["holdout"],
                "outcome": result["outcome"], "precision": cand.get("precision", ""), "recall": cand.get("recall", ""),
                "retrain s": f"{seconds:.1f}", "in-process s": f"{result['seconds']:.1f}", "child peak MB": f"{rss:.0f}",
                "again": again["outcome"], "again s": f"{again_seconds:.1f}",
            })  # fmt: skip
            for where, measure in (("child process", lag_in_child), ("thread", lag_in_thread)):
                fresh = Path(tmp, f"model-{where.split()[0]}")
                lags = asyncio.run(measure(data, fresh))
                lag_rows.append({"failures": n, "retrain in": where, **lag_figures(lags)})
    print(table(rows, f"Retrain from stored failures ({os.cpu_count()} CPUs; {args.labelled:.0%} labelled)"))
    print(table(lag_rows, "Event loop lateness (10 ms ticker) while a retrain runs"))


if __name__ == "__main__":
    main()
