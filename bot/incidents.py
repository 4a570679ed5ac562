"""Infrastructure incidents: many changes failing the same way at once. Pure; ``bot/run/incidents.py`` acts.

When a package registry, a runner pool or a service the tests use goes down, every pull/merge request
that runs CI fails the same way within minutes. Called one by one, each is "a flake" (and re-run, and
fails again) and each counts against some test's score. Seen together they are one **incident**.

**The signature** (:func:`signature`): what makes two failures "the same" across changes is their
*cause*, as the log says it: of the failing part (``bot.normalize.failing_part``, what the flake model
reads too), the lines that say what failed (``is_error_line``), without the lines that say where (stack
frames, ``file:line``: each test has its own) nor the runners' boilerplate that every failure ends
with (``Process completed with exit code 1``, pytest's summary line), normalised
(``normalize_line``: numbers, hashes, ids, paths, addresses, timestamps) with the test's own name
masked; the last :data:`CAUSE_LINES` of them, distinct. An infrastructure cause (``infra_signs``: the
network, the registry, the disk, memory, the runner; or GitLab's infrastructure ``failure_reason``) is
the same whatever test or job it hits, so its signature is the cause alone: one incident however many
tests fail. Any other cause (an assertion, a ``KeyError``) is "the same" across changes only for the
same test: its signature includes the test's name, so a common message (``assert 0 == 1``) in
unrelated tests of unrelated changes never makes an incident. The model's clusters are not used: they
change with every retrain, and an incident must keep its signature while it lasts.

**The rule** (:func:`plan`): a signature seen in at least ``min_changes`` different changes (pull/merge
requests; a run without one counts by its commit) within ``window_minutes`` opens an incident — if
that is a **burst**: at least :data:`BURST_FACTOR` times as many changes as the signature's usual
rate over the week before would give (a failure that is always around, at the same rate, is no
incident however busy the repository), and, for a cause specific to one test, if that test is not
known to be flaky (its failures are its own, quarantine's business). While it is open every new
occurrence joins it; it closes once none arrived for ``quiet_minutes``. One issue per signature, found
again by a hidden marker; a later incident of the same signature reopens it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from bot.normalize import (
    failing_part,
    infra_signs,
    is_error_line,
    is_location_line,
    is_status_line,
    mask_test_name,
    normalize_line,
    summary_message,
)
from bot.render import render, truncate_middle

CAUSE_LINES = 3  # the last distinct cause lines a signature is made of
MIN_SPECIFIC_CHARS = 12  # letters and digits a cause needs to be told apart from any other failure
MARKER_RE = re.compile(r"<!-- flakebot:incident sig=([0-9a-f]{16})\b")
TITLE_PREFIX = "Infrastructure incident: "
TITLE_MAX = 120
BODY_MAX = 65_536
OCCURRENCES_LISTED = 30
BASELINE_DAYS = 7  # the signature's usual rate is measured over this long before the window
BURST_FACTOR = 3  # an incident has at least this many times the changes its usual rate gives

_PYTEST_E = re.compile(r"^E\s+")  # pytest's marker of its explanation lines
# what every failing job or test run prints, whatever failed
_BOILERPLATE = re.compile(
    r"^(?:##\[error\])?(?:Error: )?Process completed with exit code \d+\.?$"
    r"|^ERROR: Job failed: (?:command terminated with )?exit (?:code|status) \d+$"
    r"|^=+ .*\b(?:failed|passed|errors?)\b.* in [\d.]+s.*=+$"
    r"|^(?:make|ninja|gmake)(?:\[\d+\])?: \*\*\* .*Error \d+$"
    r"|^(?:npm ERR!|error) A complete log of this run can be found in"
    r"|^error: Recipe `.*` failed|^Error: Command failed with exit code \d+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class IncidentConfig:
    """The repository's ``incidents:`` settings."""

    enabled: bool = True
    min_changes: int = 5  # different pull/merge requests (or commits) failing the same way ...
    window_minutes: float = 30  # ... within this long open an incident
    quiet_minutes: float = 60  # no new occurrence for this long closes it
    label: str = "infra-incident"

    def __post_init__(self) -> None:
        if (
            isinstance(self.min_changes, bool)
            or not isinstance(self.min_changes, int)
            or self.min_changes < 2
        ):
            raise ValueError(f"min_changes must be a whole number >= 2, got {self.min_changes!r}")
        for name in ("window_minutes", "quiet_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be true or false, got {self.enabled!r}")
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError("label must not be empty")


