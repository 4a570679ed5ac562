"""The history views' data: the store's scored tests as rows, filtered, with a sparkline. Pure.

``flakebot scores`` prints these rows as a text table or JSON lines; ``GET /`` renders them as HTML
(``bot/dashboard.py``). Both read :meth:`bot.store.Store.scores` (most flaky first) and
:meth:`bot.store.Store.quarantined`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.quarantine_list import QuarantinedTest
from bot.render import truncate_middle

RECOMMENDATIONS = ("quarantine", "investigate", "monitor", "stable")
SPARK = {"passed": "▁", "failed": "█", "error": "█", "skipped": "·"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class UnknownRepo(ValueError):
    """A repository the store has no history for; the message lists the known ones."""


def resolve_repo(given: str, known: Sequence[str]) -> str:
    """``forge:owner/name`` as the store knows it. ``owner/name`` alone is accepted when exactly one
    forge has it. UnknownRepo says which repositories there are."""
    given = given.strip()
    if given in known:
        return given
    shown = printable(given, 200)  # echoed back: bounded, no control characters
    if ":" not in given:
        matches = [repo for repo in known if repo.split(":", 1)[-1] == given]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UnknownRepo(f"{shown} is on several forges: say which, one of {', '.join(matches)}")
    listed = ", ".join(known) if known else "none yet"
    raise UnknownRepo(f"no test history for {shown}; known repositories: {listed}")


@dataclass(frozen=True)
class Row:
    """One test in one job: its score and recent runs, as the views show it."""

    repo: str
    test: str
    job: str
    score: float | None
    confidence: float | None
    action: str | None  # the recommendation, None when not scored yet
    reason: str
    runs: int
    failures: int
    recent: tuple[str, ...]  # statuses of the newest runs, oldest first
    issue: int | None
    issue_url: str | None
    issue_state: str | None  # open | closed | None (no quarantine issue)
    updated_at: str | None
    quarantine_jobs: tuple[str, ...] | None = None  # the jobs its quarantine covers (None: every job)

    @property
    def quarantined(self) -> bool:
        """Quarantined in this row's job (its issue is open and covers the job)."""
        open_ = self.issue_state not in (None, "closed")
        return open_ and (self.quarantine_jobs is None or self.job in self.quarantine_jobs)

    @property
    def issue_note(self) -> str:
        """What the issue column adds to the issue's number: nothing when quarantined in this job."""
        if self.issue is None or self.quarantined:
            return ""
        return "(closed)" if self.issue_state == "closed" else "(other jobs)"

    @property
    def recent_failures(self) -> int:
        return sum(1 for status in self.recent if status in ("failed", "error"))

    def summary(self) -> str:
        """The sparkline in words, e.g. "3 of the last 20 runs failed"."""
        counted = [s for s in self.recent if s != "skipped"]
        if not counted:
            return "no runs recorded"
        return f"{self.recent_failures} of the last {len(counted)} runs failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "test": self.test,
            "job": self.job,
            "score": self.score,
            "confidence": self.confidence,
            "recommendation": self.action,
            "reason": self.reason,
            "failures": self.failures,
            "runs": self.runs,
            "recent": list(self.recent),
            "issue": self.issue,
            "issue_url": self.issue_url,
            "issue_state": self.issue_state,
            "quarantined": self.quarantined,
            "updated_at": self.updated_at,
        }


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are shown (an issue URL comes from a forge, but a link is a link)."""
    if url and re.match(r"https?://[^\s<>\"']+$", url):
        return url
    return None


def row_of(item: Mapping[str, Any]) -> Row:
    """A row from one entry of ``Store.scores()``."""
    score = item.get("score") or {}
    recommendation = score.get("recommendation") or {}
    return Row(
        repo=item["repo"],
        test=item["test"],
        job=item.get("job") or "",
        score=score.get("score"),
        confidence=score.get("confidence"),
        action=recommendation.get("action"),
        reason=recommendation.get("reason") or "",
        runs=int(score.get("runs") or 0),
        failures=int(score.get("failures") or 0),
        recent=tuple(item.get("recent") or ()),
        issue=item.get("issue"),
        issue_url=safe_url(item.get("issue_url")),
        issue_state=item.get("quarantine"),
        updated_at=item.get("updated_at"),
        quarantine_jobs=tuple(jobs) if (jobs := item.get("quarantine_jobs")) is not None else None,
    )


def select(
    items: Iterable[Mapping[str, Any]], *, recommendation: str | None = None, limit: int | None = None
) -> list[Row]:
    """The rows of ``Store.scores()`` (already most flaky first), filtered and cut to ``limit``."""
    if recommendation is not None and recommendation not in RECOMMENDATIONS:
        raise ValueError(
            f"recommendation must be one of {', '.join(RECOMMENDATIONS)}, not {recommendation!r}"
        )
    rows = []
    for item in items:
        row = row_of(item)
        if recommendation is not None and row.action != recommendation:
            continue
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def sparkline(recent: Iterable[str]) -> str:
    """``▁▁█▁·▁``: a pass low, a failure high, a skip a dot; oldest first."""
    return "".join(SPARK.get(status, "?") for status in recent)


# the page's sparkline: bars 4 px wide, 1 px apart, 16 px high; (y, height) of each outcome's bar
BAR, STEP, HEIGHT = 4, 5, 16
_BARS = {"p": (11, 5), "f": (0, 16), "s": (12, 4)}


def spark_paths(recent: Sequence[str]) -> dict[str, str]:
    """SVG path data of a sparkline, one path per outcome (``p`` passed, ``f`` failed, ``s`` skipped),
    oldest run on the left: a few bytes a run, whatever the number of rows on the page."""
    parts: dict[str, list[str]] = {"p": [], "f": [], "s": []}
    for index, status in enumerate(recent):
        kind = "f" if status in ("failed", "error") else "s" if status == "skipped" else "p"
        y, height = _BARS[kind]
        parts[kind].append(f"M{index * STEP} {y}h{BAR}v{height}h-{BAR}z")
    return {kind: "".join(moves) for kind, moves in parts.items() if moves}


def printable(text: str, width: int | None = None) -> str:
    """A name made safe for a terminal (no control characters or escape sequences), cut in the
    middle to ``width``."""
    text = _CONTROL.sub("\ufffd", text)
    return truncate_middle(text, width, "…") if width else text


def text_table(rows: Sequence[Row], *, test_width: int = 70) -> str:
    """The rows as an aligned plain-text table (with a repository column when they span several)."""
    with_repo = len({row.repo for row in rows}) > 1
    header = ("test", "job", "score", "conf", "recommendation", "fails/runs", "recent runs", "issue")
    lines = [header]
    for row in rows:
        issue = ""
        if row.issue is not None:
            issue = f"#{row.issue}" + (f" {row.issue_note}" if row.issue_note else "")
        lines.append(
            (
                printable(row.test, test_width),
                printable(row.job, 30),
                "-" if row.score is None else f"{row.score:.2f}",
                "-" if row.confidence is None else f"{row.confidence:.2f}",
                row.action or "-",
                f"{row.failures}/{row.runs}",
                sparkline(row.recent),
                issue,
            )
        )
    if with_repo:
        lines = [
            ("repository" if i == 0 else printable(rows[i - 1].repo), *line) for i, line in enumerate(lines)
        ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    numeric = {3, 4, 6} if with_repo else {2, 3, 5}
    out = []
    for line in lines:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def quarantine_entries(rows: Iterable[Mapping[str, Any]], now: str | None = None) -> list[QuarantinedTest]:
    """``Store.quarantined()`` rows as quarantine-list entries (``repo`` is the forge's full name), with
    their scope; those expired by ``now`` (ISO-8601, UTC) are left out: an expired quarantine ends at
    once, though its issue is closed only at the next run flakebot handles in that repository."""
    entries = []
    for row in rows:
        expires = row.get("expires_at")
        if now is not None and expires and _utc(expires) <= _utc(now):
            continue
        jobs = row.get("jobs")
        entries.append(
            QuarantinedTest(
                test=row["test"],
                repo=str(row["repo"]).split(":", 1)[-1],
                issue_url=safe_url(row.get("url")),
                since=row.get("since"),
                scope={"jobs": list(jobs)} if jobs and all(jobs) else None,
                expires_at=expires,
            )
        )
    return entries


def _utc(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
