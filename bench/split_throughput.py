"""Throughput of the log splitter and of known-issue matching on the 22 real Mozilla logs.

    python bench/split_throughput.py

Reads ``../shared/data/treeherder-logs/*.gz`` (201 MB uncompressed) and the 1,168 Cockpit patterns in
``../shared/data/cockpit/naughty-patterns.jsonl``, decompresses each log into memory (so disk and gzip
are not measured), and prints MB/s per log and in total for:

* ``split``: ``split_log`` with every parser active (``--format auto``), records included;
* ``re scan``: the reference, a plain line-by-line scan — iterate the lines of a text stream and run
  one compiled regular expression of failure markers on each line (what a naive splitter does first);
* ``known-issue`` (MB/s): ``KnownIssues.match`` with all 1,168 patterns on the log cut into 64 KiB pieces
  (the size of a record), so every byte is matched once.

The last line also times Cockpit's own way (``fnmatch`` of every pattern) on the first 2 MiB, for scale.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import logging
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._shared import shared  # noqa: E402
from bot.known_issues import KnownIssues, normalize  # noqa: E402
from bot.split import split_log  # noqa: E402

MB = 1e6
PIECE = 65536
REFERENCE = re.compile(r"TEST-UNEXPECTED-|PROCESS-CRASH|^not ok |^--- FAIL|^FAILED |^FAIL: |^ERROR: |● ")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def reference_scan(data: bytes) -> int:
    hits = 0
    for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace"):
        if REFERENCE.search(line):
            hits += 1
    return hits


def match_pieces(known: KnownIssues, text: str) -> int:
    return sum(known.match(text[i : i + PIECE]) is not None for i in range(0, len(text), PIECE))


def cockpit_fnmatch(known: KnownIssues, text: str) -> int:
    globs = ["*" + normalize(p.pattern) + "*" for p in known.patterns]
    hits = 0
    for i in range(0, len(text), PIECE):
        trace = normalize(text[i : i + PIECE])
        hits += any(
            fnmatch.fnmatchcase(trace, g) or fnmatch.fnmatchcase(trace, g.replace("[", "?")) for g in globs
        )
    return hits


def main() -> int:
    logging.getLogger("bot").setLevel(logging.ERROR)  # the logs' own warnings (invalid UTF-8, …)
    logs = sorted(shared("data", "treeherder-logs").glob("*.gz"))
    known = KnownIssues.load(shared("data", "cockpit", "naughty-patterns.jsonl"))
    print(f"{len(logs)} logs, {len(known)} known-issue patterns\n")
    header = (
        f"{'log':<40} {'MB':>6} {'records':>7} {'split MB/s':>10} {'re scan MB/s':>12} {'known-issue':>12}"
    )
    print(header)
    print("-" * len(header))
    totals = {"bytes": 0, "split": 0.0, "ref": 0.0, "ki": 0.0, "records": 0}
    sample = ""
    for path in logs:
        data = gzip.decompress(path.read_bytes())
        records, t_split = timed(lambda data=data: sum(1 for _ in split_log([data])))
        _, t_ref = timed(lambda data=data: reference_scan(data))
        text = data.decode("utf-8", errors="replace")
        _, t_ki = timed(lambda text=text: match_pieces(known, text))
        if len(sample) < 2 * PIECE * 16:
            sample += text[: 2 * PIECE * 16 - len(sample)]
        size = len(data)
        totals["bytes"] += size
        totals["split"] += t_split
        totals["ref"] += t_ref
        totals["ki"] += t_ki
        totals["records"] += records
        print(
            f"{path.name.removesuffix('.gz')[:40]:<40} {size / MB:>6.1f} {records:>7} "
            f"{size / MB / t_split:>10.1f} {size / MB / t_ref:>12.1f} {size / MB / t_ki:>12.1f}"
        )
    size = totals["bytes"]
    print("-" * len(header))
    print(
        f"{'total':<40} {size / MB:>6.1f} {totals['records']:>7} {size / MB / totals['split']:>10.1f} "
        f"{size / MB / totals['ref']:>12.1f} {size / MB / totals['ki']:>12.1f}"
    )
    _, t_cockpit = timed(lambda: cockpit_fnmatch(known, sample))
    _, t_ours = timed(lambda: match_pieces(known, sample))
    mb = len(sample) / MB
    print(f"\nCockpit's fnmatch of every pattern on the first {mb:.1f} MB: {mb / t_cockpit:.2f} MB/s")
    print(f"KnownIssues.match on the same text:                {mb / t_ours:.1f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
