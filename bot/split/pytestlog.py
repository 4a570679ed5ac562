"""pytest's terminal output: the FAILURES/ERRORS sections and the short test summary.

Each failure section starts with a header such as ``____ TestCheckout.test_currency ____`` that names
the test without its file; the file comes from the section's first ``path.py:LINE:`` location (the test
function's own frame), and the short test summary (``FAILED tests/x.py::Class::test - message``) gives
the full node id when it is printed (pytest's default ``-rfE``). Records wait for that summary, a bounded
number of them, then fall back to the derived id. Tests named only in the summary (``--tb=no``) become
records with the summary line as their log. ``-v`` lines (``path::test PASSED``) name passing tests.
"""

from __future__ import annotations

import re

from bot.split.engine import Event, Parser, Region

_ERROR_HEADER = re.compile(r"ERROR (?:at (?:setup|teardown|call) of|collecting) (.+)$")
_SUMMARY = re.compile(r"(?:\[gw\d+\] \[ *\d+%\] )?(FAILED|ERROR|PASSED) (.+)$")
_VERBOSE = re.compile(r"([^\s:]+::\S.*?) PASSED(?:\s|$)")
_LOCATION = re.compile(r"^(\S+?\.py):\d+:", re.M)

MAX_PENDING = 200


def short_name(nodeid: str) -> str:
    """``tests/x.py::Class::test[p.1]`` -> ``Class.test[p.1]``, the form of pytest's section headers."""
    base, bracket, params = nodeid.partition("[")
    parts = base.split("::")
    return ".".join(parts[1:] if len(parts) > 1 else parts) + bracket + params


def framed(line: str, char: str) -> str | None:
    """The title of a ``=== title ===`` / ``___ title ___`` line, or None (string ops: no backtracking)."""
    if not (line.startswith(char * 3) and line.endswith(char * 3)):
        return None
    title = line.strip(char)
    if not (title.startswith(" ") and title.endswith(" ") and title.strip()):
        return None
    return title.strip()


def node_id(path: str, short: str) -> str:
    base, bracket, params = short.partition("[")
    return f"{path}::{base.replace('.', '::')}{bracket}{params}"


class PytestParser(Parser):
    name = "pytest"
    line_start = r"={3,} |_{3,} |(?:FAILED|ERROR|PASSED) |\[gw\d+\] |[^\s:]+::\S[^\n]* PASSED"

    def __init__(self, engine):
        super().__init__(engine)
        self.section: str | None = None
        self.open: tuple[str, str, Region] | None = None  # (status, header name, region)
        self.pending: dict[str, list[tuple[str, str, str, tuple[int, int], bool]]] = {}
        self.pending_count = 0
        self.done: set[str] = set()  # short names already emitted (dedupe against the summary)

    def _close(self, end: int, last_line: int) -> None:
        if not self.open:
            return
        status, short, region = self.open
        self.open = None
        text, cut = region.close(end)
        location = _LOCATION.search(text)
        derived = node_id(location.group(1), short) if location and "/" not in short else short
        entry = (status, derived, text, (region.first_line, last_line), cut)
        self.pending.setdefault(short, []).append(entry)
        self.pending_count += 1
        if self.pending_count > MAX_PENDING:
            self._flush_pending()

    def _flush_pending(self) -> None:
        for short, entries in self.pending.items():
            for status, test, text, lines, cut in entries:
                self.emit(status, test, text, lines, cut)
                self.done.add(short)
        self.pending.clear()
        self.pending_count = 0

    def on_line(self, line: str, ev: Event) -> None:
        title = framed(line, "=")
        if title is not None:
            self._close(ev.start, ev.lineno - 1)
            if title == "FAILURES":
                self.section = "failures"
            elif title == "ERRORS":
                self.section = "errors"
            elif title == "short test summary info":
                self.section = "summary"
            else:
                if self.section == "summary" or " in " in title:
                    self._flush_pending()
                self.section = "other"
            if title in ("test session starts", "FAILURES", "ERRORS") or " in " in title:
                self.detected()
            return
        if self.section in ("failures", "errors"):
            name = framed(line, "_")
            if name is not None:
                self._close(ev.start, ev.lineno - 1)
                status = "failure"
                error = _ERROR_HEADER.match(name)
                if error or self.section == "errors":
                    status, name = "error", error.group(1) if error else name
                self.open = (status, name, Region(self.engine, ev.start, ev.lineno))
                return
        summary = _SUMMARY.match(line)
        if summary and (self.section == "summary" or summary.group(1) == "PASSED"):
            nodeid = summary.group(2).split(" - ", 1)[0].strip()
            if nodeid:
                self._summary(summary.group(1), nodeid, line, ev)
            return
        verbose = _VERBOSE.match(line)
        if verbose:
            self.detected()
            self.emit("success", verbose.group(1))

    def _summary(self, word: str, nodeid: str, line: str, ev: Event) -> None:
        self.detected()
        if word == "PASSED":
            self.emit("success", nodeid)
            return
        short = short_name(nodeid)
        entries = self.pending.get(short)
        if entries:
            status, _, text, lines, cut = entries.pop(0)
            if not entries:
                del self.pending[short]
            self.pending_count -= 1
            self.emit(status, nodeid, text, lines, cut)
            self.done.add(short)
        elif short not in self.done and nodeid not in self.done:
            self.emit("error" if word == "ERROR" else "failure", nodeid, line, (ev.lineno, ev.lineno))
            self.done.add(nodeid)

    def finish(self) -> None:
        if self.open:
            self.engine.stats.warn("ended-mid-test", "the log ended inside a test's output (truncated log?)")
            self._close(0, self.engine.lineno)
        self._flush_pending()
