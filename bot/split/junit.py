"""JUnit XML reports (GitHub artifacts, what GitLab's test report is built from), read as a stream.

    <testsuite name="pytest"><testcase classname="tests.test_cart" name="test_total" time="0.01">
      <failure message="assert 25 == 24">…traceback…</failure><system-out>…</system-out>
    </testcase></testsuite>

Parsed with expat directly, fed chunk by chunk, so a report of any size costs bounded memory (each
text is kept in a bounded :class:`Capture`). Guard against hostile XML: any entity declaration in
a DTD is refused (no "billion laughs" or quadratic blow-up, whatever expat version is linked), external
entities and external DTDs are never fetched or resolved, and parameter entities are not parsed. The
standard library's ``xml.etree``/``xml.dom`` parsers would accept entity declarations and lean on
expat's own amplification limits (expat >= 2.4.1); refusing declarations outright is simpler and safer,
and real JUnit reports never declare entities.

Tests are named ``<classname>.<name>`` (Jenkins' and GitLab's display), or ``<name>`` alone.

Runs of a test that the test runner re-ran (Maven Surefire's and Gradle's ``rerunFailingTestsCount``,
pytest-rerunfailures, nextest) are children of its ``<testcase>``: ``<flakyFailure>``/``<flakyError>``
when a later run passed, ``<rerunFailure>``/``<rerunError>`` when every run failed. Each carries its
own message, ``<stackTrace>``, ``<system-out>`` and ``<system-err>``. Every record of such a test says
how many times it was re-ran (``retries``). A test that passed after failing is a flake by definition:
with ``flaky_attempts`` each failed run becomes a failure record of its own with ``passed_on_retry``
true and the label ``flake`` (followed by the pass, when passes are wanted); without it the test is
the pass it finally was, as for readers that ignore these elements.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from xml.parsers import expat

from bot.split.capture import Capture, make_record
from bot.split.engine import SplitStats
from bot.split.reader import SplitError

_STATUS = {"failure": "failure", "error": "error", "skipped": "skip"}
_TEXT_PARTS = ("failure", "error", "system-out", "system-err")
# earlier runs of a re-run test, and their status
_RERUNS = {"flakyFailure": "failure", "flakyError": "error", "rerunFailure": "failure", "rerunError": "error"}
_RERUN_PARTS = ("stackTrace", "system-out", "system-err")


class _Forbidden(SplitError):
    pass


class JUnitReader:
    def __init__(
        self,
        *,
        job: str | None,
        include_passed: bool,
        max_record_bytes: int,
        stats: SplitStats,
        flaky_attempts: bool = False,
    ):
        self.job, self.include_passed, self.max = job, include_passed, max_record_bytes
        self.flaky_attempts = flaky_attempts
        self.stats = stats
        self.out: list[dict[str, Any]] = []
        self.case: dict[str, Any] | None = None
        self.rerun: dict[str, Any] | None = None  # the earlier run being read (a flaky*/rerun* element)
        self.part: str | None = None  # the element whose text is being kept
        self.seen_root = False
        self.failed = False  # stopped at malformed XML
        self.count = 0  # records yielded so far
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.EntityDeclHandler = self._refuse_entity
        parser.ExternalEntityRefHandler = self._refuse_external
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        self.parser = parser

    # --- guards -----------------------------------------------------------------------------
    def _refuse_entity(self, name: str, *_: Any) -> None:
        raise _Forbidden(f"the XML declares an entity ({name!r}); refused (entity expansion attacks)")

    def _refuse_external(self, *_: Any) -> int:
        raise _Forbidden("the XML references an external entity; refused")

    # --- handlers ---------------------------------------------------------------------------
    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        if not self.seen_root:
            self.seen_root = True
            if tag not in ("testsuites", "testsuite"):
                raise SplitError(f"not a JUnit XML report: the root element is <{tag}>")
            self.stats.format = "junit-xml"
        if tag == "testcase":
            classname, name = attrs.get("classname", "").strip(), attrs.get("name", "").strip()
            self.case = {
                "test": f"{classname}.{name}" if classname and name else (name or classname or "(unnamed)"),
                "status": "success",
                "capture": Capture(self.max),
                "first": self.parser.CurrentLineNumber,
                "reruns": [],
            }
        elif self.case is not None and self.rerun is not None:
            if tag in _RERUN_PARTS:  # the earlier run's own trace and output
                self.part = tag
                if tag.startswith("system-"):
                    self.rerun["capture"].add(f"\n[{tag}]\n")
            return
        elif self.case is not None and tag in _RERUNS:
            capture = Capture(self.max)
            message = attrs.get("message") or attrs.get("type") or ""
            capture.add(f"[{tag}] {message}\n" if message else f"[{tag}]\n")
            self.rerun = {"status": _RERUNS[tag], "capture": capture, "first": self.parser.CurrentLineNumber}
            self.rerun["text"] = False  # no text kept yet
            self.case["reruns"].append(self.rerun)
            self.part = tag  # some writers put the trace in the element itself
            return
        elif self.case is not None and tag in _STATUS:
            status = _STATUS[tag]
            if self.case["status"] in ("success", "skip") or status == "error":
                self.case["status"] = status
            message = attrs.get("message") or attrs.get("type") or ""
            if tag != "skipped":
                self.case["capture"].add(f"[{tag}] {message}\n" if message else f"[{tag}]\n")
        if self.case is not None and tag in _TEXT_PARTS:
            self.part = tag
            if tag.startswith("system-"):
                self.case["capture"].add(f"\n[{tag}]\n")

    def _text(self, data: str) -> None:
        if self.part is None or self.case is None:
            return
        if self.rerun is not None and not self.rerun["text"]:
            data = data.lstrip()  # the indentation before the run's <stackTrace>
            self.rerun["text"] = bool(data)
        (self.rerun or self.case)["capture"].add(data)

    def _end(self, tag: str) -> None:
        if self.rerun is not None:
            if tag in _RERUNS:
                self.rerun["last"] = self.parser.CurrentLineNumber
                self.rerun, self.part = None, None
            elif tag in _RERUN_PARTS:
                self.part = None
            return
        if tag in _TEXT_PARTS:
            self.part = None
        if tag == "testcase" and self.case is not None:
            case, self.case = self.case, None
            status, reruns = case["status"], case["reruns"]
            if status == "success" and reruns and self.flaky_attempts:
                for rerun in reruns:  # failed, then passed on a later run: flake evidence
                    text, cut = rerun["capture"].text()
                    record = self._record(
                        rerun["status"], case["test"], text, (rerun["first"], rerun["last"]), cut
                    )
                    record.update(retries=len(reruns), passed_on_retry=True, label="flake")
            if status == "skip" or (status == "success" and not self.include_passed):
                return
            text, cut = case["capture"].text() if status != "success" else ("", False)
            record = self._record(
                status, case["test"], text, (case["first"], self.parser.CurrentLineNumber), cut
            )
            if reruns:
                record["retries"] = len(reruns)

    def _record(self, status: str, test: str, text: str, lines: tuple[int, int], cut: bool) -> dict[str, Any]:
        record = make_record(
            status, test, text, job=self.job, fmt="junit-xml", lines=lines, truncated=cut, max_bytes=self.max
        )
        self.out.append(record)
        return record

    # --- driving ----------------------------------------------------------------------------
    def feed(self, chunk: bytes, final: bool = False) -> Iterator[dict[str, Any]]:
        try:
            self.parser.Parse(chunk, final)
        except _Forbidden:
            yield from self._drain()  # what came before the offending declaration is kept
            raise
        except expat.ExpatError as exc:
            message = (
                f"malformed XML at line {exc.lineno}, column {exc.offset}: {expat.ErrorString(exc.code)}"
            )
            if not self.seen_root:
                raise SplitError(f"not a JUnit XML report: {message}") from None
            self.stats.warn("xml", f"{message}; kept the {self.count + len(self.out)} test(s) before it")
            self.failed = True
        yield from self._drain()

    def _drain(self) -> Iterator[dict[str, Any]]:
        self.count += len(self.out)
        yield from self.out
        self.out.clear()


def read_junit(
    chunks: Iterable[bytes],
    *,
    job: str | None,
    include_passed: bool,
    max_record_bytes: int,
    stats: SplitStats,
    flaky_attempts: bool = False,
) -> Iterator[dict[str, Any]]:
    reader = JUnitReader(
        job=job,
        include_passed=include_passed,
        max_record_bytes=max_record_bytes,
        stats=stats,
        flaky_attempts=flaky_attempts,
    )
    for chunk in chunks:
        stats.bytes += len(chunk)
        yield from reader.feed(chunk)
        if reader.failed:
            return
    yield from reader.feed(b"", final=True)
    stats.lines = reader.parser.CurrentLineNumber
