"""The typed records of the run path: a test's result, the model's verdict on a failure, a judgement.

Between collecting a run's results and acting on them, data travels as these, never as loose dicts:

* :class:`TestResult`: one test's result in one job, as the splitters found it in a log or a report;
* :class:`ModelVerdict`: the flake model's verdict on one failure, built at the boundary from the dict
  ``FlakeClassifier.explain`` returns. Keys the model adds that flakebot does not name are kept in
  ``extra`` and come back in :meth:`ModelVerdict.as_dict`, so the model can grow its evidence without
  the run path changing;
* :class:`Judgement`: one failure's final verdict and the evidence behind it: what ``decide`` takes,
  the comment shows, the store keeps and ``/flake explain`` reads back.

The status words are those of ``bot/status.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from bot.status import FAILED_TEST_STATUSES, TestStatus
from bot.verdict import MODEL_VERDICTS, Verdict

JOB_LEVEL_FORMATS = ("job", "unknown")  # a result for a whole job whose log named no failing test


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test's result in one job of a run (a record of ``bot/records.py``, typed)."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    test: str
    status: TestStatus
    log: str  # the failing part of the log ("" for a pass)
    job: str = ""
    job_url: str = ""  # the job's page, else the run's
    format: str = ""  # the splitter that found it ("pytest", "junit", ...); "job" for a whole job
    lines: tuple[int, int] | None = None  # 1-based, inclusive, in the job's log
    infra: str | None = None  # the job's infrastructure failure reason (GitLab), when it has one
    # a run of a test that the test runner re-ran within the job (JUnit <flakyFailure>): 0 the first;
    # ``passed_on_retry``: this failed run was followed by a pass in the same job, so it is history
    # (a same-revision flip), not one of the run's failures
    retry: int = 0
    passed_on_retry: bool = False

    @property
    def failed(self) -> bool:
        return self.status in FAILED_TEST_STATUSES

    @property
    def counts(self) -> bool:
        """A failure of the run: judged, commented, retried (a failed run the test runner's re-run
        passed within the job is not: it is in the history only)."""
        return self.failed and not self.passed_on_retry

    @property
    def key(self) -> tuple[str, str]:
        """(test, job): a test's history is kept per job."""
        return self.test, self.job

    @property
    def job_level(self) -> bool:
        """A failure of a whole job whose log named no failing test."""
        return self.format in JOB_LEVEL_FORMATS

    def as_record(self) -> dict[str, Any]:
        """The JSONL record the flake model reads (``FlakeClassifier.explain``, ``slim``)."""
        return {"status": self.status, "test": self.test, "log": self.log, "job": self.job}

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], *, job: str, job_url: str, infra: str | None = None, retry: int = 0
    ) -> TestResult:
        lines = record.get("lines")
        return cls(
            test=record["test"],
            status=record["status"],
            log=record.get("log") or "",
            job=job,
            job_url=job_url,
            format=record.get("format") or "",
            lines=(int(lines[0]), int(lines[1])) if lines else None,
            infra=infra if record["status"] in FAILED_TEST_STATUSES else None,
            retry=retry,
            passed_on_retry=bool(record.get("passed_on_retry")),
        )


ModelVerdictName = Literal["flake", "real", "unknown"]
_NAMED = ("verdict", "flake_probability", "cluster", "cluster_size", "cluster_flake_share", "distance",
          "nearest", "reason")  # fmt: skip


@dataclass(frozen=True)
class ModelVerdict:
    """The flake model's verdict on one failure and its evidence (``docs/model.md``)."""

    verdict: ModelVerdictName = "unknown"
    flake_probability: float | None = None
    cluster: int | None = None
    cluster_size: int = 0
    cluster_flake_share: float | None = None
    distance: float | None = None  # to the nearest past failure
    nearest: tuple[Mapping[str, Any], ...] = ()  # the nearest past failures: test, label, distance, ...
    reason: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # what else the model said, kept as it said it

    @classmethod
    def from_explain(cls, data: Mapping[str, Any]) -> ModelVerdict:
        """From one item of ``FlakeClassifier.explain`` (or one stored with a failure): every key the
        model adds is kept in ``extra``."""
        verdict = data.get("verdict", "unknown")
        if verdict not in MODEL_VERDICTS:
            raise ValueError(
                f"the model's verdict must be one of {'|'.join(MODEL_VERDICTS)}, got {verdict!r}"
            )
        return cls(
            verdict=verdict,
            flake_probability=data.get("flake_probability"),
            cluster=data.get("cluster"),
            cluster_size=data.get("cluster_size") or 0,
            cluster_flake_share=data.get("cluster_flake_share"),
            distance=data.get("distance"),
            nearest=tuple(data.get("nearest") or ()),
            reason=data.get("reason") or "",
            extra={k: v for k, v in data.items() if k not in _NAMED},
        )

    def as_dict(self) -> dict[str, Any]:
        """The model's dict again (``bot.verdict`` reads it, the store keeps it as training evidence)."""
        return {"verdict": self.verdict, "flake_probability": self.flake_probability, "cluster": self.cluster,
                "cluster_size": self.cluster_size, "cluster_flake_share": self.cluster_flake_share,
                "distance": self.distance, "nearest": [dict(n) for n in self.nearest], "reason": self.reason,
                **self.extra}  # fmt: skip

    @property
    def retry_threshold(self) -> float | None:
        """The flake probability above which its model re-runs jobs (its trial's choice; None: never
        trialled, or no threshold reached the target precision — no re-runs on its verdicts)."""
        value = self.extra.get("retry_threshold")
        return float(value) if isinstance(value, int | float) else None

    def with_threshold(self, threshold: float) -> ModelVerdict:
        """The verdict under a repository's own threshold (``threshold:`` in its settings): flake above
        it, real otherwise. An "unknown" verdict (far and inconclusive, or no probability) stays."""
        if self.flake_probability is None or self.verdict == "unknown":
            return self
        extra = {**self.extra, "threshold": threshold} if "threshold" in self.extra else self.extra
        return replace(self, verdict="flake" if self.flake_probability > threshold else "real", extra=extra)


# The verdict when no model has been trained yet: the one place it is made.
NO_MODEL = ModelVerdict(reason="no flake model trained yet (flakebot train)")
# The verdict when there is one but no version of it can be loaded (the comment's note says why).
UNLOADABLE_MODEL = ModelVerdict(reason="the flake model could not be loaded (see the note below)")


@dataclass(frozen=True)
class Judgement:
    """One failed test of the run, judged: its final verdict and the evidence behind it."""

    test: str
    job: str
    job_url: str
    verdict: Verdict
    model: ModelVerdict = NO_MODEL
    known_issue: Mapping[str, Any] | None = None  # {"issue": number, "slug": text or None}
    lines: tuple[int, int] | None = None
    excerpt: str = ""  # the end of the failing part of the log
    incident: Mapping[str, Any] | None = None  # {"number", "url", "signature"}: an incident it is part of

    def evidence(self) -> dict[str, Any]:
        """What the store keeps of the judgement beside the model's verdict (``/flake explain``)."""
        return {"log": self.verdict.log, "history": self.verdict.history, "rule": self.verdict.rule,
                "known_issue": dict(self.known_issue) if self.known_issue else None,
                "lines": list(self.lines) if self.lines else None,
                "incident": dict(self.incident) if self.incident else None}  # fmt: skip
