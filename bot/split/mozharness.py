"""Mozilla's mozharness/Treeherder logs (mochitest, reftest, xpcshell, web-platform-tests, …).

    [task 2025-02-13T11:00:27.833Z] 11:00:27     INFO - TEST-START | path/to/test.js
    … the test's output …
    … TEST-UNEXPECTED-FAIL | path/to/test.js | message
    … TEST-OK | path/to/test.js | took 1314ms          (or TEST-END, or TEST-PASS … | took …)
    … PROCESS-CRASH | application crashed [@ signature] | path/to/test.js

The markers sit after a timestamp and a log level, so they are found with scanners that start with the
literal ``TEST-`` / ``PROCESS-CRASH``, not at line starts. A test that has an unexpected result (or a
crash) becomes one record from its ``TEST-START`` (when it is the test running) or from its first
unexpected line, through its end line; harnesses that run tests in parallel (xpcshell) interleave
tests, so a record also ends at the next ``TEST-START``. Unexpected lines about the harness rather than
a test (``SimpleTest``, ``automation.py``, leak checks) go into the record already open, or make a
record named by their subject.
"""

from __future__ import annotations

import re

from bot.split.engine import Event, Parser, Region

_KIND = re.compile(r"TEST-[A-Z-]+ \| ")
_LEVEL = re.compile(r"^(?:\[task [^]]*\] )?[\d:.]+ +(?:ERROR|CRITICAL|FATAL) - ")
_ENDS = ("TEST-END", "TEST-OK")


def _is_test(name: str) -> bool:
    """Whether an unexpected line names a test (a path) rather than the harness ('(SimpleTest/…)',
    'SimpleTest', 'leakcheck large …')."""
    return not name.startswith("(") and ("/" in name or "." in name.split(" ")[0])


class MozharnessParser(Parser):
    name = "mozharness"
    scanners = (
        r"TEST-(?:START|END|OK|PASS|FAIL|UNEXPECTED-[A-Z]+) \| ",
        r"PROCESS-CRASH \| ",
        r" ERROR - ",
        r" CRITICAL - ",
        r" FATAL - ",
    )

    def __init__(self, engine):
        super().__init__(engine)
        self.current: tuple[str, Region] | None = None  # the test started last
        self.open: dict | None = None  # the failing test being recorded

    def _close_open(self, end: int, last_line: int) -> None:
        if self.open:
            if self.current and self.current[1] is self.open["region"]:
                self.current = None  # its region is used up by this record
            text, cut = self.open["region"].close(end)
            self.emit(
                self.open["status"], self.open["test"], text, (self.open["region"].first_line, last_line), cut
            )
            self.open = None

    def _drop_current(self) -> None:
        if self.current:
            if not (self.open and self.open["region"] is self.current[1]):
                self.current[1].discard()
            self.current = None

    def on_line(self, line: str, ev: Event) -> None:
        crash_at = line.find("PROCESS-CRASH | ")
        mark = _KIND.search(line)
        if crash_at >= 0 and (mark is None or crash_at < mark.start()):
            # PROCESS-CRASH | reason [@ signature] | test   (the test is the last field, when present)
            fields = [field.strip() for field in line[crash_at:].split(" | ")]
            self.detected()
            self._unexpected("error", fields[-1] if len(fields) > 2 else fields[1], ev)
            return
        if mark is None:
            # a mozharness ERROR/CRITICAL/FATAL line (an AddressSanitizer report, a harness error): the
            # running test failed with it; between tests, the harness did (build logs, where no test
            # ever started, are left to the job-level record)
            if _LEVEL.search(line):
                if self.current:
                    self._unexpected("error", self.current[0], ev)
                elif self.engine.stats.format == self.name:  # between tests: the harness itself
                    self._unexpected("error", self.engine.job or "harness", ev)
            return
        fields = [field.strip() for field in line[mark.start() :].split(" | ", 2)]
        kind, test = fields[0], fields[1]
        rest = fields[2] if len(fields) > 2 else ""
        if kind == "TEST-START":
            self.detected()
            self._close_open(ev.start, ev.lineno - 1)
            self._drop_current()
            self.current = (test, Region(self.engine, ev.start, ev.lineno))
        elif kind.startswith("TEST-UNEXPECTED-"):
            self.detected()
            status = "error" if kind in ("TEST-UNEXPECTED-CRASH", "TEST-UNEXPECTED-ERROR") else "failure"
            self._unexpected(status, test, ev)
        elif kind in _ENDS or rest.startswith("took "):
            after = self.engine.line_end(ev)
            if self.open and self.open["test"] == test:
                self._close_open(after, ev.lineno)
            elif self.current and self.current[0] == test:
                self.emit("success", test)
            if self.current and self.current[0] == test:
                self._drop_current()

    def _unexpected(self, status: str, test: str, ev: Event) -> None:
        if self.open:
            if self.open["test"] == test or not _is_test(test):
                if status == "error":
                    self.open["status"] = "error"
                self.open["region"].pin(ev)
                return
            self._close_open(ev.start, ev.lineno - 1)
        if self.current and not (self.open and self.open["region"] is self.current[1]):
            # the output since the last TEST-START is the context of the failure (for a serial
            # harness it is the test's own output; for a crash it is what ran when it happened)
            region = self.current[1]
        else:
            region = Region(self.engine, ev.start, ev.lineno)
        region.pin(ev)
        self.open = {"test": test, "status": status, "region": region}

    def finish(self) -> None:
        if self.open:
            self._close_open(0, self.engine.lineno)
        self._drop_current()
