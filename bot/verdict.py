"""The final verdict on one test failure: the log model's verdict and the test's history, combined.

Pure. A retry happens only on ``flake``, ``known-issue`` and ``infra``, so a failure is called a flake
only with evidence: the model's, a pass of the same test on the same commit, or a history that is both
strongly flaky and proven flaky (passed and failed on one revision). The first matching rule wins:

1. ``infra``        an infrastructure failure reason was given (GitLab ``runner_system_failure``, ...)
2. ``known-issue``  the log matches a known issue
3. ``broken``       the test is broken (it fails every run of its window, or it has failed every run
                    since a revision: the ``broken`` pattern) and its latest run on the default branch,
                    of another revision, failed too: it was already failing there, whatever the model
                    says; not caused by the change, and not worth a retry either
   ``real``         broken, but not on the default branch before this run (only this change's runs
                    fail): the change broke it
4. model ``flake``  → ``flake``, unless the test failed before too and has never passed (→ ``unknown``)
5. ``flake``        the same test passed on this same revision before (the change cannot be the cause)
6. model ``real``   → ``real``
7. ``flake``        model ``unknown``, history strongly flaky (score and confidence reach the
                    investigate thresholds) and proven flaky by a same-revision flip
8. ``unknown``

Each verdict carries two one-line explanations, one for the log evidence and one for the history,
for the PR comment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.scoring import DEFAULT_CONFIG, FlakeScore, ScoringConfig

FinalVerdict = Literal["flake", "real", "known-issue", "unknown", "infra", "broken", "incident"]
MODEL_VERDICTS = ("flake", "real", "unknown")
RETRY_VERDICTS = ("flake", "known-issue", "infra")
MAX_REASON_CHARS = 160


@dataclass(frozen=True)
class Verdict:
    verdict: FinalVerdict
    log: str  # one line: what the log says
    history: str  # one line: what the test's history says
    # which rule decided: infra, known-issue, broken, already-broken, model, never-passed, same-revision,
    # history, none (and incident: ``bot.incidents`` replaces the verdict of an incident's failures)
    rule: str


@dataclass(frozen=True)
class DefaultBranchFailing:
    """The test's runs on the default branch, other than the judged revision's, have failed since
    ``since`` (``runs`` of them in a row, the newest included): it was failing there already."""

    since: str | None
    runs: int


def _one_line(text: Any, limit: int = MAX_REASON_CHARS) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def log_line(model: Mapping[str, Any] | None) -> str:
    """One line on the log evidence of the model's verdict."""
    if not model:
        return "no verdict from the log model"
    verdict = model.get("verdict")
    probability = _number(model.get("flake_probability"))
    if verdict == "unknown":
        reason = model.get("reason")
        return "the log matches nothing known with confidence" + (f": {_one_line(reason)}" if reason else "")
    words = "looks like a flake" if verdict == "flake" else "looks like a real failure"
    parts = [f"flake probability {probability:.0%}"] if probability is not None else []
    share, size = _number(model.get("cluster_flake_share")), model.get("cluster_size")
    if share is not None and isinstance(size, int) and size > 0:
        parts.append(f"{share:.0%} of {size} similar failures were flakes")
    nearest = model.get("nearest") or []
    if nearest and isinstance(nearest[0], Mapping) and nearest[0].get("test"):
        first = nearest[0]
        label = first.get("label") or "unlabelled"
        distance = _number(first.get("distance"))
        at = f", distance {distance:.2f}" if distance is not None else ""
        parts.append(f"nearest: {_one_line(first['test'], 80)} ({label}{at})")
    elif (distance := _number(model.get("distance"))) is not None:
        parts.append(f"distance {distance:.2f}")
    return words + (f" ({'; '.join(parts)})" if parts else "")


