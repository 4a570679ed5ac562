"""Flakiness scoring on real re-run data, and what scoring costs.

Reads ``../shared/data/illinois-reruns/isolation/`` (107 Java tests re-run up to 4,000 times each in
isolation on one revision, 50 of them labelled flaky; Lam et al., ISSRE 2020). For each window size it
feeds every test's runs, in run order, into a rolling window and its :class:`bot.scoring.HistorySummary`
(what the store keeps of a test) and reports:

* final: the recommendation after all runs; precision and recall of "quarantine or investigate"
  (q|i) and of "not stable" against the flaky label;
* over time: the recommendation at every ``--every``-th run (from ``min_runs`` on); the mean share
  of those checkpoints at which a flaky test is flagged q|i, at which a non-flaky one is (false
  alarms), and the median run at which a flaky test is first flagged q|i;
* the same without revisions (no same-revision flips can be seen): what the score alone does;
* cost: microseconds per ``score_runs`` of the window and summary on the real histories, and ``score_runs`` on 100,000
  synthetic histories of window size (the CLI's path: summary built from the runs).

The data has no timestamps and no failure messages: the time-span confidence is "unknown" (0.5) and
message variance is not measured. Run: ``python bench/scoring_illinois.py [--windows 10,50,100]``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import random
import re
import statistics
import sys
import time
import zipfile
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.scoring import HistorySummary, Run, ScoringConfig, score_runs, summarize

REPO = Path(__file__).resolve().parent.parent
DATA_CANDIDATES = [
    REPO.parent / "shared" / "data" / "illinois-reruns",
    Path("/work/shared/data/illinois-reruns"),
]
STATUS = {"pass": "passed", "failure": "failed", "error": "error"}
FLAGGED = ("quarantine", "investigate")
BATCH_TIME = re.compile(r"_(\d+)M_(\d+)d_(\d+)h_(\d+)m_(\d+)s$")


@dataclass
class TestHistory:
    name: str  # slug,sha,test_name
    flaky: bool
    label: str  # pass | failure | flaky (the summary's summarized_test_result)
    runs: list[Run]


def find_data(explicit: str | None) -> Path | None:
    for candidate in [Path(explicit)] if explicit else DATA_CANDIDATES:
        if (candidate / "isolation" / "isolation-per-test-results.zip").is_file():
            return candidate
    return None


def batch_start(machine_id: str) -> tuple[int, ...]:
    """The start of a batch of 100 runs, from the machine id's "..._5M_25d_19h_20m_49s" suffix."""
    match = BATCH_TIME.search(machine_id)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def load(data: Path) -> list[TestHistory]:
    """Every test's runs in run order, with its label from test-summaries/all.csv."""
    labels = {}
    with open(data / "isolation" / "test-summaries" / "all.csv", newline="") as handle:
        for row in csv.reader(handle):
            slug, sha, test, _module, result = row[:5]
            labels[(slug, sha, test)] = result
    histories = []
    with zipfile.ZipFile(data / "isolation" / "isolation-per-test-results.zip") as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if not info.filename.endswith("-results.csv"):
                continue
            rows = []
            with archive.open(info) as raw:
                for row in csv.reader(io.TextIOWrapper(raw, encoding="utf-8")):
                    test, result, seconds, run_num, machine = row[:5]
                    slug, sha = row[8], row[9]
                    rows.append((batch_start(machine), int(run_num), test, result, float(seconds), slug, sha))
            rows.sort()
            _, _, test, _, _, slug, sha = rows[0]
            label = labels.get((slug, sha, test))
            if label is None:
                print(f"  no label for {slug} {test}: left out", file=sys.stderr)
                continue
            runs = [Run(STATUS[result], 1, seconds, None, sha) for *_, result, seconds, _, _ in rows]
            histories.append(TestHistory(f"{slug},{sha},{test}", label == "flaky", label, runs))
    return histories


