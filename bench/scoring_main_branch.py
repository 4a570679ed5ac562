"""History scoring on generated main-branch histories (synthetic): precision and recall per pattern, old vs new.

Every run of these histories is a new revision, as on a main branch (no re-runs, so no same-revision
flips). The generators are those of the tests (``tests/patterns.py``, seeded):

* flaky: 40–150 runs failing at random with a probability drawn from 10–40%;
* broken since a commit: 10–60 passes, then 2–40 failures up to now;
* fixed regression: 10–60 passes, a block of 3–8 failures, 1–40 passes;
* stable: 40–150 passes;
* rare flaky (1–5%): outside the goal, shown for what the rules do below it.

"Flagged flaky" is investigate or quarantine *not* as broken (neither ``broken`` nor ``broken_since``).
Precision and recall of that against the flaky pattern are over equal numbers of the four goal
patterns. "old" is the scoring document's rules alone (``episode_rules: false``), "new" the default.
Over time (new rules): each history is scored after every run, as the service does; for flaky
histories the median run at which they are first flagged and the share of scorings (from run 10 on)
that flag them; for broken ones the number of failures until "investigate" with the right revision;
for the others how many scorings flagged them flaky. Needs no data: ``python -m bench scoring_main_branch [-- --histories 1000 --windows 30,50,100]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._shared import table
from bot.scoring import FlakeScore, History, Run, ScoringConfig, score_runs
from tests.patterns import MAIN_BRANCH, main_rare_flaky

ACTIONS = ("quarantine", "investigate", "monitor", "stable")
PATTERNS: dict[str, Callable[[random.Random], list[Run]]] = {
    **MAIN_BRANCH,
    "rare flaky (1-5%)": main_rare_flaky,
}
GOAL = tuple(MAIN_BRANCH)  # the four patterns with goals; "flaky" is the positive one


def flagged_flaky(result: FlakeScore) -> bool:
    return result.recommendation.action in ("quarantine", "investigate") and not (
        result.broken or result.broken_since
    )


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def evaluate(histories: dict[str, list[list[Run]]], config: ScoringConfig, label: str) -> list[dict]:
    """One row a pattern: the share flagged flaky, the actions, and for broken ones the revision."""
    rows, flags = [], {}
    for name, runs_list in histories.items():
        results = [score_runs(runs, config) for runs in runs_list]
        flags[name] = [flagged_flaky(r) for r in results]
        actions = Counter(r.recommendation.action for r in results)
        right_revision = sum(  # says so, with the revision of the first failure
            r.recommendation.action == "investigate"
            and f"failing since revision {next(run for run in runs if run.failed).revision}"
            in r.recommendation.reason
            for runs, r in zip(runs_list, results, strict=True)
        )
        rows.append(
            {
                "window": config.window,
                "rules": label,
                "pattern": name,
                "flagged flaky": pct(sum(flags[name]), len(results)),
                "q/i/m/s": "/".join(str(actions[a]) for a in ACTIONS),
                "investigate, naming the revision it broke on": pct(right_revision, len(results))
                if name == "broken since a commit"
                else "",
            }
        )
    tp = sum(flags["flaky"])
    fp = sum(sum(flags[name]) for name in GOAL if name != "flaky")
    rows.append(
        {
            "window": config.window,
            "rules": label,
            "pattern": "precision / recall",
            "flagged flaky": f"{tp / (tp + fp):.3f} / {tp / len(flags['flaky']):.3f}" if tp + fp else "-",
            "q/i/m/s": "",
            "investigate, naming the revision it broke on": "",
        }
    )
    return rows


def over_time(histories: dict[str, list[list[Run]]], config: ScoringConfig) -> list[dict]:
    """Score after every run: when flaky histories are first flagged, how soon a break is seen."""
    first_flag, share, detect = [], [], []
    for runs in histories["flaky"]:
        history, flagged, scorings, first = History(config), 0, 0, None
        for number, run in enumerate(runs, start=1):
            history.add(run)
            if flagged_flaky(history.score()):
                first = first or number
                flagged += number >= 10
            scorings += number >= 10
        first_flag.append(first)
        share.append(flagged / max(1, scorings))
    for runs in histories["broken since a commit"]:
        history, broke, found = History(config), None, None
        for number, run in enumerate(runs, start=1):
            history.add(run)
            broke = broke or (number if run.failed else None)
            result = history.score()
            if (
                broke
                and result.recommendation.action == "investigate"
                and result.broken_since == runs[broke - 1].revision
            ):
                found = number - broke + 1
                break
        detect.append(found)
    false_alarms = {}
    for name in ("broken since a commit", "fixed regression", "stable"):
        flagged = scorings = 0
        for runs in histories[name]:
            history = History(config)
            for run in runs:
                history.add(run)
                flagged += flagged_flaky(history.score())
                scorings += 1
        false_alarms[name] = f"{flagged}/{scorings}"
    seen = [f for f in first_flag if f is not None]
    return [
        {
            "window": config.window,
            "flaky: first flagged at run (median)": statistics.median(seen) if seen else "-",
            "flaky: ever flagged": pct(len(seen), len(first_flag)),
            "flaky: share of scorings flagged (run 10 on)": f"{100 * statistics.fmean(share):.1f}%",
            "broken: failures until investigate (median, max)": (
                f"{statistics.median(d for d in detect if d)}, {max(d for d in detect if d)}"
            ),
            "broken: found": pct(sum(1 for d in detect if d), len(detect)),
            "scorings flagged flaky: broken / regression / stable": " / ".join(false_alarms.values()),
        }
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", type=int, default=1000, help="histories a pattern (default 1000)")
    parser.add_argument("--windows", default="30,50,100", help="window sizes, comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument(
        "--over-time", type=int, default=300, help="histories a pattern scored after every run (default 300)"
    )
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    start = time.perf_counter()
    histories = {
        name: [make(random.Random(seed)) for seed in range(args.seed, args.seed + args.histories)]
        for name, make in PATTERNS.items()
    }
    print(f"{args.histories} synthetic histories a pattern, every run a new revision (seeds {args.seed}..)\n")
    rows = []
    for window in windows:
        for label, rules in (("old", False), ("new", True)):
            rows += evaluate(histories, ScoringConfig(window=window, episode_rules=rules), label)
    print(table(rows, "Final recommendation (q/i/m/s = quarantine/investigate/monitor/stable)"))
    some = {name: runs[: args.over_time] for name, runs in histories.items()}
    timed = [over_time(some, ScoringConfig(window=w)) for w in windows]
    title = f"Over time, new rules ({min(args.over_time, args.histories)} histories a pattern, scored after every run)"
    print(table([row for rows in timed for row in rows], title))
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
