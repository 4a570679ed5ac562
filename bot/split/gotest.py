"""``go test`` output, plain or ``-v``, with nested subtests.

    === RUN   TestTotal/empty_cart          (-v only: output streams under RUN/CONT/NAME lines)
        cart_test.go:12: got 3, want 4
    --- FAIL: TestTotal (0.00s)
        --- FAIL: TestTotal/empty_cart (0.00s)
            cart_test.go:12: got 3, want 4   (without -v the output comes here, indented)
    FAIL
    FAIL	example.com/shop/cart	0.004s

A parent fails whenever one of its subtests fails, so only the innermost failing tests become records
(a parent with no failing subtest is a record of its own). A record's log is the test's streamed output
(``-v``) followed by its ``--- FAIL`` block, up to the next ``go test`` line; a panic's trace lands in
the test that was running. Tests are named ``<package>.<Test/sub>`` (like go-junit-report's classname and
name) once the package line says which package they belong to. A package that fails without a failing
test (a build error) becomes one ``error`` record named after the package.
"""

from __future__ import annotations

import re

from bot.split.engine import Event, Parser, Region

_RUN = re.compile(r"=== (RUN|CONT|NAME|PAUSE)\s+(\S+)")
_RESULT = re.compile(r"([ \t]*)--- (FAIL|PASS|SKIP): (\S+) \(")
_PACKAGE = re.compile(r"(FAIL|ok)\s+(\S+)(?:\s|$)")

MAX_PENDING = 10_000  # records waiting for their package line (passes cost a name each)
MAX_PENDING_CHARS = 8 * 1024 * 1024


class _Failure:
    def __init__(self, name: str, indent: int, region: Region, stream: tuple[str, int, bool] | None):
        self.name, self.indent, self.region, self.stream = name, indent, region, stream
        self.has_failing_child = False


class GoTestParser(Parser):
    name = "go"
    line_start = (
        r"=== (?:RUN|CONT|NAME|PAUSE) |[ \t]*--- (?:FAIL|PASS|SKIP): |FAIL\t|FAIL(?=\n|$)|ok  \t|panic: "
    )

    def __init__(self, engine):
        super().__init__(engine)
        self.streams: dict[str, Region] = {}  # -v output of running tests
        self.current: str | None = None
        self.stack: list[_Failure] = []
        self.pending: list[tuple[str, str, str, tuple[int, int] | None, bool]] = []
        self.pending_chars = 0
        self.package_region = Region(engine, 0, 1)
        self.package_failures = 0

    def _pause_current(self, pos: int) -> None:
        if self.current and self.current in self.streams:
            self.streams[self.current].pause(pos)
        self.current = None

    def _pop(self, indent: int, end: int, last_line: int) -> None:
        """Close the open ``--- FAIL`` blocks nested at ``indent`` or deeper."""
        while self.stack and self.stack[-1].indent >= indent:
            failure = self.stack.pop()
            text, cut = failure.region.close(end)
            if failure.has_failing_child:
                continue
            first = failure.region.first_line
            if failure.stream:
                stream_text, stream_first, stream_cut = failure.stream
                text, cut, first = stream_text.rstrip("\n") + "\n" + text, cut or stream_cut, stream_first
            self.package_failures += 1
            self._hold("failure", failure.name, text, (first, last_line), cut)

    def _hold(self, status: str, name: str, text: str = "", lines=None, cut: bool = False) -> None:
        """Keep a record until the package line names its package (bounded: flushed unnamed beyond)."""
        self.pending.append((status, name, text, lines, cut))
        self.pending_chars += len(text) + len(name)
        if len(self.pending) > MAX_PENDING or self.pending_chars > MAX_PENDING_CHARS:
            self.engine.stats.warn(
                "go-pending", "too many go test results before a package line: named without it"
            )
            self._flush(None)

    def _flush(self, package: str | None) -> None:
        for status, name, text, lines, cut in self.pending:
            self.emit(status, f"{package}.{name}" if package else name, text, lines, cut)
        self.pending.clear()
        self.pending_chars = 0

    def on_line(self, line: str, ev: Event) -> None:
        run = _RUN.match(line)
        if run:
            self.detected()
            self._pop(0, ev.start, ev.lineno - 1)
            verb, name = run.groups()
            self._pause_current(ev.start)
            if verb == "PAUSE":
                return
            after = self.engine.line_end(ev)
            if verb == "RUN" or name not in self.streams:
                if name in self.streams:
                    self.streams[name].discard()
                self.streams[name] = Region(self.engine, after, ev.lineno + 1)
            else:
                self.streams[name].resume(after)
            self.current = name
            return
        result = _RESULT.match(line)
        if result:
            self.detected()
            indent = len(result.group(1).expandtabs(4))
            status, name = result.group(2), result.group(3)
            self._pause_current(ev.start)
            self._pop(indent, ev.start, ev.lineno - 1)
            stream = self.streams.pop(name, None)
            if status != "FAIL":
                if stream:
                    stream.discard()
                if status == "PASS" and self.engine.include_passed:
                    self._hold("success", name)
                return
            for parent in self.stack:
                parent.has_failing_child = True
            streamed = None
            if stream:
                text, cut = stream.close(ev.start)
                if text.strip():
                    streamed = (text, stream.first_line, cut)
            self.stack.append(_Failure(name, indent, Region(self.engine, ev.start, ev.lineno), streamed))
            return
        if line.startswith("panic: "):
            return  # the trace stays in the open block of the test that panicked
        package = _PACKAGE.match(line)
        if package or line == "FAIL":
            self._pop(0, ev.start, ev.lineno - 1)
            if not package:
                return
            self._pause_current(ev.start)
            for stream in self.streams.values():
                stream.discard()
            self.streams.clear()
            status, name = package.groups()
            text, cut = self.package_region.close(self.engine.line_end(ev))
            if status == "FAIL" and not self.package_failures:
                self.emit("error", name, text, (self.package_region.first_line, ev.lineno), cut)
            self._flush(name)
            self.package_failures = 0
            self.package_region = Region(self.engine, self.engine.line_end(ev), ev.lineno + 1)

    def finish(self) -> None:
        if self.stack or self.pending:
            self.engine.stats.warn("ended-mid-test", "the log ended inside a test's output (truncated log?)")
        self._pop(0, 0, self.engine.lineno)
        self._flush(None)
        self.package_region.discard()
        for stream in self.streams.values():
            stream.discard()
