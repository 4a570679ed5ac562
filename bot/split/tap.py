"""TAP (Test Anything Protocol), as Cockpit's test runner prints it.

Cockpit prints each test's output first, framed by a ``# ----…`` header naming the test, then the result
line ``not ok 67 testBasic (check_journal.TestJournal) duration: 684s``, then a few lines about files it
wrote. Other producers (prove, node-tap) print diagnostics (``#`` lines, a YAML block) after the result.
So a failing test's record runs from the end of the previous result (or its ``# ----`` header) through
the lines after its own result, up to the next header, result or plan line.
"""

from __future__ import annotations

import re

from bot.split.engine import Event, Parser, Region

_RESULT = re.compile(r"(not )?ok[ \t]+\d+[ \t]*(?:-[ \t]+)?(.*)$")
_DIRECTIVE = re.compile(r"\s#\s*(SKIP|TODO)\b", re.I)
_DURATION = re.compile(r" duration: ?\d+(?:\.\d+)?s\b")


def parse_result(line: str) -> tuple[bool, str, str | None] | None:
    """(failed, name, directive) of a TAP result line, or None."""
    match = _RESULT.match(line)
    if not match:
        return None
    rest = match.group(2)
    directive = _DIRECTIVE.search(rest)
    name = rest[: directive.start()] if directive else rest.split(" # ", 1)[0]
    at = name.rfind(" duration:")
    if at >= 0 and _DURATION.match(name, at):
        name = name[:at]
    name = name.strip()
    return bool(match.group(1)), name, directive.group(1).upper() if directive else None


class TapParser(Parser):
    name = "tap"
    line_start = r"(?:not )?ok[ \t]+\d|1\.\.\d|# -{20,}|Bail out!"

    def __init__(self, engine):
        super().__init__(engine)
        # the output since the last boundary: the next test's, until its result says whether to keep it
        self.pending: Region | None = Region(engine, 0, 1)
        self.failed: tuple[str, Region] | None = None  # a failed test whose trailing lines are being read

    def _flush_failed(self, end: int, last_line: int) -> None:
        if self.failed:
            name, region = self.failed
            text, cut = region.close(end)
            self.emit("failure", name, text, (region.first_line, last_line), cut)
            self.failed = None

    def _restart(self, pos: int, lineno: int) -> None:
        if self.pending:
            self.pending.discard()
        self.pending = Region(self.engine, pos, lineno)

    def on_line(self, line: str, ev: Event) -> None:
        if line.startswith("Bail out!"):
            self.detected()
            self._flush_failed(ev.start, ev.lineno - 1)
            text, cut = self.pending.close(self.engine.line_end(ev)) if self.pending else ("", False)
            first = self.pending.first_line if self.pending else ev.lineno
            self.pending = None
            self.emit("error", line[len("Bail out!") :].strip() or "Bail out!", text, (first, ev.lineno), cut)
            self._restart(self.engine.line_end(ev), ev.lineno + 1)
            return
        if not line.startswith(("ok", "not ok")):
            # a '# ----' header or a plan line: a boundary, not part of any failed test's trailer
            self._flush_failed(ev.start, ev.lineno - 1)
            if line.startswith("1.."):
                self.detected()
                self._restart(self.engine.line_end(ev), ev.lineno + 1)
            else:
                self._restart(ev.start, ev.lineno)
            return
        result = parse_result(line)
        if result is None:
            return
        self.detected()
        failed, name, directive = result
        self._flush_failed(ev.start, ev.lineno - 1)
        after = self.engine.line_end(ev)
        if failed and directive is None:
            # keep the region open: the lines after the result (files written, diagnostics) belong to it
            region = self.pending or Region(self.engine, ev.start, ev.lineno)
            self.pending = None
            self.failed = (name or f"test {ev.lineno}", region)
            return
        if not failed and directive is None:
            self.emit("success", name or f"test {ev.lineno}")
        self._restart(after, ev.lineno + 1)

    def finish(self) -> None:
        if self.failed:
            self._flush_failed(0, self.engine.lineno)
        if self.pending:
            self.pending.discard()