def precision_recall(flags: list[bool], truth: list[bool]) -> tuple[float, float]:
    tp = sum(f and t for f, t in zip(flags, truth, strict=True))
    fp = sum(f and not t for f, t in zip(flags, truth, strict=True))
    fn = sum(t and not f for f, t in zip(flags, truth, strict=True))
    return (tp / (tp + fp) if tp + fp else float("nan")), (tp / (tp + fn) if tp + fn else float("nan"))


def evaluate(
    histories: list[TestHistory], window: int, every: int, revisions: bool = True
) -> dict[str, float | str]:
    """The figures for one window; ``revisions=False`` drops the revisions (no same-revision flips)."""
    config = ScoringConfig(window=window, min_runs=min(5, window))
    final_flag, final_unstable, final_broken, truth = [], [], [], []
    flaky_actions: Counter[str] = Counter()
    share_flaky, share_clean, first_flag = [], [], []
    score_seconds, score_calls = 0.0, 0
    for test in histories:
        kept: deque[Run] = deque(maxlen=config.window)  # what the store keeps of a test
        summary = HistorySummary()
        checkpoints = flagged = 0
        first = None
        for number, run in enumerate(test.runs, start=1):
            run = run if revisions else dataclasses.replace(run, revision=None)
            summary.add(run)
            if run.status != "skipped":
                kept.append(run)
            if number >= config.min_runs and number % every == 0:
                start = time.perf_counter()
                action = score_runs(kept, config, summary).recommendation.action
                score_seconds += time.perf_counter() - start
                score_calls += 1
                checkpoints += 1
                if action in FLAGGED:
                    flagged += 1
                    first = first or number
        result = score_runs(kept, config, summary)
        final_flag.append(result.recommendation.action in FLAGGED)
        if test.flaky:
            flaky_actions[result.recommendation.action] += 1
        final_unstable.append(result.recommendation.action != "stable")
        truth.append(test.flaky)
        final_broken.append(result.broken or result.broken_since is not None)  # investigate as broken
        if checkpoints:
            (share_flaky if test.flaky else share_clean).append(flagged / checkpoints)
        if test.flaky:
            first_flag.append(first)
    p_qi, r_qi = precision_recall(final_flag, truth)
    p_flaky, _ = precision_recall([f and not b for f, b in zip(final_flag, final_broken, strict=True)], truth)
    p_ns, r_ns = precision_recall(final_unstable, truth)
    detected = sorted(f for f in first_flag if f is not None)
    return {
        "window": window,
        "revisions": "yes" if revisions else "no",
        "flaky final q/i/m/s": "/".join(
            str(flaky_actions[a]) for a in ("quarantine", "investigate", "monitor", "stable")
        ),
        "P q|i": p_qi,
        "R q|i": r_qi,
        "P q|i w/o broken": p_flaky,
        "P not-stable": p_ns,
        "R not-stable": r_ns,
        "flaky flagged (time)": statistics.fmean(share_flaky) if share_flaky else float("nan"),
        "clean flagged (time)": statistics.fmean(share_clean) if share_clean else float("nan"),
        "first flag (median run)": statistics.median(detected) if detected else float("nan"),
        "flaky ever flagged": f"{len(detected)}/{len(first_flag)}",
        "us/score": 1e6 * score_seconds / max(1, score_calls),
    }


def synthetic(rng: random.Random, size: int) -> list[Run]:
    """A history of ``size`` runs: failure rate 0, 1, 10, 30 or 50%, some re-runs, messages, times."""
    rate = rng.choice((0.0, 0.01, 0.1, 0.3, 0.5))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    runs = []
    for i in range(size):
        failed = rng.random() < rate
        message = (
            f"AssertionError: expected {rng.randint(0, 9)} got {rng.randint(0, 9)} at t.py:{i}"
            if failed
            else None
        )
        attempt = 2 if i and runs[-1].failed and rng.random() < 0.5 else 1
        revision = runs[-1].revision if attempt == 2 else f"{i:07x}"
        runs.append(
            Run(
                "failed" if failed else "passed",
                attempt,
                rng.uniform(0.1, 5),
                start + timedelta(hours=i),
                revision,
                message,
            )
        )
    return runs


