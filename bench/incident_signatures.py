"""Incident signatures on real CI failures: how often unrelated failures would share one (false incidents).

An incident is ``min_changes`` changes failing with the same signature at once (bot/incidents.py). On
real failures that are *not* one outage — Veloren's 219 GitLab jobs (manual labels, 16 months) and
Cockpit's 200 test failures — two failures of different jobs or tests sharing a signature is what
would merge unrelated failures into an incident. For each corpus: how many failures get a signature
(a specific enough cause), how many distinct signatures, the largest group of failures sharing one
(and of how many different tests/jobs), the share of pairs of different tests/jobs with the same
signature among real (labelled real) failures and among flakes, and the chance that ``min_changes``
(5) failures drawn at random from the whole corpus share a signature: an upper bound of a false
incident's chance (an incident also needs them within 30 minutes, in five different changes).
Reads ../shared (veloren/train.jsonl.gz, cockpit/test-example.jsonl.gz).
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import time
from collections import Counter, defaultdict

from bench._shared import shared, table
from bot.incidents import signature


def _records(*parts: str) -> list[dict]:
    with gzip.open(shared(*parts), "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _label(record: dict) -> str:
    if record.get("label") in ("flake", "real"):
        return record["label"]
    return "flake" if record.get("merged") else "real" if record.get("merged") is False else "?"


def measure(name: str, records: list[dict], draws: int = 20_000) -> dict:
    start = time.perf_counter()
    keyed = [(r, signature(r.get("log") or "", r.get("test") or "")) for r in records]
    seconds = time.perf_counter() - start
    with_sig = [(r, s) for r, s in keyed if s is not None]
    groups: dict[str, list[dict]] = defaultdict(list)
    for r, s in with_sig:
        groups[s.key].append(r)
    largest = max(groups.values(), key=len, default=[])
    pairs = Counter()
    for label in ("real", "flake"):
        mine = [(r["test"], s.key) for r, s in with_sig if _label(r) == label]
        total = same = 0
        for (t1, k1), (t2, k2) in itertools.combinations(mine, 2):
            if t1 != t2:
                total += 1
                same += k1 == k2
        pairs[label] = (same, total)
    rng = random.Random(13)
    false_incidents = 0
    pool = [s.key if s else None for _, s in keyed]
    for _ in range(draws):
        drawn = rng.sample(pool, 5)
        false_incidents += drawn[0] is not None and all(k == drawn[0] for k in drawn)
    fmt = lambda p: f"{p[0]}/{p[1]} ({p[0] / p[1]:.2%})" if p[1] else "–"  # noqa: E731
    return {
        "corpus": name,
        "failures": len(records),
        "with a signature": len(with_sig),
        "distinct": len(groups),
        "largest group": f"{len(largest)} ({len({r['test'] for r in largest})} tests/jobs)",
        "same-signature pairs, real": fmt(pairs["real"]),
        "same-signature pairs, flake": fmt(pairs["flake"]),
        "5 random failures share one": f"{false_incidents}/{draws}",
        "ms a failure": f"{1000 * seconds / max(1, len(records)):.1f}",
    }


def main() -> None:
    rows = [
        measure("Veloren (219 GitLab jobs, whole traces)", _records("data", "veloren", "train.jsonl.gz")),
        measure("Cockpit (200 test failures)", _records("data", "cockpit", "test-example.jsonl.gz")),
    ]
    print(table(rows, "incident signatures on real failures that are not one outage (bot/incidents.py)"))


if __name__ == "__main__":
    main()
