"""Quarantine issues: which to open, update, close or leave alone. Pure; the forge adapters act.

One issue per test, found again by a hidden marker in its body (``<!-- flakebot:quarantine id=...
test=... -->``, the id a hash of the full test name) or, failing that, by its deterministic title.
The rules, in order (docs/scoring.md, "Quarantine issues"):

* an open issue whose test has passed ``stable_runs_to_close`` runs in a row is closed;
* an open issue is updated when a failure it does not list yet arrives; extra open issues for the
  same test are closed as duplicates;
* a test recommended for quarantine without an open issue gets one, most flaky first, unless it has
  passed ``stable_runs_to_close`` runs in a row already (it would be closed at once), a human
  closed its issue less than ``cooldown_days`` ago or ``max_open`` issues are open already. A closed
  issue is reopened (an ``open`` action with its ``number``) rather than filed again.

A maintainer's override (``/flake quarantine|unquarantine <test>``, :func:`plan_override`) holds until
the opposite command: the lifecycle never closes the issue of a test quarantined by hand, nor opens one
for a test unquarantined by hand.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

from bot.forge.base import Issue
from bot.render import render, truncate_middle
from bot.scoring import COMPONENTS, FlakeScore, ScoringConfig, parse_time

TITLE_PREFIX = "Flaky test: "
TITLE_MAX = 120  # characters; GitHub allows 256, GitLab 255, people read far fewer
BODY_MAX = 65_536  # GitHub's limit for an issue body
MARKER_RE = re.compile(r"<!-- flakebot:quarantine id=([0-9a-f]{16})\b")
MESSAGE_CHARS = 240  # of each failure message shown in the issue
TEST_CHARS = 1000  # of the test name shown in the body (the marker's id covers the full name)

ActionKind = Literal["open", "update", "close", "skip"]
Override = Literal["quarantine", "unquarantine"]


@dataclass(frozen=True)
class QuarantineConfig:
    max_open: int = 7  # Cockpit's cap
    cooldown_days: float = 21  # after a human closed an issue
    stable_runs_to_close: int = 30  # passes in a row that close an issue
    label: str = "flaky-test"
    bot_logins: frozenset[str] = frozenset()  # closers that are flakebot itself ("flakebot[bot]")
    max_failures_listed: int = 10

    def __post_init__(self) -> None:
        for name in ("max_open", "stable_runs_to_close", "max_failures_listed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        if not isinstance(self.cooldown_days, int | float) or self.cooldown_days < 0:
            raise ValueError(f"cooldown_days must be a number >= 0, got {self.cooldown_days!r}")
        if not self.label.strip():
            raise ValueError("label must not be empty")


@dataclass(frozen=True)
class FailureLink:
    """One recent failure of a test, for the issue body."""

    url: str | None = None  # the job or run that failed
    created_at: str | None = None
    revision: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A test with its score and its recent failures (newest first), and a maintainer's override."""

    test: str
    score: FlakeScore
    failures: Sequence[FailureLink] = ()
    override: Override | None = None
    override_by: str | None = None


@dataclass(frozen=True)
class Action:
    """What to do about one test's quarantine issue.

    ``open`` without ``number``: create an issue (title, body, labels). ``open`` with ``number``:
    reopen that closed issue with the new body. ``update``: replace the body of issue ``number``.
    ``close``: close issue ``number`` with ``comment``. ``skip``: nothing to do, ``reason`` says why.
    """

    kind: ActionKind
    test: str
    reason: str
    number: int | None = None
    title: str | None = None
    body: str | None = None
    labels: tuple[str, ...] = ()
    comment: str | None = None


