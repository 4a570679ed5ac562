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
is skipped and counted in :class:`ReadStats`, a run of malformed lines reported in one warning. Nothing
is dropped silently. The reading rules the commands share (docs/hardening.md, 15):

* input that is not JSONL text at all (NUL bytes at its start: a binary file; a zip, xz, bzip2 or
  zstd archive) is refused at once with :class:`InputError`, ``strict`` or not;
* a stream that ends early or breaks (a truncated or corrupt gzip file, a read error) keeps the records
  read before it and sets ``ReadStats.cut_short``: a command says so and exits non-zero;
* reading nothing usable (an empty file, only malformed lines) is an error a command reports with
  :meth:`ReadStats.why_nothing`.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import sys
import zlib
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


class InputError(RecordError):
    """The input as a whole is not JSONL text (binary, an archive): refused, never skipped line by line."""

    def __init__(self, source: str, reason: str):
        ValueError.__init__(self, f"{source}: {reason}")
        self.source, self.line, self.reason = source, 0, reason


@dataclass
class ReadStats:
    lines: int = 0
    records: int = 0
    skipped: int = 0
    decode_replaced: int = 0
    errors: list[RecordError] = field(default_factory=list)  # the first MAX_KEPT_ERRORS only
    cut_short: RecordError | None = None  # the input ended early or broke here
    sources: list[str] = field(default_factory=list)

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
        if self.cut_short is not None:
            text += f"; the input ends early at {self.cut_short.source}:{self.cut_short.line}"
        return text

    def why_nothing(self) -> str:
        """Why no record was read, for an error message."""
        names = ", ".join(self.sources) or "the input"
        if self.cut_short is not None and self.records == 0 and self.skipped <= 1:
            return f"{self.cut_short} before any record"
        if self.lines == 0:
            return f"{names} is empty"
        if self.skipped == 0:
            return f"{names} holds only blank lines"
        first = self.errors[0] if self.errors else None
        return f"none of the {self.lines} lines of {names} is a valid record" + (
            f" (first: {first})" if first else ""
        )


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


# archive formats people hand over by mistake; only gzip is read
_ARCHIVES = {b"PK\x03\x04": "a zip archive", b"\xfd7zXZ\x00": "xz-compressed", b"BZh": "bzip2-compressed",
             b"\x28\xb5\x2f\xfd": "zstd-compressed", b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive"}  # fmt: skip
_SNIFF_BYTES = 8192
# errors of a stream that ends early or breaks: a truncated or corrupt gzip file, a failing disk
STREAM_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)


def open_binary(source: str | Path | IO[bytes]) -> tuple[IO[bytes], str]:
    """Open a path (``-`` is stdin) or binary stream, transparently un-gzipping. Returns (stream, name).

    Raises :class:`InputError` for input that is not text (NUL bytes near its start) or an archive."""
    if isinstance(source, (str, Path)):
        name = str(source)
        raw: IO[bytes] = sys.stdin.buffer if name == "-" else open(source, "rb")  # noqa: SIM115
    else:
        raw, name = source, getattr(source, "name", "<stream>")
    buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
    stream: IO[bytes] = buffered
    if buffered.peek(2)[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
    try:
        _sniff(stream, name)
    except InputError:
        if stream is not sys.stdin.buffer:
            stream.close()
        raise
    return stream, name


def _sniff(stream: IO[bytes], name: str) -> None:
    try:
        head = stream.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]  # type: ignore[attr-defined]
    except STREAM_ERRORS:
        return  # a broken gzip stream: reading reports where it stops
    for magic, what in _ARCHIVES.items():
        if head.startswith(magic):
            raise InputError(name, f"not JSONL: the file is {what}; flakebot reads JSONL, plain or gzip")
    if b"\x00" in head:
        raise InputError(name, "not JSONL text: it holds NUL bytes (a binary file?)")


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

    Malformed lines raise :class:`RecordError` when ``strict``; otherwise they are skipped, counted in
    ``stats`` and logged as warnings, one for each run of consecutive malformed lines. Input that is
    not JSONL text raises :class:`InputError`; a stream that ends early stops the reading and sets
    ``stats.cut_short`` (:class:`RecordError` when ``strict``).
    """
    stats = stats if stats is not None else ReadStats()
    stream, name = open_binary(source)
    stats.sources.append(name)
    bad = BadRun()
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
                    reason = json_error(exc)
                if reason is None:
                    bad.report()
                    stats.records += 1
                    yield obj
                    continue
            error = RecordError(name, number, reason)
            if strict:
                raise error
            bad.add(error)
            stats.add_error(error)
    except STREAM_ERRORS as exc:
        # a truncated or corrupt gzip stream: keep what was read, report where it stopped
        error = RecordError(name, stats.lines + 1, f"the input ends early ({exc}); kept what came before it")
        if strict:
            raise error from exc
        bad.report()
        log.warning("%s", error)
        stats.cut_short = error
    finally:
        bad.report()
        if stream is not sys.stdin.buffer:
            stream.close()


def json_error(exc: json.JSONDecodeError) -> str:
    """``invalid JSON: <what> at column <n>`` (json's own message may end with "at" already)."""
    return f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"


class BadRun:
    """Consecutive malformed lines, reported as one warning when the run ends (:meth:`report`, called
    at the next good line and at the end)."""

    def __init__(self) -> None:
        self.first: RecordError | None = None
        self.last = self.count = 0

    def add(self, error: RecordError) -> None:
        if self.first is None:
            self.first, self.count = error, 0
        self.last, self.count = error.line, self.count + 1

    def report(self) -> None:
        if self.first is None:
            return
        more = self.count - 1
        tail = (
            f" (and {more} more malformed line{'s' if more > 1 else ''} after it, to line {self.last})"
            if more
            else ""
        )
        log.warning("skipping %s%s", self.first, tail)
        self.first = None


def write_jsonl(records: Iterable[Mapping[str, Any]], out: IO[str]) -> int:
    """Write records as JSONL; returns how many were written."""
    count = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n")
        count += 1
    return count
