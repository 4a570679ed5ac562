"""The engine that runs the format parsers over a log's text blocks.

Speed comes from never looking at an uninteresting line in Python: each parser names the start of the
lines it cares about (``Parser.line_start``, a regular expression); the engine joins them into one
alternation anchored on ``\\n``, which ``re`` finds with a fast literal search, and calls the parser only
for the lines that match. Parsers whose markers sit in the middle of a line (mozharness' ``TEST-…``)
give ``Parser.scanners`` instead: patterns that start with a literal. The text between two interesting
lines is never split into lines: a parser that wants it opens a :class:`Region`, and the engine hands
each region its slice of every block until the parser closes it.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.split.capture import CUT_MARKER, Capture, make_record

log = logging.getLogger(__name__)

# What CI wrappers print when a job fails: with no failing test found, the job itself is the record.
JOB_FAILED_MARKERS = ("[taskcluster:error]", "##[error]", "ERROR: Job failed")


@dataclass
class SplitStats:
    """What happened while splitting one log (or report)."""

    lines: int = 0
    bytes: int = 0
    records: int = 0
    format: str | None = None  # the first format recognised ('unknown' when none was)
    wrapper: str | None = None  # 'github-actions', 'gitlab' or None
    warnings: list[str] = field(default_factory=list)
    _kinds: set[str] = field(default_factory=set, repr=False)

    def warn(self, kind: str, message: str) -> None:
        """Record a warning once per kind (and log it once)."""
        if kind in self._kinds:
            return
        self._kinds.add(kind)
        self.warnings.append(message)
        log.warning("%s", message)

    def summary(self) -> str:
        text = f"{self.records} records from {self.lines} lines ({self.bytes} bytes), format {self.format}"
        if self.wrapper:
            text += f" in a {self.wrapper} log"
        if self.warnings:
            text += f", {len(self.warnings)} warning(s)"
        return text


@dataclass
class Event:
    start: int  # offset of the line in the block
    end: int  # offset of the line's end (its line break or the block's end)
    lineno: int  # 1-based line number in the original log


class Region:
    """A span of the log being captured (bounded) for a record still being read."""

    def __init__(self, engine: Engine, start: int, first_line: int):
        self.engine = engine
        self.capture = Capture(engine.max_record_bytes)
        self.start: int | None = start
        self.first_line = first_line
        engine.regions.add(self)

    def pause(self, pos: int) -> None:
        if self.start is not None:
            self.capture.add(self.engine.text, self.start, pos)
            self.start = None

    def pin(self, ev: Event) -> None:
        """Keep the event's line in the record even if the region's middle is cut."""
        if self.start is not None and ev.start >= self.start:
            offset = self.capture.total + ev.start - self.start
            self.capture.pin(offset, self.engine.text[ev.start : ev.end])

    def resume(self, pos: int) -> None:
        if self.start is None:
            self.start = pos

    def close(self, end: int | None = None) -> tuple[str, bool]:
        """Stop capturing at block offset ``end`` (default: the block's end); returns (text, was cut)."""
        self.pause(len(self.engine.text) if end is None else end)
        self.engine.regions.discard(self)
        return self.capture.text()

    def discard(self) -> None:
        self.engine.regions.discard(self)


class Parser:
    """One log format. Subclasses set ``name`` and ``line_start`` and/or ``scanners``."""

    name: ClassVar[str]
    line_start: ClassVar[str | None] = None  # regex source for the start of interesting lines
    scanners: ClassVar[tuple[str, ...]] = ()  # regex sources starting with a literal, found anywhere

    def __init__(self, engine: Engine):
        self.engine = engine

    def on_line(self, line: str, ev: Event) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """The log ended: emit what is still open."""

    # helpers for subclasses
    def emit(
        self,
        status: str,
        test: str,
        log: str = "",
        lines: tuple[int, int] | None = None,
        truncated: bool = False,
    ) -> None:
        self.engine.emit(status, test, log, self.name, lines, truncated)

    def detected(self) -> None:
        self.engine.detected(self.name)


class Engine:
    def __init__(
        self,
        parser_classes: list[type[Parser]],
        *,
        job: str | None,
        max_record_bytes: int,
        include_passed: bool,
        stats: SplitStats,
    ):
        self.job = job
        self.max_record_bytes = max_record_bytes
        self.include_passed = include_passed
        self.stats = stats
        self.regions: set[Region] = set()
        self.text = ""
        self.lineno = 0  # lines before the current block
        self.out: list[dict[str, Any]] = []
        self.parsers = [cls(self) for cls in parser_classes]
        self.failures = 0
        self.job_failed = False  # a CI wrapper said the job failed
        self._tail: deque[str] = deque()  # the latest blocks, at least max_record_bytes of them
        self._tail_len = 0
        anchored = [(p, p.line_start) for p in self.parsers if p.line_start]
        self._dispatch: dict[str, Parser] = {f"p{i}": p for i, (p, _) in enumerate(anchored)}
        alternation = "|".join(f"(?P<p{i}>{src})" for i, (_, src) in enumerate(anchored))
        self._line_rx = re.compile("\n(?:" + alternation + ")") if anchored else None
        self._first_rx = re.compile("(?:" + alternation + ")") if anchored else None
        self._scanners: list[tuple[re.Pattern[str], Parser]] = [
            (re.compile(src), p) for p in self.parsers for src in p.scanners
        ]

    # --- called by parsers --------------------------------------------------------------------
    def emit(
        self,
        status: str,
        test: str,
        log_text: str,
        fmt: str,
        lines: tuple[int, int] | None,
        truncated: bool,
    ) -> None:
        if status == "success" and not self.include_passed:
            return
        if status != "success":
            self.failures += 1
        self.out.append(
            make_record(
                status,
                test,
                log_text,
                job=self.job,
                fmt=fmt,
                lines=lines,
                truncated=truncated,
                max_bytes=self.max_record_bytes,
            )
        )

    def detected(self, name: str) -> None:
        if self.stats.format is None:
            self.stats.format = name

    def line_end(self, ev: Event) -> int:
        """Offset just after the event's line (its line break included)."""
        return min(ev.end + 1, len(self.text))

    # --- driving ------------------------------------------------------------------------------
    def feed(self, text: str) -> Iterator[dict[str, Any]]:
        self.text = text
        if not self.job_failed and any(marker in text for marker in JOB_FAILED_MARKERS):
            self.job_failed = True
        hits: list[tuple[int, Parser]] = []
        if self._line_rx is not None and self._first_rx is not None:
            first = self._first_rx.match(text)
            if first:
                hits.append((0, self._dispatch[first.lastgroup or ""]))
            hits.extend(
                (m.start() + 1, self._dispatch[m.lastgroup or ""]) for m in self._line_rx.finditer(text)
            )
        if self._scanners:
            for rx, parser in self._scanners:
                for m in rx.finditer(text):
                    hits.append((text.rfind("\n", 0, m.start()) + 1, parser))
            hits.sort(key=lambda hit: hit[0])
        counted, lineno, last_start = 0, self.lineno + 1, -1
        for start, parser in hits:
            if start == last_start:
                continue  # one event per line: the first parser to claim it
            last_start = start
            lineno += text.count("\n", counted, start)
            counted = start
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            parser.on_line(text[start:end], Event(start, end, lineno))
        for region in self.regions:
            if region.start is not None:
                region.capture.add(text, region.start)
                region.start = 0
        self.lineno += text.count("\n")
        self._tail.append(text)
        self._tail_len += len(text)
        while len(self._tail) > 1 and self._tail_len - len(self._tail[0]) >= self.max_record_bytes:
            self._tail_len -= len(self._tail.popleft())
        if self.out:
            yield from self.out
            self.out.clear()

    def finish(self, fallback_name: Callable[[], str]) -> Iterator[dict[str, Any]]:
        """End of the log; ``fallback_name`` names the single record of a log in no known format."""
        self.text = ""
        last = self._tail[-1] if self._tail else ""
        if last and not last.endswith("\n"):
            self.lineno += 1
        self.stats.lines = self.lineno
        for parser in self.parsers:
            parser.finish()
        if self.stats.format is None or (self.job_failed and not self.failures):
            if self.stats.format is None:
                self.stats.format = "unknown"
            tail = "".join(self._tail)
            if tail.strip():
                capture = Capture(self.max_record_bytes, head_share=0.0)
                capture.add(tail)
                text, cut = capture.text()
                kept = text.rsplit(CUT_MARKER.rsplit("}", 1)[-1], 1)[-1]
                kept_lines = kept.count("\n") + (0 if kept.endswith("\n") else 1)
                first = max(1, self.lineno - kept_lines + 1) if cut else 1
                fmt = "unknown" if self.stats.format == "unknown" else "job"
                self.emit("failure", fallback_name(), text, fmt, (first, self.lineno), cut)
            else:
                self.stats.warn("empty", "the log is empty: no record")
        yield from self.out
        self.out.clear()