SAMPLE_LINES = 12  # of the failing part, shown in the incident's issue as one example


@dataclass(frozen=True)
class Signature:
    key: str  # 16 hex digits
    cause: tuple[str, ...]  # the normalised lines it is made of
    test: str | None = None  # the test it is specific to (None: an infrastructure cause, any test)
    sample: str = field(default="", compare=False)  # the end of one failing part, as the log has it

    @property
    def infrastructure(self) -> bool:
        return self.test is None


def cause_lines(log: str, test: str) -> list[str]:
    """The normalised lines of a failure's log that say what failed (see the module's doc)."""
    out: list[str] = []
    for raw in failing_part(mask_test_name(log, test)):
        line = normalize_line(_PYTEST_E.sub("", summary_message(raw.strip())))
        if not line or _BOILERPLATE.search(line) or is_status_line(line) or is_location_line(line):
            continue
        if is_error_line(line):
            out.append(line)
    distinct = list(dict.fromkeys(reversed(out)))[:CAUSE_LINES]  # the last ones, each once
    return distinct[::-1]


def signature(log: str, test: str, infra_reason: str | None = None) -> Signature | None:
    """The failure's signature; None when its log says nothing specific enough to match on."""
    cause = cause_lines(log, test)
    if infra_reason:
        cause = [f"job failure reason: {infra_reason}", *cause]
    if sum(ch.isalnum() for ch in "".join(cause)) < MIN_SPECIFIC_CHARS:
        return None
    infrastructure = bool(infra_reason) or bool(infra_signs(cause))
    specific_to = None if infrastructure else test
    text = "\n".join(cause) if specific_to is None else f"test: {specific_to}\n" + "\n".join(cause)
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return Signature(key, tuple(cause), specific_to, "\n".join(failing_part(log)[-SAMPLE_LINES:]))


# --- the rule ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occurrence:
    """One failure of one run with a signature, in one change."""

    signature: str
    change: str  # what is counted: "!12" / "#12" (a change), else "commit <sha>"
    run_id: int
    attempt: int
    job: str
    test: str
    at: datetime
    url: str | None = None  # the job's page
    change_url: str | None = None


@dataclass(frozen=True)
class Incident:
    """An incident as the store keeps it (one per signature and repository)."""

    signature: str
    state: Literal["open", "closed"]
    cause: tuple[str, ...] = ()
    test: str | None = None  # the test the signature is specific to
    number: int | None = None  # its issue
    url: str | None = None
    opened_at: datetime | None = None
    last_seen: datetime | None = None
    closed_at: datetime | None = None
    changes: int = 0  # different changes in it so far
    occurrences: int = 0
    repo: str = ""
    sample: str = ""  # the end of one of its failures' logs


IncidentActionKind = Literal["open", "update", "close"]


@dataclass(frozen=True)
class IncidentAction:
    kind: IncidentActionKind
    signature: str
    reason: str
    incident: Incident  # as it is after the action
    occurrences: tuple[Occurrence, ...] = ()  # open/update: those of the incident so far, newest first
    comment: str | None = None


@dataclass
class Plan:
    actions: list[IncidentAction] = field(default_factory=list)
    open: dict[str, Incident] = field(default_factory=dict)  # signature → the incident it is part of now


def changes_of(occurrences: Iterable[Occurrence]) -> set[str]:
    return {o.change for o in occurrences}


def usual_changes(occurrences: Iterable[Occurrence], window: timedelta, now: datetime) -> float:
    """How many changes a window holds at the signature's usual rate: its different changes over the
    ``BASELINE_DAYS`` before the window, spread evenly."""
    start, end = now - timedelta(days=BASELINE_DAYS), now - window
    before = changes_of(o for o in occurrences if start <= o.at < end)
    return len(before) * window / (end - start)


