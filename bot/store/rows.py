"""Rows both backends write and read alike: a backfill's fields, occurrences and incidents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.incidents import Incident, Occurrence
from bot.scoring import parse_time

BACKFILL_FIELDS = frozenset({"status", "days", "since", "until", "requested_by", "started_at", "finished_at",
                             "result"})  # fmt: skip
OCCURRENCES_KEPT_DAYS = (
    7  # failures' signatures older than this are forgotten (unless their incident is open)
)
INCIDENT_COLUMNS = ("repo, signature, state, cause, test, number, url, opened_at, last_seen, closed_at, changes, "
                    "occurrences, sample")  # fmt: skip


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def moment(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def backfill_values(fields: dict[str, Any]) -> dict[str, Any]:
    """The columns a backfill's ``fields`` set (``result`` as JSON text), with ``updated_at``; ValueError
    for a field that is not one (the names go into the statement)."""
    if unknown := set(fields) - BACKFILL_FIELDS:
        raise ValueError(f"not a field of a backfill: {', '.join(sorted(unknown))}")
    values = {**fields, "updated_at": iso(datetime.now(UTC))}
    if "result" in values:
        values["result"] = json.dumps(values["result"]) if values["result"] is not None else None
    return values


def kept_since() -> str:
    """The oldest occurrence kept (those of an open incident are kept however old)."""
    return iso(datetime.now(UTC) - timedelta(days=OCCURRENCES_KEPT_DAYS)) or ""


def occurrence_row(o: Occurrence) -> list[Any]:
    """signature, change, run_id, attempt, job, test, at, url, change_url."""
    return [o.signature, o.change, o.run_id, o.attempt, o.job, o.test, iso(o.at), o.url, o.change_url]


def occurrence(row: dict[str, Any]) -> Occurrence:
    return Occurrence(**{**row, "at": moment(row["at"])})


def incident_row(repo: str, i: Incident) -> dict[str, Any]:
    return {"repo": repo, "signature": i.signature, "state": i.state, "cause": json.dumps(list(i.cause)),
            "test": i.test, "number": i.number, "url": i.url, "opened_at": iso(i.opened_at),
            "last_seen": iso(i.last_seen), "closed_at": iso(i.closed_at), "changes": i.changes,
            "occurrences": i.occurrences, "sample": i.sample, "updated_at": iso(datetime.now(UTC))}  # fmt: skip


def incident(row: dict[str, Any]) -> Incident:
    return Incident(**{**row, "cause": tuple(json.loads(row["cause"] or "[]")), "sample": row["sample"] or "",
                       "opened_at": moment(row["opened_at"]), "last_seen": moment(row["last_seen"]),
                       "closed_at": moment(row["closed_at"]), "changes": row["changes"] or 0,
                       "occurrences": row["occurrences"] or 0})  # fmt: skip
