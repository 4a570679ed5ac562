"""The plain records the store takes and gives back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.scoring import Run, parse_time


@dataclass
class Delivery:
    id: int
    forge: str
    delivery_id: str
    event: str
    payload: bytes
    attempts: int
    status: str


@dataclass
class HistoryRun:
    """One judged run of one test (a row of its history)."""

    test: str
    status: str  # passed | failed | error | skipped
    run_id: int
    attempt: int = 1
    job: str = ""
    revision: str | None = None
    branch: str | None = None
    duration: float | None = None
    message: str | None = None
    verdict: str | None = None  # the final verdict of a failure
    url: str | None = None
    created_at: str | None = None
    retry: int = 0  # the test runner's own re-run of the test within the job (JUnit flaky reruns): 0 first

    def as_scoring_run(self) -> Run:
        return Run(
            status=self.status,
            attempt=self.attempt + self.retry,  # a re-run within the job is a re-run for the score
            time=self.duration,
            created_at=parse_time(self.created_at),
            revision=self.revision,
            message=self.message,
        )


@dataclass
class Failure:
    """A judged failure kept for retraining (a record of ``bot/records.py`` plus where it came from),
    and the judgement's evidence that ``/flake explain`` shows again."""

    test: str
    log: str
    run_id: int
    attempt: int
    job: str
    revision: str | None
    change_number: int | None = None
    model: dict[str, Any] = field(default_factory=dict)  # the log model's verdict and evidence
    verdict: str | None = None  # the final verdict
    url: str | None = None
    created_at: str | None = None
    judgement: dict[str, Any] = field(default_factory=dict)  # Judgement.evidence(): log, history, rule...


@dataclass
class ChangeRun:
    """A run flakebot judged on a change's newest commit (one per workflow or pipeline source): what
    ``/flake retry`` re-runs unless a later attempt passed."""

    name: str  # the workflow's name (GitHub), the pipeline's name or source (GitLab), else "run <id>"
    run_id: int
    sha: str
    attempt: int
    url: str = ""
    event: str = ""  # a third-party check suite ("check_suite") cannot be re-run
    passed: bool = False


@dataclass(frozen=True)
class WeakLabel:
    """A label a backfill inferred for a stored failure from what happened next (docs/backfill.md):
    weaker than a maintainer's and than a pass on retry seen live, which win over it."""

    run_id: int
    attempt: int
    job: str
    test: str
    label: str  # flake | real
    rule: str  # which rule gave it, in words


def change_failure(row: dict[str, Any]) -> dict[str, Any]:
    """A failure of a change as both backends give it back: its model verdict and judgement decoded."""
    row["model"] = json.loads(row["model"] or "{}")
    row["judgement"] = json.loads(row["judgement"] or "{}")
    return row


def training_record(row: dict[str, Any]) -> dict[str, Any]:
    """A stored failure as a JSONL record (``bot/records.py``) with its labels: a human label wins; a
    pass on retry of the same commit is strong flake evidence; then what a backfill inferred from the
    history (weak)."""
    record = {
        "status": "failure",
        "test": row["test"],
        "log": row["log"],
        "context": row["job"],
        "revision": row["revision"],
        "date": row["created_at"],
        "merged": True if row["merged"] else None,
        "label": row["label"] or ("flake" if row["passed_on_retry"] else None) or row["weak_label"],
        "repo": row["repo"],
        "failure_id": row["id"],
    }
    if row["change_number"] is not None:
        record["pull"] = row["change_number"]
    if row["url"]:
        record["url"] = row["url"]
    return record