def plan(
    signatures: Mapping[str, Signature],
    occurrences: Mapping[str, Sequence[Occurrence]],
    incidents: Mapping[str, Incident],
    config: IncidentConfig,
    now: datetime,
    flaky_tests: Collection[str] = (),
) -> Plan:
    """What to do about the run's ``signatures`` and every open incident.

    ``occurrences``: by signature, those of the ``BASELINE_DAYS`` before (and since an open incident
    opened), this run's included; ``incidents``: the stored incidents by signature; ``flaky_tests``:
    tests known to be flaky, whose own failures open no incident.
    """
    out = Plan()
    window = timedelta(minutes=config.window_minutes)
    quiet = timedelta(minutes=config.quiet_minutes)
    for key, sig in sorted(signatures.items()):
        seen = sorted(occurrences.get(key, ()), key=lambda o: o.at, reverse=True)
        stored = incidents.get(key)
        last = seen[0].at if seen else now
        if stored is not None and stored.state == "open":
            since = stored.opened_at or now
            mine = [o for o in seen if o.at >= since]
            incident = Incident(key, "open", sig.cause, sig.test, stored.number, stored.url, stored.opened_at,
                                last, None, len(changes_of(mine)), len(mine), stored.repo,
                                stored.sample or sig.sample)  # fmt: skip
            out.actions.append(
                IncidentAction("update", key, f"{len(mine)} occurrence(s)", incident, tuple(mine))
            )
            out.open[key] = incident
            continue
        recent = [o for o in seen if o.at >= now - window]
        changes = changes_of(recent)
        if len(changes) < config.min_changes or (sig.test is not None and sig.test in flaky_tests):
            continue
        if len(changes) < BURST_FACTOR * usual_changes(seen, window, now):
            continue  # as often as always: not a burst
        opened = min(o.at for o in recent)
        incident = Incident(key, "open", sig.cause, sig.test, stored.number if stored else None,
                            stored.url if stored else None, opened, last, None, len(changes), len(recent),
                            stored.repo if stored else "", sig.sample)  # fmt: skip
        reason = f"{len(changes)} changes failed this way within {config.window_minutes:g} minutes"
        comment = "It is happening again: reopening." if stored is not None and stored.number else None
        out.actions.append(IncidentAction("open", key, reason, incident, tuple(recent), comment))
        out.open[key] = incident
    for key, stored in sorted(incidents.items()):
        if key in out.open or stored.state != "open":
            continue
        last = stored.last_seen or stored.opened_at
        if last is not None and now - last >= quiet:
            closed = replace(stored, state="closed", closed_at=now)
            comment = (
                f"No new failure with this signature for {config.quiet_minutes:g} minutes (the last at "
                f"{last:%Y-%m-%d %H:%M} UTC): the incident is over, closing. flakebot retries these failures "
                "again, and reopens this issue if it happens again."
            )
            out.actions.append(IncidentAction("close", key, f"quiet since {last:%H:%M}", closed, (), comment))
    return out


# --- the issue --------------------------------------------------------------------------------------


def marker(key: str) -> str:
    return f"<!-- flakebot:incident sig={key} -->"


def marker_key(body: str | None) -> str | None:
    match = MARKER_RE.search(body or "")
    return match.group(1) if match else None


def issue_title(incident: Incident) -> str:
    """``Infrastructure incident: <its last cause line>``, cut to 120 characters (deterministic)."""
    line = re.sub(r"\s+", " ", incident.cause[-1] if incident.cause else incident.signature).strip()
    return truncate_middle(TITLE_PREFIX + line, TITLE_MAX, "…")


def render_body(incident: Incident, occurrences: Sequence[Occurrence], config: IncidentConfig) -> str:
    """The incident issue's body (templates/incident_issue.md.j2), under GitHub's 65,536 characters."""
    shown = list(occurrences)[:OCCURRENCES_LISTED]
    body = render(
        "incident_issue.md.j2",
        marker=marker(incident.signature),
        incident=incident,
        occurrences=shown,
        more=max(0, len(occurrences) - len(shown)),
        config=config,
        window=f"{config.window_minutes:g}",
        quiet=f"{config.quiet_minutes:g}",
    )
    return truncate_middle(body, BODY_MAX)


def verdict_line(incident: Incident) -> str:
    """What the comment says of a failure that is part of an incident (one line)."""
    since = f" since {incident.opened_at:%H:%M} UTC" if incident.opened_at else ""
    number = f" #{incident.number}" if incident.number else ""
    return (
        f"infrastructure incident{number}: {incident.changes} changes failed the same way{since}; "
        "not caused by the change, retries paused while it lasts"
    )