def history_line(history: FlakeScore | None, *, passed_on_revision: bool = False) -> str:
    """One line on the test's history, e.g. "fails 3 of the last 40 runs, passed and failed on the same
    commit; score 0.62, monitor"."""
    if history is None or history.total_runs == 0:
        return "no runs of this test recorded yet"
    span = f"{history.runs} runs" if history.runs == history.total_runs else f"the last {history.runs} runs"
    if history.broken:
        text = f"fails every one of {span}"
    elif history.total_runs == 1 and history.total_failures == 1:
        text = "first run of this test flakebot has seen"
    elif history.total_runs == history.total_failures:
        text = f"has never passed ({history.total_runs} runs so far)"
    else:
        text = f"fails {history.failures} of {span}"
    if passed_on_revision:
        text += ", passed on this same commit before"
    elif history.flips:
        text += ", passed and failed on the same commit"
    action = history.recommendation.action
    if history.broken or history.broken_since:
        action += f" ({history.recommendation.reason})"
    return f"{text}; score {history.score:.2f}, {action}"


def already_failing_line(history: FlakeScore | None, failing: DefaultBranchFailing) -> str:
    """The history line of a test that was already failing on the default branch, e.g. "already failing
    on the default branch since revision 4f2a9c1 (12 runs in a row there): not caused by this change"."""
    since = failing.since or (history.broken_since if history is not None else None)
    where = f" since revision {since[:12]}" if since else ""
    text = f"already failing on the default branch{where} ({failing.runs} run(s) in a row there): not caused by this change"
    if history is not None:
        text += f"; score {history.score:.2f}, {history.recommendation.action}"
    return text


def final_verdict(
    model: Mapping[str, Any] | None,
    history: FlakeScore | None,
    *,
    known_issue: Mapping[str, Any] | None = None,
    infra_reason: str | None = None,
    passed_on_revision: bool = False,
    default_branch_failing: DefaultBranchFailing | None = None,
    config: ScoringConfig = DEFAULT_CONFIG,
) -> Verdict:
    """Combine the log model's verdict and the history score into the verdict for one failure.

    ``history`` is the test's score *including* this failure; ``passed_on_revision`` says whether the
    test passed on the failing revision before (``HistorySummary.passed_on``);
    ``default_branch_failing`` whether its newest runs on the default branch, of other revisions,
    failed. ``config`` gives the thresholds that make a history "strongly flaky".
    """
    model_verdict = (model or {}).get("verdict", "unknown")
    if model_verdict not in MODEL_VERDICTS:
        raise ValueError(
            f"the model's verdict must be one of {'|'.join(MODEL_VERDICTS)}, got {model_verdict!r}"
        )
    history_text = history_line(history, passed_on_revision=passed_on_revision)

    if infra_reason:
        reason = _one_line(infra_reason, 80)
        return Verdict(
            "infra", f"infrastructure failure ({reason}), not caused by the change", history_text, "infra"
        )
    if known_issue:
        issue, slug = known_issue.get("issue"), known_issue.get("slug")
        text = f"matches known issue #{issue}" + (f" ({_one_line(slug, 80)})" if slug else "")
        return Verdict("known-issue", text, history_text, "known-issue")

    log_text = log_line(model)
    broken = history is not None and (history.broken or history.broken_since is not None)
    if broken and default_branch_failing is not None:
        history_text = already_failing_line(history, default_branch_failing)
        return Verdict("broken", log_text, history_text, "already-broken")
    if history is not None and history.broken:
        return Verdict("real", log_text, history_text, "broken")
    if model_verdict == "flake":
        # a first failure is judged by its log (the model's cut-off already makes a never-seen failure
        # "unknown"); a test that failed before and has never passed may simply not work yet
        if history is not None and history.total_runs >= 2 and history.total_failures == history.total_runs:
            return Verdict("unknown", log_text, history_text, "never-passed")
        return Verdict("flake", log_text, history_text, "model")
    if passed_on_revision:
        return Verdict("flake", log_text, history_text, "same-revision")
    if model_verdict == "real":
        return Verdict("real", log_text, history_text, "model")
    if (
        history is not None
        and history.flips > 0
        and history.score >= config.investigation_threshold
        and history.confidence >= config.min_confidence_for_action
    ):
        return Verdict("flake", log_text, history_text, "history")
    return Verdict("unknown", log_text, history_text, "none")
