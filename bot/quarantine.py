"""Quarantine issues: which to open, update, close or leave alone, and in which jobs. Pure; the forge
adapters act.

One issue per test, found again by a hidden marker in its body (``<!-- flakebot:quarantine id=...
test=... -->``, the id a hash of the full test name) or, failing that, by its deterministic title. The
issue lists the **scope**: the jobs (the history's jobs: ``tests (windows)``, a matrix variant) the test
is quarantined in (:func:`scope_of`). A job enters the scope when the test's score *in that job*
recommends quarantine, and leaves it once the test has passed ``stable_runs_to_close`` runs in a row
there; a test flaky only on Windows is quarantined on Windows only. A maintainer's quarantine covers
every job (scope ``None``).

The rules, in order (docs/history.md, "The quarantine lifecycle"):

* an open issue whose quarantine **expired** (no failure in a job of its scope, and no maintainer's
  renewal, for ``expire_days``: :func:`expiry`) is closed, a maintainer's quarantine too;
* an open issue whose scope is empty (stable in every job it was quarantined in) is closed;
* an open issue is updated when a failure it does not list yet arrives, its scope changes or its
  expiry moves; extra open issues for the same test are closed as duplicates;
* a test with a job to quarantine and no open issue gets one, most flaky first, unless its newest
  failure there is older than ``expire_days`` (it would expire at once), a human closed its issue less
  than ``cooldown_days`` ago or ``max_open`` issues are open already. A closed issue is reopened (an
  ``open`` action with its ``number``) rather than filed again. An issue opened or reopened is assigned
  to the code owners of the test's file (``Candidate.owners``, ``bot.codeowners``).

A maintainer's override (``/flake quarantine|unquarantine <test>``, :func:`plan_override`) holds against
the lifecycle until the opposite command or until it expires (``expire_days`` after it was given, or,
for a quarantine, after the test's last failure, whichever is later): the lifecycle never closes the
issue of a test quarantined by hand for stability, nor opens one for a test unquarantined by hand.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

from bot.codeowners import Owners
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
    # a quarantine, automatic or by hand, ends this long after its last evidence (a failure in a job
    # of its scope, a maintainer's /flake quarantine) unless renewed; 0: never
    expire_days: float = 30
    assign_owners: bool = True  # assign a new issue to the code owners of the test's file

    def __post_init__(self) -> None:
        for name in ("max_open", "stable_runs_to_close", "max_failures_listed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
        for name in ("cooldown_days", "expire_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not isinstance(self.assign_owners, bool):
            raise ValueError(f"assign_owners must be true or false, got {self.assign_owners!r}")
        if not self.label.strip():
            raise ValueError("label must not be empty")


@dataclass(frozen=True)
class FailureLink:
    """One recent failure of a test, for the issue body."""

    url: str | None = None  # the job or run that failed
    created_at: str | None = None
    revision: str | None = None
    message: str | None = None
    job: str | None = None  # None: counts for every job


Scope = tuple[str, ...] | None  # the jobs a test is quarantined in; None: every job


@dataclass(frozen=True)
class Candidate:
    """A test with its score and its recent failures (newest first), a maintainer's override, and what
    the store remembers of its quarantine."""

    test: str
    score: FlakeScore  # in its flakiest job
    failures: Sequence[FailureLink] = ()
    override: Override | None = None
    override_by: str | None = None
    jobs: Mapping[str, FlakeScore] = field(
        default_factory=dict
    )  # its score in each job ({} : ``score``, one job)
    scope: Scope = None  # the jobs of its open quarantine, as stored (None: every job, or not recorded)
    renewed_at: str | None = None  # ISO-8601: when its quarantine began, or a maintainer last (re)gave it
    expires_at: str | None = None  # ISO-8601: the expiry stored with its open quarantine
    owners: Owners | None = None  # the code owners of its file (read only for issues about to open)

    def by_job(self) -> dict[str, FlakeScore]:
        return dict(self.jobs) or {"": self.score}

    def shown_score(self, scope: Scope) -> FlakeScore:
        """The score the issue shows: its flakiest job's among those of the scope."""
        scores = self.by_job()
        inside = [scores[job] for job in scope or () if job in scores]
        return max(inside, key=lambda s: s.score) if inside else self.score


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
    scope: Scope = None  # open/update: the jobs it is quarantined in now (None: every job)
    expires_at: datetime | None = None  # open/update: when the quarantine ends unless renewed
    assignees: tuple[str, ...] = ()  # open: the code owners to assign
    expired: bool = False  # close: the quarantine expired (a maintainer's override with it)


