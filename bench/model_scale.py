"""Training and classification at scale: up to Cockpit's cap of 15,000 failures.

    python -m bench.model_scale                 # the whole table (takes a few minutes)
    python -m bench.model_scale --sizes 1000 --exact-sizes 1000

The failures are cut from the 22 real Mozilla CI logs in shared/data/treeherder-logs/ (201 MB):
pieces of 20–120 lines at random offsets (seeded), so some end in an error and most are the kind of
output a whole-job fallback record holds; overlapping pieces recur like real recurring failures. The
label is a stand-in (logs named after crashes, timeouts and leaks count as flaky): this benchmark
measures time and memory, not accuracy. Each run is a fresh subprocess; the pieces are read one log
at a time and slimmed at once (as `flakebot train` does), and memory is sampled while the model
trains and classifies: "RSS before" is the process with its slim training data loaded, "peak RSS" the
most it reached while training and classifying.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench._shared import shared, table

FLAKY_WORDS = ("timeout", "crash", "leak", "taskcluster", "too_many")


def pieces(n: int, seed: int = 0) -> Iterator[dict]:
    """``n`` failure-sized pieces, read one log at a time (memory: one log, not all 201 MB)."""
    folder = shared("data", "treeherder-logs")
    paths = sorted(folder.glob("*.gz"))
    sizes = {}
    for path in paths:
        with gzip.open(path, "rt", errors="replace") as fh:
            sizes[path] = sum(1 for _ in fh)
    paths = [p for p in paths if sizes[p] > 200]
    rng = random.Random(seed)
    plan: dict[Path, list[tuple[int, int, int]]] = {p: [] for p in paths}
    for i in range(n):
        path = rng.choices(paths, [sizes[p] for p in paths])[0]
        length = rng.randint(20, 120)
        plan[path].append((i, rng.randrange(0, sizes[path] - length), length))
    for path, cuts in plan.items():
        with gzip.open(path, "rt", errors="replace") as fh:
            lines = fh.read().splitlines()
        name = path.name.split(".")[0]
        for i, start, length in cuts:
            yield {
                "status": "failure",
                "test": f"{name}/{start // 500}",
                "log": "\n".join(lines[start : start + length]),
                "label": "flake" if any(w in name for w in FLAKY_WORDS) else "real",
                "date": f"2024-01-01T{i:08d}",
            }
        del lines


class RssSampler(threading.Thread):
    """Samples this process's resident memory every 20 ms (the peak of a phase, not of the process)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = self.now()
        self.running = True

    @staticmethod
    def now() -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    def stop(self) -> float:
        self.running = False
        self.join()
        return max(self.peak, self.now())


def run_one(size: int, mode: str, queries: int) -> dict:
    """Train on ``size`` pieces and classify ``queries`` other pieces one at a time (in this process)."""
    from bot.model import FlakeClassifier

    model = FlakeClassifier(mode=mode)
    train, held = [], []
    step = (size + queries) // queries
    for i, record in enumerate(pieces(size + queries)):
        # every step-th piece is held out for classification; the others are slimmed for training
        if i % step == 0 and len(held) < queries:
            held.append(record)
        else:
            train.append(model.slim(record))
    gc.collect()
    before = RssSampler.now()
    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - start
    latencies = []
    for record in held:
        start = time.perf_counter()
        model.explain([record])
        latencies.append((time.perf_counter() - start) * 1000)
    peak = sampler.stop()
    latencies.sort()
    return {
        "mode": mode,
        "failures": size,
        "train s": round(fit_s, 1),
        "distances": model.n_distances_,
        "clusters": model.n_clusters_,
        "noise": model.n_noise_,
        "classify p50 ms": round(statistics.median(latencies), 1),
        "classify p95 ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "RSS before MB": round(before),
        "peak RSS MB": round(peak),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000, 5000, 15000])
    parser.add_argument("--exact-sizes", type=int, nargs="*", default=[1000, 2000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(int(args.one[0]), args.one[1], args.queries)))
        return
    shared("data", "treeherder-logs")  # fail early with the message
    rows = []
    for mode, sizes in (("exact", args.exact_sizes), ("fast", args.sizes)):
        for size in sizes:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.model_scale",
                    "--one",
                    str(size),
                    mode,
                    "--queries",
                    str(args.queries),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.append(json.loads(out.splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    print(table(rows, "flake model at scale (failures cut from 22 real Mozilla logs; all cores)"))
    exact = {r["failures"]: r for r in rows if r["mode"] == "exact"}
    fast = {r["failures"]: r for r in rows if r["mode"] == "fast"}
    if exact and fast:
        biggest = max(set(exact) & set(fast), default=None)
        if biggest:
            e, f = exact[biggest], fast[biggest]
            per_pair = e["train s"] / e["distances"]
            print(
                f"at {biggest} failures exact mode trained {e['train s'] / max(f['train s'], 0.01):.0f}x slower "
                f"and classified {e['classify p50 ms'] / max(f['classify p50 ms'], 0.01):.0f}x slower than fast mode.\n"
                f"exact mode on 15,000 failures would compute {15000 * 14999 // 2:,} distances: about "
                f"{per_pair * 15000 * 14999 / 2 / 3600:.1f} h on this machine at its measured "
                f"{per_pair * 1e6:.0f} us per distance (Cockpit's whole logs cost more per pair)."
            )


if __name__ == "__main__":
    main()
