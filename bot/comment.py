"""The one comment flakebot keeps on a pull/merge request: a section per workflow, edited in place.

The sections live in the store (``change_state``), so a run of one workflow never erases what another
workflow's run said, and a later green attempt of the same commit updates its section. The text is
rendered from ``templates/comment.md.j2``; secrets are masked by the renderer; the whole comment is
kept under GitHub's 65,536 characters by dropping detail first, then rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.decide import Decision
from bot.forge.base import Run
from bot.render import render, truncate_middle
from bot.run.results import Judgement

MARKER = "<!-- flakebot:comment -->"
LIMIT = 65_536
EXCERPT_CHARS = 1_500
ICONS = {
    "flake": ":repeat:",
    "real": ":x:",
    "known-issue": ":bookmark:",
    "infra": ":construction:",
    "unknown": ":grey_question:",
    "broken": ":no_entry:",
    "incident": ":rotating_light:",
}


def failure_row(f: Judgement) -> dict[str, Any]:
    """What the comment (and ``/flake explain``) shows of one failure (plain data: it is stored and
    re-rendered later)."""
    model = f.model
    return {
        "test": f.test,
        "job": f.job,
        "job_url": f.job_url,
        "verdict": f.verdict.verdict,
        "log": f.verdict.log,
        "history": f.verdict.history,
        "known_issue": dict(f.known_issue) if f.known_issue else None,
        "incident": dict(f.incident) if f.incident else None,
        "lines": list(f.lines) if f.lines else None,
        "cluster": model.cluster,
        "cluster_size": model.cluster_size,
        "cluster_flake_share": model.cluster_flake_share,
        "distance": model.distance,
        "nearest": [
            {"test": n.get("test", ""), "label": n.get("label"), "distance": n.get("distance", 0.0)}
            for n in model.nearest[:3]
        ],
        "flake_probability": model.flake_probability,
        "neighbour_probability": model.extra.get("neighbour_probability"),
        "text_probability": model.extra.get("text_probability"),
        "terms": [
            {"term": str(t.get("term", "")), "weight": float(t.get("weight", 0.0))}
            for t in (model.extra.get("terms") or [])[:5]
        ],
        "infra_signs": list(model.extra.get("infra_signs") or []),
        "retry_threshold": model.retry_threshold,
        "excerpt": f.excerpt[-EXCERPT_CHARS:],
    }


def summary_line(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"**{total} failed test{'s' if total != 1 else ''}:** {parts}."


def run_section(
    run: Run, failures: Sequence[Judgement], decision: Decision, actions: Sequence[str]
) -> dict[str, Any]:
    return {
        "title": run.name or f"run {run.id}",
        "run_id": run.id,
        "event": run.event,  # /flake retry needs it: a third-party check suite cannot be re-run
        "sha": run.sha,
        "attempt": run.attempt,
        "url": run.html_url,
        "passed": False,
        "summary": summary_line(decision.counts),
        "failures": [failure_row(f) for f in failures],
        "actions": list(actions),
    }


def passed_section(previous: Mapping[str, Any], run: Run, actions: Sequence[str]) -> dict[str, Any]:
    """The section of a workflow whose later attempt of the same commit passed."""
    return {**previous, "attempt": run.attempt, "url": run.html_url or previous.get("url"), "passed": True,
            "actions": [*previous.get("actions", []), *actions]}  # fmt: skip


def render_comment(sections: Mapping[str, Mapping[str, Any]], *, config_error: str | None = None) -> str:
    """The comment for these sections (by workflow), under the size limit."""
    ordered = [sections[k] for k in sorted(sections)]
    body = ""
    for details, max_rows in ((True, 50), (False, 50), (False, 20), (False, 5)):
        body = render(
            "comment.md.j2",
            marker=MARKER,
            sections=ordered,
            config_error=config_error,
            icons=ICONS,
            details=details,
            max_rows=max_rows,
        )
        if len(body) <= LIMIT:
            return body
    return truncate_middle(body, LIMIT)