def scope_of(candidate: Candidate, config: QuarantineConfig, *, quarantined: bool) -> Scope:
    """The jobs the test is to be quarantined in (``quarantined``: it has an open issue now).

    A job is in when the test has failed there within its last ``stable_runs_to_close`` runs and either
    its score there recommends quarantine or it was in the scope already (a job leaves only by being
    stable, so a score wavering around the threshold does not flap the scope). An issue opened before
    scopes (``candidate.scope`` None) counts every job as in it. A maintainer's quarantine: every job.
    """
    if candidate.override == "quarantine":
        return None
    previous = candidate.scope
    jobs = []
    for job, score in sorted(candidate.by_job().items()):
        if score.runs_since_failure >= config.stable_runs_to_close:
            continue
        kept = quarantined and (previous is None or job in previous)
        if score.recommendation.action == "quarantine" or kept:
            jobs.append(job)
    return tuple(jobs)


def _in_scope(failure: FailureLink, scope: Scope) -> bool:
    return scope is None or failure.job is None or failure.job in scope


def _time(value: str | None) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def last_evidence(candidate: Candidate, scope: Scope, *, renewals: bool = True) -> datetime | None:
    """The newest failure in a job of the scope, or (``renewals``) the quarantine's start or a
    maintainer's renewal, whichever is later."""
    times = [_time(f.created_at) for f in candidate.failures if _in_scope(f, scope)]
    if renewals:
        times.append(_time(candidate.renewed_at))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def expiry(candidate: Candidate, scope: Scope, config: QuarantineConfig) -> datetime | None:
    """When the quarantine ends unless renewed: ``expire_days`` after its last evidence (None: never,
    or nothing to date it by)."""
    if not config.expire_days:
        return None
    evidence = last_evidence(candidate, scope)
    return evidence + timedelta(days=config.expire_days) if evidence else None


def override_expired(at: str | None, config: QuarantineConfig, now: datetime) -> bool:
    """Whether a maintainer's unquarantine given at ``at`` has expired (``expire_days`` after it)."""
    given = _time(at)
    return (
        bool(config.expire_days) and given is not None and now >= given + timedelta(days=config.expire_days)
    )


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


def render_body(
    candidate: Candidate,
    config: QuarantineConfig,
    scoring: ScoringConfig | None = None,
    *,
    scope: Scope = None,
    expires_at: datetime | None = None,
) -> str:
    """The issue body (templates/quarantine_issue.md.j2) for the test quarantined in ``scope`` (None:
    every job) until ``expires_at``, never longer than GitHub's 65,536 characters."""
    weights = (scoring or ScoringConfig()).weights
    score = candidate.shown_score(scope)
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
    jobs = [
        {"job": job, "score": s, "quarantined": scope is None or job in scope}
        for job, s in sorted(candidate.by_job().items(), key=lambda kv: (-kv[1].score, kv[0]))
        if job
    ]
    owners = candidate.owners
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
        expire_days=f"{config.expire_days:g}",
        scope=None if scope is None or "" in scope else list(scope),
        jobs=jobs,
        expires_at=expires_at,
        owners=owners if owners else None,
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


def _streak(candidate: Candidate, jobs: Iterable[str] | None) -> int:
    """The fewest runs in a row without a failure among ``jobs`` (all of the test's when None)."""
    scores = candidate.by_job()
    chosen = [scores[j] for j in jobs if j in scores] if jobs is not None else list(scores.values())
    return min((s.runs_since_failure for s in chosen), default=candidate.score.runs_since_failure)


def _day(value: datetime | str | None) -> str | None:
    moment = _time(value) if isinstance(value, str) else value
    return f"{moment:%Y-%m-%d}" if moment else None