def quarantine_id(test: str) -> str:
    """A short, stable id of a test name: what the issue marker carries."""
    return hashlib.sha256(test.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def marker(test: str) -> str:
    """The hidden marker that finds the issue again, whatever happens to its title."""
    shown = quote(test[:500], safe="/:[]._-(), ")
    return f"<!-- flakebot:quarantine id={quarantine_id(test)} test={shown} -->"


def marker_id(body: str | None) -> str | None:
    match = MARKER_RE.search(body or "")
    return match.group(1) if match else None


def issue_title(test: str) -> str:
    """``Flaky test: <test>``, trimmed in the middle with a hash tag when too long: deterministic."""
    name = re.sub(r"\s+", " ", test).strip()
    title = TITLE_PREFIX + name
    if len(title) <= TITLE_MAX:
        return title
    tag = f" [{quarantine_id(test)[:8]}]"
    room = TITLE_MAX - len(TITLE_PREFIX) - len(tag) - 1
    head = room // 3
    return TITLE_PREFIX + name[:head] + "…" + name[len(name) - (room - head) :] + tag


def _safe_url(url: str | None) -> str | None:
    if url and re.match(r"https?://[^\s<>]+$", url):
        return url
    return None


def _failure_rows(failures: Sequence[FailureLink]) -> list[dict[str, str | None]]:
    rows = []
    for failure in failures:
        message = re.sub(r"\s+", " ", failure.message or "").strip()
        message = truncate_middle(message, MESSAGE_CHARS, " […] ").replace("@", "@\u200b")  # no pings
        rows.append(
            {
                "url": _safe_url(failure.url),
                "when": failure.created_at or "failure",
                "revision": (failure.revision or "")[:12] or None,
                "message": message,
            }
        )
    return rows


def render_body(candidate: Candidate, config: QuarantineConfig, scoring: ScoringConfig | None = None) -> str:
    """The issue body (templates/quarantine_issue.md.j2), never longer than GitHub's 65,536 characters."""
    weights = (scoring or ScoringConfig()).weights
    score = candidate.score
    components = [
        {
            "label": name.replace("_", " "),
            "value": "not measured" if score.components[name] is None else f"{score.components[name]:.2f}",
            "weight": f"{getattr(weights, name):.2f}" + (" (penalty)" if name == COMPONENTS[-1] else ""),
        }
        for name in COMPONENTS
    ]
    shown = list(candidate.failures)[: config.max_failures_listed]
    manual = candidate.override == "quarantine"
    body = render(
        "quarantine_issue.md.j2",
        manual_by=(candidate.override_by or "a maintainer") if manual else None,
        marker=marker(candidate.test),
        test=truncate_middle(candidate.test, TEST_CHARS, " […] "),
        score=score,
        components=components,
        failures=_failure_rows(shown),
        more_failures=max(0, len(candidate.failures) - len(shown)),
        stable_runs_to_close=config.stable_runs_to_close,
        cooldown_days=f"{config.cooldown_days:g}",
    )
    return truncate_middle(body, BODY_MAX)  # the marker is on the first line, which is kept


@dataclass
class _Known:
    open: list[Issue] = field(default_factory=list)
    closed: list[Issue] = field(default_factory=list)


def _index(issues: Iterable[Issue], candidates: Sequence[Candidate]) -> tuple[dict[str, _Known], int]:
    """Issues per candidate test (by marker id, else by title) and how many of ours are open."""
    by_id = {quarantine_id(c.test): c.test for c in candidates}
    by_title = {issue_title(c.test): c.test for c in candidates}
    known: dict[str, _Known] = {}
    open_count = 0
    for issue in issues:
        ident = marker_id(issue.body)
        ours = ident is not None or issue.title.startswith(TITLE_PREFIX)
        if ours and issue.state == "open":
            open_count += 1
        test = by_id.get(ident) if ident else by_title.get(issue.title)
        if test is None:
            continue
        entry = known.setdefault(test, _Known())
        (entry.open if issue.state == "open" else entry.closed).append(issue)
    for entry in known.values():
        entry.open.sort(key=lambda i: i.number)
        entry.closed.sort(key=lambda i: (parse_closed_at(i) or datetime.min.replace(tzinfo=UTC), i.number))
    return known, open_count


def parse_closed_at(issue: Issue) -> datetime | None:
    try:
        return parse_time(issue.closed_at)
    except ValueError:
        return None


def plan_quarantine(
    candidates: Iterable[Candidate],
    issues: Iterable[Issue],
    config: QuarantineConfig,
    now: datetime,
    scoring: ScoringConfig | None = None,
) -> list[Action]:
    """The actions that bring the quarantine issues in line with the candidates' scores.

    ``candidates`` should include every test with an open quarantine issue (or it cannot be closed);
    ``issues`` are all issues carrying ``config.label``, open and closed (``Forge.find_issues``).
    """
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    ordered = sorted(candidates, key=lambda c: (-c.score.score, c.test))
    known, open_count = _index(issues, ordered)
    actions: list[Action] = []

    # 1. issues already open: close when stable, close duplicates, update on new failures
    for candidate in ordered:
        entry = known.get(candidate.test)
        if not entry or not entry.open:
            continue
        keep, *duplicates = entry.open
        for extra in duplicates:
            duplicate = f"duplicate of #{keep.number}"
            actions.append(
                Action(
                    "close",
                    candidate.test,
                    duplicate,
                    number=extra.number,
                    comment=duplicate.capitalize() + ".",
                )
            )
            open_count -= 1
        streak = candidate.score.runs_since_failure
        if streak >= config.stable_runs_to_close and candidate.override != "quarantine":
            actions.append(
                Action(
                    "close",
                    candidate.test,
                    f"passed {streak} runs in a row",
                    number=keep.number,
                    comment=(
                        f"The test has passed {streak} runs in a row (at least "
                        f"{config.stable_runs_to_close}): closing. flakebot reopens this issue if the test "
                        "turns flaky again."
                    ),
                )
            )
            open_count -= 1
            continue
        new = [
            f for f in candidate.failures[: config.max_failures_listed] if f.url and f.url not in keep.body
        ]
        if new:
            body = render_body(candidate, config, scoring)
            actions.append(
                Action("update", candidate.test, f"{len(new)} new failure(s)", number=keep.number, body=body)
            )
        else:
            actions.append(Action("skip", candidate.test, "no new failures", number=keep.number))

    # 2. tests to quarantine that have no open issue, most flaky first
    for candidate in ordered:
        if candidate.score.recommendation.action != "quarantine":
            continue
        if candidate.override == "unquarantine":
            who = candidate.override_by or "a maintainer"
            actions.append(Action("skip", candidate.test, f"unquarantined by {who}: not opened or reopened"))
            continue
        entry = known.get(candidate.test, _Known())
        if entry.open:
            continue
        streak = candidate.score.runs_since_failure
        if streak >= config.stable_runs_to_close:
            # it would be closed again at once: a test opens (or reopens) only by failing again
            actions.append(Action("skip", candidate.test, f"stable: passed {streak} runs in a row"))
            continue
        last_closed = entry.closed[-1] if entry.closed else None
        if last_closed is not None and last_closed.closed_by not in config.bot_logins:
            closed_at = parse_closed_at(last_closed)
            who = f"@{last_closed.closed_by}" if last_closed.closed_by else "a human"
            if closed_at is None:
                actions.append(
                    Action(
                        "skip",
                        candidate.test,
                        f"closed by {who} at an unknown time",
                        number=last_closed.number,
                    )
                )
                continue
            until = closed_at + timedelta(days=config.cooldown_days)
            if now < until:
                reason = f"closed by {who} on {closed_at:%Y-%m-%d}; cool-down until {until:%Y-%m-%d}"
                actions.append(Action("skip", candidate.test, reason, number=last_closed.number))
                continue
        if open_count >= config.max_open:
            actions.append(
                Action("skip", candidate.test, f"cap reached: {open_count} quarantine issues open")
            )
            continue
        body = render_body(candidate, config, scoring)
        reason = candidate.score.recommendation.reason
        if last_closed is not None:
            actions.append(
                Action(
                    "open",
                    candidate.test,
                    f"flaky again: {reason}",
                    number=last_closed.number,
                    body=body,
                    comment="The test is flaky again: reopening.",
                )
            )
        else:
            actions.append(
                Action(
                    "open",
                    candidate.test,
                    reason,
                    title=issue_title(candidate.test),
                    body=body,
                    labels=(config.label,),
                )
            )
        open_count += 1
    return actions


def plan_override(
    candidate: Candidate,
    issues: Iterable[Issue],
    config: QuarantineConfig,
    scoring: ScoringConfig | None = None,
) -> list[Action]:
    """What a maintainer's ``/flake quarantine|unquarantine`` does at once (``candidate.override``).

    Quarantine: update the open issue (saying who quarantined it), else reopen the newest closed one,
    else open one; neither the cap nor a cool-down applies to a maintainer. Unquarantine: close every
    open issue of the test.
    """
    entry = _index(issues, [candidate])[0].get(candidate.test, _Known())
    who = candidate.override_by or "a maintainer"
    if candidate.override == "unquarantine":
        comment = (
            f"Unquarantined by {who}. flakebot will not quarantine this test again by itself; "
            f"`/flake quarantine {candidate.test}` does."
        )
        return [
            Action("close", candidate.test, f"unquarantined by {who}", number=issue.number, comment=comment)
            for issue in entry.open
        ] or [Action("skip", candidate.test, "no open quarantine issue")]
    if candidate.override != "quarantine":
        raise ValueError(f"not an override: {candidate.override!r}")
    body = render_body(candidate, config, scoring)
    comment = (
        f"Quarantined by {who}. flakebot will not close this issue by itself; "
        f"`/flake unquarantine {candidate.test}` ends the quarantine."
    )
    reason = f"quarantined by {who}"
    if entry.open:
        return [
            Action("update", candidate.test, reason, number=entry.open[0].number, body=body, comment=comment)
        ]
    if entry.closed:
        return [
            Action("open", candidate.test, reason, number=entry.closed[-1].number, body=body, comment=comment)
        ]
    title = issue_title(candidate.test)
    return [Action("open", candidate.test, reason, title=title, body=body, labels=(config.label,))]