def cost(window: int, tests: int, distinct: int = 1000) -> dict[str, float | str]:
    """score_runs on synthetic window-size histories: µs per test, seconds for ``tests`` tests."""
    rng = random.Random(window)
    pool = [synthetic(rng, window) for _ in range(distinct)]
    config = ScoringConfig(window=window, min_runs=min(5, window))
    start = time.perf_counter()
    for i in range(tests):
        score_runs(pool[i % distinct], config)
    seconds = time.perf_counter() - start
    summary_bytes = statistics.fmean(len(json.dumps(summarize(runs).to_dict())) for runs in pool)
    return {
        "window": window,
        "us/test": 1e6 * seconds / tests,
        f"s for {tests} tests": seconds,
        "summary JSON bytes": summary_bytes,
    }


FIXTURE_TESTS = (
    "org.apache.dubbo.remoting.transport.netty.ThreadNameTest.testThreadName",  # flaky, 12 of 4,000
    "com.alibaba.json.bvt.serializer.ConcurrentHashMapTest5.test_concurrentHashmap",  # always passes
    "com.alibaba.json.bvt.issue_1200.Issue1298.test_for_issue_1",  # always fails
)
FIXTURE_RUNS = 120


def export_fixture(histories: list[TestHistory], path: Path) -> None:
    """tests/fixtures/scoring/illinois-sample.jsonl.gz: the first 120 runs of three tests, in the
    ``flakebot score`` input format, with the label kept as an extra field."""
    import gzip

    with gzip.open(path, "wt", encoding="utf-8") as out:
        for history in histories:
            if history.name.split(",")[2] in FIXTURE_TESTS:
                runs = [
                    {"status": r.status, "attempt": r.attempt, "time": r.time, "revision": r.revision}
                    for r in history.runs[:FIXTURE_RUNS]
                ]
                out.write(
                    json.dumps({"test": history.name.split(",")[2], "label": history.label, "runs": runs})
                )
                out.write("\n")
    print(f"wrote {path}")


def fmt(value: float | int | str) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def table(rows: list[dict[str, float | str]]) -> str:
    keys = list(rows[0])
    widths = [max(len(k), *(len(fmt(r[k])) for r in rows)) for k in keys]
    lines = [" | ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(fmt(r[k]).rjust(w) for k, w in zip(keys, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", help="the illinois-reruns directory (default ../shared/data/illinois-reruns)"
    )
    parser.add_argument("--windows", default="10,50,100", help="window sizes, comma-separated")
    parser.add_argument(
        "--every", type=int, default=10, help="score every N-th run for the over-time figures"
    )
    parser.add_argument("--tests", type=int, default=100_000, help="synthetic tests for the cost figure")
    parser.add_argument(
        "--export-fixture", metavar="PATH", help="write the test fixture (see below) and stop"
    )
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]

    data = find_data(args.data)
    if data is None:
        print(
            "The Illinois re-run data is missing: expected isolation/isolation-per-test-results.zip under "
            + " or ".join(str(c) for c in ([Path(args.data)] if args.data else DATA_CANDIDATES))
            + ".\nIt lives in the project's shared folder (../shared/data/illinois-reruns); pass --data DIR.",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    histories = load(data)
    if args.export_fixture:
        export_fixture(histories, Path(args.export_fixture))
        return 0
    flaky = sum(h.flaky for h in histories)
    runs = sum(len(h.runs) for h in histories)
    print(
        f"{len(histories)} tests ({flaky} flaky), {runs} runs, loaded in {time.perf_counter() - start:.1f} s"
    )
    print(
        f"labels: {', '.join(f'{k} {v}' for k, v in sorted(Counter(h.label for h in histories).items()))}\n"
    )

    print("Recommendations against the flaky label (q|i = quarantine or investigate;")
    print(f"over time: the recommendation at every {args.every}th run)")
    print(table([evaluate(histories, w, args.every, r) for r in (True, False) for w in windows]))

    print(f"\nScoring cost, synthetic histories of window size, {args.tests} tests (score_runs, one core)")
    print(table([cost(w, args.tests) for w in windows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
