"""The labels a backfill infers for past failures from what happened next (weak labels). Pure.

For each failure of a test in a job (or of a whole job whose log named no test), from the history of that
test in that job (``docs/backfill.md`` has the reasons):

1. **flake**: the test passed in a later attempt of the same commit (a re-run of the same run, or a
   later run on the same commit): nothing changed but the luck;
2. **real**: it failed again in every later attempt of the same commit, and there was at least one;
3. **real**: on the default branch, it kept failing on the following commit(s) until a later commit
   passed: something was broken, then fixed. The failing commit must have failed in all its attempts,
   and at least one following commit must have failed too (a failure followed at once by a pass may be
   a flake or a quick fix: no label);
4. anything else stays unlabelled: kept for the history and the page, not learnt from.

"Later" is by run id, then attempt (both forges number runs in the order they start). Skipped runs say
nothing. These labels are weaker than a maintainer's ``/flake flake|real`` and than a pass on retry seen
live (``Store.training_records`` lets those win).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.status import FAILED_HISTORY_STATUSES
from bot.store import HistoryRun

PASSED_LATER = "passed in a later attempt of the same commit"
FAILED_EVERY_LATER = "failed again in every later attempt of the same commit"
KEPT_FAILING = "kept failing on the default branch's following commits until one passed"


@dataclass(frozen=True)
class Inferred:
    label: str  # flake | real
    rule: str


def _order(row: HistoryRun) -> tuple[int, int]:
    return row.run_id, row.attempt


def _failed(row: HistoryRun) -> bool:
    return row.status in FAILED_HISTORY_STATUSES


def infer(
    failures: Sequence[HistoryRun], history: Sequence[HistoryRun], default_branch: str | None
) -> list[Inferred | None]:
    """The label of each of ``failures`` (rows of one test in one job) from ``history`` (every row of
    that test in that job, ``failures`` included), in the order given."""
    runs = sorted((r for r in history if r.status != "skipped"), key=_order)
    # the default branch's commits in the order they first ran, each failed unless any attempt passed
    commits: dict[str, bool] = {}
    for row in runs:
        if row.branch == default_branch and row.revision:
            commits[row.revision] = commits.get(row.revision, True) and _failed(row)
    order = list(commits)
    position = {revision: i for i, revision in enumerate(order)}
    return [_infer(f, runs, commits, order, position, default_branch) for f in failures]


def _infer(
    failure: HistoryRun,
    runs: Sequence[HistoryRun],
    commits: dict[str, bool],
    order: list[str],
    position: dict[str, int],
    default_branch: str | None,
) -> Inferred | None:
    key = _order(failure)
    later = [r for r in runs if r.revision == failure.revision and _order(r) > key]
    if failure.revision and any(not _failed(r) for r in later):
        return Inferred("flake", PASSED_LATER)
    if failure.revision and later:
        return Inferred("real", FAILED_EVERY_LATER)
    if failure.branch != default_branch or not failure.revision or not commits.get(failure.revision):
        return None
    failing_after = 0
    for revision in order[position[failure.revision] + 1 :]:
        if commits[revision]:
            failing_after += 1
        else:
            return Inferred("real", KEPT_FAILING) if failing_after else None
    return None
