"""From a CI job log (or a test report) to per-test failure records.

Entry points:

* :func:`split_log` streams a job log (a path, ``-``, a binary stream or an iterable of byte chunks) and
  yields one record per failing test, in the format of :mod:`bot.records`.
* :func:`split_report` reads a machine-readable report: JUnit XML or GitLab's pipeline test report JSON.

One module per format (``tap``, ``pytestlog``, ``unittestlog``, ``gotest``, ``jest``, ``mozharness``,
``junit``, ``gitlab_report``); ``reader`` turns the input into blocks, ``clean`` removes what CI wrappers
add, ``engine`` runs the parsers, ``capture`` bounds the text kept per record.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from bot.split.clean import Cleaner
from bot.split.engine import Engine, Parser, SplitStats
from bot.split.gitlab_report import read_gitlab_report
from bot.split.gotest import GoTestParser
from bot.split.jest import JestParser
from bot.split.junit import read_junit
from bot.split.mozharness import MozharnessParser
from bot.split.pytestlog import PytestParser
from bot.split.reader import SplitError, blocks, gunzip_if_needed, raw_chunks, source_name
from bot.split.tap import TapParser
from bot.split.unittestlog import UnittestParser

__all__ = ["FORMATS", "REPORT_KINDS", "SplitError", "SplitStats", "split_log", "split_report"]

# The most specific line starts first: the engine gives a line to the first parser whose pattern
# matches it (go's '=== RUN' would otherwise look like one of pytest's '=== title ===' lines).
LOG_PARSERS: dict[str, type[Parser]] = {
    parser.name: parser
    for parser in (GoTestParser, UnittestParser, TapParser, JestParser, PytestParser, MozharnessParser)
}
REPORT_KINDS = ("junit-xml", "gitlab-json")
FORMATS = ("auto", *LOG_PARSERS, *REPORT_KINDS)
MAX_REPORT_BYTES = 256 * 1024 * 1024  # a GitLab report JSON is parsed whole; larger ones are refused
MIN_RECORD_BYTES = 256


def split_log(
    source: Any,
    *,
    fmt: str = "auto",
    job: str | None = None,
    max_record_bytes: int = 65536,
    include_passed: bool = False,
    stats: SplitStats | None = None,
    flaky_attempts: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield the per-test records of a job log, read as a stream in bounded memory.

    ``fmt`` is ``auto`` (every log parser at once, plus JUnit XML / GitLab JSON recognised by their first
    bytes) or one name of :data:`FORMATS`. A log in no known format yields one record named ``job`` (or
    the file name) with the end of the log. Problems with the input (invalid UTF-8, NUL bytes, binary
    data, overlong lines, truncation) are warnings in ``stats``; whatever could be parsed is kept.
    Raises :class:`SplitError` when the input cannot be read at all.

    ``flaky_attempts``: a JUnit test the runner re-ran and that passed in the end also yields a failure
    record for each failed run, with ``passed_on_retry`` true and the label ``flake``
    (``bot/split/junit.py``). Off by default: the records are then what finally failed.
    """
    if fmt not in FORMATS:
        raise SplitError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if max_record_bytes < MIN_RECORD_BYTES:
        raise SplitError(f"max_record_bytes must be at least {MIN_RECORD_BYTES}")
    stats = stats if stats is not None else SplitStats()
    name = source_name(source)
    job = job or name
    chunks = _guarded(gunzip_if_needed(raw_chunks(source), stats.warn), stats)
    head, chunks = _peek(chunks)
    kind = fmt if fmt in REPORT_KINDS else (sniff_report(head) if fmt == "auto" else None)
    common = {
        "job": job,
        "include_passed": include_passed,
        "max_record_bytes": max_record_bytes,
        "stats": stats,
    }
    if kind == "junit-xml":
        records = read_junit(chunks, **common, flaky_attempts=flaky_attempts)
    elif kind == "gitlab-json":
        records = read_gitlab_report(_read_all(chunks), **common)
    else:
        parsers = list(LOG_PARSERS.values()) if fmt == "auto" else [LOG_PARSERS[fmt]]
        records = _split_text(chunks, parsers, job or "job", **common)
    for record in records:
        stats.records += 1
        yield record


def split_report(
    data: bytes,
    kind: str,
    *,
    job: str | None = None,
    include_passed: bool = False,
    max_record_bytes: int = 65536,
    stats: SplitStats | None = None,
    flaky_attempts: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yield the records of a test report: ``kind`` is ``junit-xml`` or ``gitlab-json``."""
    if kind not in REPORT_KINDS:
        raise SplitError(f"unknown report kind {kind!r}; choose junit-xml or gitlab-json")
    yield from split_log(
        [data],
        fmt=kind,
        job=job,
        include_passed=include_passed,
        max_record_bytes=max_record_bytes,
        stats=stats,
        flaky_attempts=flaky_attempts,
    )


def sniff_report(head: bytes) -> str | None:
    """'junit-xml' or 'gitlab-json' when the first bytes say so, else None (a plain log)."""
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if start.startswith((b"<?xml", b"<testsuites", b"<testsuite")):
        return "junit-xml"
    if start.startswith(b"{") and b'"test_suites"' in head:
        return "gitlab-json"
    return None


def _split_text(chunks, parsers, fallback: str, *, job, include_passed, max_record_bytes, stats):
    engine = Engine(
        parsers, job=job, max_record_bytes=max_record_bytes, include_passed=include_passed, stats=stats
    )
    cleaner = Cleaner(stats.warn)

    def counted():
        for chunk in chunks:
            stats.bytes += len(chunk)
            yield chunk

    def decoded():
        line = 1
        for block in blocks(counted(), stats.warn):
            text = cleaner.decode(block, line)
            line += text.count("\n")
            yield text

    for text in cleaner.cleaned(decoded()):
        stats.wrapper = cleaner.wrapper
        yield from engine.feed(text)
    yield from engine.finish(lambda: fallback)


def _guarded(chunks: Iterator[bytes], stats: SplitStats) -> Iterator[bytes]:
    """Stop cleanly, with a warning, when reading fails half-way (a dropped connection, a bad disk)."""
    try:
        yield from chunks
    except OSError as exc:
        stats.warn("read", f"reading the log stopped early: {exc}; kept what came before")


def _peek(chunks: Iterator[bytes], size: int = 4096) -> tuple[bytes, Iterator[bytes]]:
    taken: list[bytes] = []
    length = 0
    for chunk in chunks:
        taken.append(chunk)
        length += len(chunk)
        if length >= size:
            break
    return b"".join(taken)[:size], itertools.chain(taken, chunks)


def _read_all(chunks: Iterator[bytes]) -> bytes:
    parts, total = [], 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_REPORT_BYTES:
            raise SplitError(f"the test report is larger than {MAX_REPORT_BYTES} bytes; refused")
        parts.append(chunk)
    return b"".join(parts)