def _assignees(candidate: Candidate, config: QuarantineConfig) -> tuple[str, ...]:
    return candidate.owners.users if config.assign_owners and candidate.owners else ()


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

    # 1. issues already open: close when expired or stable everywhere, close duplicates, update on news
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
        scope = scope_of(candidate, config, quarantined=True)
        expires = expiry(candidate, scope if scope else candidate.scope, config)
        if expires is not None and now >= expires:
            evidence = last_evidence(candidate, scope if scope else candidate.scope)
            who = (
                f" by {candidate.override_by or 'a maintainer'}" if candidate.override == "quarantine" else ""
            )
            actions.append(
                Action(
                    "close",
                    candidate.test,
                    f"expired: nothing renewed it since {_day(evidence)}",
                    number=keep.number,
                    expired=True,
                    comment=(
                        f"The quarantine{who} expired: no failure{' in a quarantined job' if scope else ''} and no "
                        f"renewal since {_day(evidence)} ({config.expire_days:g} days). Closing. flakebot "
                        "reopens this issue if the test turns flaky again; `/flake quarantine` and the test's "
                        "name quarantines it again at once."
                    ),
                )
            )
            open_count -= 1
            continue
        if scope == ():
            streak = _streak(candidate, candidate.scope)
            where = "" if len(candidate.by_job()) == 1 else " in every job it was quarantined in"
            actions.append(
                Action(
                    "close",
                    candidate.test,
                    f"passed {streak} runs in a row{where}",
                    number=keep.number,
                    comment=(
                        f"The test has passed {streak} runs in a row{where} (at least "
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
        changes = []
        if new:
            changes.append(f"{len(new)} new failure(s)")
        if scope != candidate.scope:
            changes.append("quarantined in " + (", ".join(scope) if scope else "every job"))
        if _day(expires) != _day(candidate.expires_at):
            changes.append(f"expires {_day(expires) or 'never'}")
        if changes:
            body = render_body(candidate, config, scoring, scope=scope, expires_at=expires)
            actions.append(Action("update", candidate.test, "; ".join(changes), number=keep.number, body=body,
                                  scope=scope, expires_at=expires))  # fmt: skip
        else:
            actions.append(Action("skip", candidate.test, "no new failures", number=keep.number, scope=scope,
                                  expires_at=expires))  # fmt: skip

    # 2. tests to quarantine that have no open issue, most flaky first
    for candidate in ordered:
        recommending = [j for j, s in candidate.by_job().items() if s.recommendation.action == "quarantine"]
        if not recommending:
            continue
        if candidate.override == "unquarantine":
            who = candidate.override_by or "a maintainer"
            actions.append(Action("skip", candidate.test, f"unquarantined by {who}: not opened or reopened"))
            continue
        entry = known.get(candidate.test, _Known())
        if entry.open:
            continue
        scope = scope_of(candidate, config, quarantined=False)
        if not scope:
            # it would be closed again at once: a test opens (or reopens) only by failing again
            streak = _streak(candidate, recommending)
            actions.append(Action("skip", candidate.test, f"stable: passed {streak} runs in a row"))
            continue
        latest = last_evidence(candidate, scope, renewals=False)
        if config.expire_days and latest is not None and now >= latest + timedelta(days=config.expire_days):
            reason = f"no failure since {_day(latest)}: a quarantine would expire at once"
            actions.append(Action("skip", candidate.test, reason))
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
        # a new quarantine dates from now: its expiry counts from its newest failure or from now
        started = replace(candidate, renewed_at=now.isoformat())
        expires = expiry(started, scope, config)
        body = render_body(candidate, config, scoring, scope=scope, expires_at=expires)
        reason = candidate.shown_score(scope).recommendation.reason
        common = {
            "body": body,
            "scope": scope,
            "expires_at": expires,
            "assignees": _assignees(candidate, config),
        }
        if last_closed is not None:
            actions.append(Action("open", candidate.test, f"flaky again: {reason}", number=last_closed.number,
                                  comment="The test is flaky again: reopening.", **common))  # fmt: skip
        else:
            actions.append(Action("open", candidate.test, reason, title=issue_title(candidate.test),
                                  labels=(config.label,), **common))  # fmt: skip
        open_count += 1
    return actions


def plan_override(
    candidate: Candidate,
    issues: Iterable[Issue],
    config: QuarantineConfig,
    scoring: ScoringConfig | None = None,
) -> list[Action]:
    """What a maintainer's ``/flake quarantine|unquarantine`` does at once (``candidate.override``).

    Quarantine (every job, dated ``candidate.renewed_at``: the command's time, which renews it):
    update the open issue (saying who quarantined it), else reopen the newest closed one, else open one;
    neither the cap nor a cool-down applies to a maintainer. Unquarantine: close every open issue of
    the test.
    """
    entry = _index(issues, [candidate])[0].get(candidate.test, _Known())
    who = candidate.override_by or "a maintainer"
    days = f"{config.expire_days:g} days"
    if candidate.override == "unquarantine":
        lasts = f" for {days} (`/flake unquarantine` again renews it)" if config.expire_days else ""
        comment = (
            f"Unquarantined by {who}. flakebot will not quarantine this test again by itself{lasts}; "
            f"`/flake quarantine {candidate.test}` does."
        )
        return [
            Action("close", candidate.test, f"unquarantined by {who}", number=issue.number, comment=comment)
            for issue in entry.open
        ] or [Action("skip", candidate.test, "no open quarantine issue")]
    if candidate.override != "quarantine":
        raise ValueError(f"not an override: {candidate.override!r}")
    expires = expiry(candidate, None, config)
    body = render_body(candidate, config, scoring, scope=None, expires_at=expires)
    until = (
        f" until {expires:%Y-%m-%d} ({days} after its last failure or this command, whichever is later; "
        "a new failure or the command again renews it)"
        if expires
        else ""
    )
    comment = (
        f"Quarantined by {who} in every job. flakebot will not close this issue because the test passes"
        f"{until}; `/flake unquarantine {candidate.test}` ends the quarantine."
    )
    reason = f"quarantined by {who}"
    common = {"body": body, "comment": comment, "scope": None, "expires_at": expires}
    if entry.open:
        return [Action("update", candidate.test, reason, number=entry.open[0].number, **common)]
    if entry.closed:
        return [Action("open", candidate.test, reason, number=entry.closed[-1].number,
                       assignees=_assignees(candidate, config), **common)]  # fmt: skip
    title = issue_title(candidate.test)
    return [Action("open", candidate.test, reason, title=title, labels=(config.label,),
                   assignees=_assignees(candidate, config), **{**common, "comment": None})]  # fmt: skip
