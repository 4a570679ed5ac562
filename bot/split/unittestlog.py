"""Python's unittest runner: ``FAIL:``/``ERROR:`` sections after a line of 70 ``=``.

    ======================================================================
    FAIL: test_remove (test_inventory.TestInventory.test_remove)
    ----------------------------------------------------------------------
    Traceback (most recent call last): ...

A section runs to the next ``====`` line or to ``Ran N tests in …``. The test is named as unittest
prints it (``test_remove (test_inventory.TestInventory.test_remove)``), as Cockpit's records do.
Verbose runs name passing tests: ``test_add (test_inventory.TestInventory.test_add) ... ok``.
"""

from __future__ import annotations

import re

from bot.split.engine import Event, Parser, Region

_SEPARATOR = "=" * 70
_HEADER = re.compile(r"(FAIL|ERROR|UNEXPECTED SUCCESS): (.*\S)")
_PASSED = re.compile(r"(\w+ \([\w.]+\)) \.\.\. ok$")
_RAN = re.compile(r"Ran \d+ tests? in ")


class UnittestParser(Parser):
    name = "unittest"
    line_start = (
        r"={70}(?=\n|$)|(?:FAIL|ERROR|UNEXPECTED SUCCESS): |Ran \d+ tests? in |\w+ \([\w.]+\) \.\.\. ok"
    )

    def __init__(self, engine):
        super().__init__(engine)
        self.separator_line = -1
        self.open: tuple[str, str, Region] | None = None

    def _close(self, end: int, last_line: int) -> None:
        if self.open:
            status, name, region = self.open
            self.open = None
            text, cut = region.close(end)
            # drop the dashes that close the last section
            text = text.rstrip("\n").removesuffix("-" * 70).rstrip("\n")
            self.emit(status, name, text, (region.first_line, last_line), cut)

    def on_line(self, line: str, ev: Event) -> None:
        if line == _SEPARATOR:
            self._close(ev.start, ev.lineno - 1)
            self.separator_line = ev.lineno
            return
        if _RAN.match(line):
            self.detected()
            self._close(ev.start, ev.lineno - 2)
            return
        header = _HEADER.match(line)
        if header and ev.lineno == self.separator_line + 1:
            self.detected()
            self._close(ev.start, ev.lineno - 1)
            status = "error" if header.group(1) == "ERROR" else "failure"
            self.open = (status, header.group(2), Region(self.engine, ev.start, ev.lineno))
            return
        passed = _PASSED.match(line)
        if passed:
            self.detected()
            self.emit("success", passed.group(1))

    def finish(self) -> None:
        if self.open:
            self.engine.stats.warn("ended-mid-test", "the log ended inside a test's output (truncated log?)")
            self._close(0, self.engine.lineno)
