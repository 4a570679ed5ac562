"""Jest's output (default and ``--verbose`` reporters).

    FAIL src/cart.test.js
      total
        ✓ is zero for an empty cart (1 ms)
        ✕ applies the discount (9 ms)

      ● total › applies the discount

        expect(received).toBe(expected) // Object.is equality …

Each ``●`` block is one failing test, named ``<file> › <describe> › <test>`` as Jest prints it; it runs
to the next ``●``, suite header or the ``Test Suites:`` summary. ``● Test suite failed to run`` is an
``error`` record named after the file; ``● Console`` blocks (captured console output) are skipped.
``--verbose`` lists passing tests (``✓``) under their ``describe`` titles, which are tracked by
indentation to name them the same way.
"""

from __future__ import annotations

import re

from bot.split.engine import Event, Parser, Region

_SUITE = re.compile(r"[ \t]*(PASS|FAIL) +(\S+)")
_BULLET = re.compile(r"[ \t]*● (.*\S)")
_CHECK = re.compile(r"([ \t]*)(?:✓|√) (.*\S)")
_TIMING = re.compile(r" \(\d+(?:\.\d+)? ?m?s\)$")
_DESCRIBE = re.compile(r"^( +)(\S[^\n]*)", re.M)


class JestParser(Parser):
    name = "jest"
    line_start = r"[ \t]*(?:PASS|FAIL) +\S|[ \t]*● |[ \t]*(?:✓|√|✕|×|○) |Test Suites: "

    def __init__(self, engine):
        super().__init__(engine)
        self.file: str | None = None
        self.open: tuple[str, str, Region] | None = None
        self.describe: list[tuple[int, str]] = []
        self.between: Region | None = None  # the text since the previous event (verbose describe titles)

    def _close(self, end: int, last_line: int) -> None:
        if self.open:
            status, name, region = self.open
            self.open = None
            text, cut = region.close(end)
            self.emit(status, name, text, (region.first_line, last_line), cut)

    def _track_describe(self, ev: Event) -> None:
        """Read the describe titles printed since the previous event (verbose reporter)."""
        if self.between is not None:
            text, _ = self.between.close(ev.start)
            for match in _DESCRIBE.finditer(text):
                indent = len(match.group(1))
                while self.describe and self.describe[-1][0] >= indent:
                    self.describe.pop()
                self.describe.append((indent, match.group(2).rstrip()))
        self.between = Region(self.engine, self.engine.line_end(ev), ev.lineno + 1)

    def on_line(self, line: str, ev: Event) -> None:
        if self.engine.include_passed:
            self._track_describe(ev)
        suite = _SUITE.match(line)
        if suite and not line.lstrip().startswith(("✓", "●")):
            self.detected()
            self._close(ev.start, ev.lineno - 1)
            self.file = suite.group(2)
            self.describe.clear()
            return
        if line.startswith("Test Suites: "):
            self.detected()
            self._close(ev.start, ev.lineno - 1)
            return
        bullet = _BULLET.match(line)
        if bullet:
            self._close(ev.start, ev.lineno - 1)
            title = bullet.group(1)
            if title == "Console":
                return
            self.detected()
            if title == "Test suite failed to run":
                status, name = "error", self.file or title
            else:
                status, name = "failure", f"{self.file} › {title}" if self.file else title
            self.open = (status, name, Region(self.engine, ev.start, ev.lineno))
            return
        check = _CHECK.match(line)
        if check and self.file:
            indent = len(check.group(1))
            titles = [title for level, title in self.describe if level < indent]
            title = check.group(2)
            at = title.rfind(" (")
            if at >= 0 and _TIMING.match(title, at):
                title = title[:at]
            self.emit("success", " › ".join([self.file, *titles, title]))
        if line.lstrip()[:1] in ("✓", "√", "✕", "×", "○"):
            indent = len(line) - len(line.lstrip())
            while self.describe and self.describe[-1][0] >= indent:
                self.describe.pop()

    def finish(self) -> None:
        if self.between is not None:
            self.between.discard()
        if self.open:
            self._close(0, self.engine.lineno)
