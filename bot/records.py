"""Test-run records in JSONL: the input of ``train``, ``trial`` and ``classify``, the output of ``split``.

One JSON object a line::

    {"status": "failure", "test": "testBasic (check_journal.TestJournal)", "log": "...",
     "context": "verify/fedora-26", "pull": 7348, "revision": "876b7f0...", "date": "2017-07-20T22:49:27Z",
     "merged": true, "label": "flake"}

``status`` (failure|success|error|skip), ``test`` and ``log`` are required. The ground truth is either
Cockpit's ``merged`` (true: the failing revision was merged anyway, evidence of a flake; false or null:
unknown) or a human ``label`` (flake|real); when both are present ``label`` wins.

A test the test runner re-ran within the job (JUnit ``<flakyFailure>``, ``<rerunFailure>``, ...) has
``retries`` (how many times); a failed run of it that a later run passed has ``passed_on_retry: true``
and the label ``flake``, the label a pass on retry earns everywhere (``Store.training_records``).

Files are read as a stream, plain or gzip (detected by content, not by name), ``-`` for stdin. A
malformed line is reported with its number and the reason; with ``strict`` it is fatal, otherwise it
is skipped and counted in :class:`ReadStats`. Nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.status import FAILED_TEST_STATUSES as FAILED_STATUSES  # noqa: F401 - re-exported
from bot.status import TEST_STATUSES as STATUSES

log = logging.getLogger(__name__)

LABELS = ("flake", "real")

# A JSONL line longer than this is reported and skipped instead of being loaded into memory.
MAX_LINE_BYTES = 256 * 1024 * 1024
_CHUNK = 1024 * 1024


class RecordError(ValueError):
    """A malformed record; ``str()`` names the source and line."""

    def __init__(self, source: str, line: int, reason: str):
        super().__init__(f"{source}:{line}: {reason}")
        self.source, self.line, self.reason = source, line, reason


@dataclass
class ReadStats:
    lines: int = 0
    records: int = 0
    skipped: int = 0
    decode_replaced: int = 0
    errors: list[RecordError] = field(default_factory=list)  # the first MAX_KEPT_ERRORS only

    MAX_KEPT_ERRORS = 100

    def add_error(self, error: RecordError) -> None:
        self.skipped += 1
        if len(self.errors) < self.MAX_KEPT_ERRORS:
            self.errors.append(error)

    def summary(self) -> str:
        text = f"{self.records} records from {self.lines} lines"
        if self.skipped:
            text += f", {self.skipped} malformed lines skipped"
        if self.decode_replaced:
            text += f", {self.decode_replaced} lines with invalid UTF-8 repaired"
        return text


def truth(record: Mapping[str, Any]) -> str | None:
    """The ground truth of a record: 'flake', 'real', or None when unknown.

    A human ``label`` wins over Cockpit's ``merged``. ``merged: true`` is flake evidence; ``merged:
    false`` is reported as 'real' only for evaluation.
    """
    label = record.get("label")
    if label in LABELS:
        return label
    merged = record.get("merged")
    if merged is True:
        return "flake"
    if merged is False:
        return "real"
    return None


def validate(obj: Any) -> str | None:
    """The reason ``obj`` is not a valid record, or None when it is."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    missing = [key for key in ("status", "test", "log") if key not in obj]
    if missing:
        return "missing required field(s): " + ", ".join(missing)
    if obj["status"] not in STATUSES:
        return f"status must be one of {'|'.join(STATUSES)}, got {obj['status']!r}"
    if not isinstance(obj["test"], str) or not obj["test"].strip():
        return "test must be a non-empty string"
    if not isinstance(obj["log"], str):
        return f"log must be a string, got {type(obj['log']).__name__}"
    if obj.get("merged") not in (True, False, None):
        return f"merged must be true, false or null, got {obj['merged']!r}"
    if obj.get("label") not in (*LABELS, None):
        return f"label must be flake or real, got {obj['label']!r}"
    for key in ("context", "revision", "date"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            return f"{key} must be a string"
    if obj.get("passed_on_retry") not in (True, False, None):
        return f"passed_on_retry must be true, false or null, got {obj['passed_on_retry']!r}"
    retries = obj.get("retries")
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        return f"retries must be a whole number >= 0, got {retries!r}"
    return None


def open_binary(source: str | Path | IO[bytes]) -> tuple[IO[bytes], str]:
    """Open a path (``-`` is stdin) or binary stream, transparently un-gzipping. Returns (stream, name)."""
    if isinstance(source, (str, Path)):
        name = str(source)
        raw: IO[bytes] = sys.stdin.buffer if name == "-" else open(source, "rb")  # noqa: SIM115
    else:
        raw, name = source, getattr(source, "name", "<stream>")
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered), name  # type: ignore[return-value]
    return buffered, name


def _lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[bytes | None]:
    """Yield each line (without newline); ``None`` for a line longer than ``max_line_bytes``."""
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            # too long: skip to the end of this line without keeping it
            while True:
                rest = stream.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
            continue
        yield line.rstrip(b"\r\n")


def read_records(
    source: str | Path | IO[bytes],
    *,
    strict: bool = False,
    stats: ReadStats | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[dict[str, Any]]:
    """Stream the valid records of a JSONL file (plain or gzip).

    Malformed lines raise :class:`RecordError` when ``strict``; otherwise they are logged as
    warnings with their line number, skipped, and counted in ``stats``.
    """
    stats = stats if stats is not None else ReadStats()
    stream, name = open_binary(source)
    try:
        for number, raw in enumerate(_lines(stream, max_line_bytes), start=1):
            stats.lines += 1
            if raw is None:
                reason = f"line longer than {max_line_bytes} bytes"
            elif not raw.strip():
                continue
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", errors="replace")
                    stats.decode_replaced += 1
                try:
                    obj = json.loads(text)
                    reason = validate(obj)
                except json.JSONDecodeError as exc:
                    reason = f"invalid JSON: {exc.msg} at column {exc.colno}"
                if reason is None:
                    stats.records += 1
                    yield obj
                    continue
            error = RecordError(name, number, reason)
            if strict:
                raise error
            log.warning("skipping %s", error)
            stats.add_error(error)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        # a truncated or corrupt gzip stream: keep what was read, report where it stopped
        error = RecordError(name, stats.lines + 1, f"unreadable input: {exc}")
        if strict:
            raise error from exc
        log.warning("stopping at %s", error)
        stats.add_error(error)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def write_jsonl(records: Iterable[Mapping[str, Any]], out: IO[str]) -> int:
    """Write records as JSONL; returns how many were written."""
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n")
        count += 1
    return count
