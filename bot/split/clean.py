"""Turning raw log bytes into clean text: decoding, and removing what CI wrappers add.

* GitHub Actions logs: a UTF-8 BOM, an ISO timestamp before every line, ANSI colours. The
  ``##[group]``/``##[error]`` markers are kept: they are short and say where a step starts or failed.
* GitLab job traces: ``section_start:…``/``section_end:…`` markers, ANSI colours and erase-line codes,
  and ``\\r`` progress updates (only what follows the last ``\\r`` of a line stays, as on a terminal).

Every step keeps line breaks as they are, so line numbers stay those of the original log. Each step is a
single C-level pass over a whole block (``str.replace`` or one compiled ``re.sub``), and runs only when
the block contains the byte it is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

Warn = Callable[[str, str], None]

_GITHUB_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z "
_GITHUB_FIRST = re.compile(_GITHUB_TS)
_GITHUB_LINE = re.compile("\n" + _GITHUB_TS)
# CSI sequences (colours, erase line), OSC sequences (titles, links) and two-byte escapes
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# a line up to its last carriage return: what a terminal would have overwritten
_OVERWRITTEN = re.compile(r"^(?:[^\r\n]*\r)+", re.M)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\ufffd]")

BINARY_SHARE = 0.10
HEAD_CHARS = 65536  # what the wrapper is recognised on: the start of the log, however it was cut


class Cleaner:
    """Decodes and cleans one block after the other; detects the CI wrapper on the log's first
    :data:`HEAD_CHARS` characters (:meth:`cleaned` gathers them, whatever the blocks' size)."""

    def __init__(self, warn: Warn):
        self.warn = warn
        self.wrapper: str | None = None

    def cleaned(self, texts: Iterable[str]) -> Iterator[str]:
        """Each decoded block cleaned, in order. The first blocks are held until they make up
        :data:`HEAD_CHARS` characters (or the log ends), so the wrapper is recognised on the same start
        of the log whether it came in one block or in many small ones."""
        held: list[str] = []
        size = 0
        texts = iter(texts)
        for text in texts:
            held.append(text)
            size += len(text)
            if size >= HEAD_CHARS:
                break
        self.wrapper = detect_wrapper("".join(held)[: HEAD_CHARS + 1].removeprefix("\ufeff"))
        for i, text in enumerate(held):
            yield self.clean(text.removeprefix("\ufeff") if i == 0 else text)
        for text in texts:
            yield self.clean(text)

    def decode(self, data: bytes, first_line: int) -> str:
        try:
            text = data.decode("utf-8")
            damaged = False
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            damaged = True
            self.warn("utf8", f"invalid UTF-8 repaired (first near line {first_line})")
        if "\x00" in text:
            self.warn("nul", f"NUL bytes removed (first near line {first_line})")
            damaged = True
        if damaged and len(_CONTROL.findall(text)) > BINARY_SHARE * len(text):
            self.warn(
                "binary", f"binary data in the log (first near line {first_line}); parsed as text anyway"
            )
        if "\x00" in text:
            text = text.replace("\x00", "")
        return text

    def clean(self, text: str) -> str:
        """One block without what the wrapper (already detected) and terminals add."""
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                text = _OVERWRITTEN.sub("", text)
        if "\x1b" in text:
            text = _ANSI.sub("", text)
        if self.wrapper == "github-actions":
            text = _GITHUB_LINE.sub("\n", text)
            match = _GITHUB_FIRST.match(text)
            if match:
                text = text[match.end() :]
        return text


def detect_wrapper(text: str) -> str | None:
    """'github-actions', 'gitlab' or None, from the start of a log.

    An Actions log is recognised by its first line's timestamp, or by timestamps on most lines of its
    start (a check run's output, say, puts a title and a summary before the log it quotes).
    """
    head = text[:65536]
    if _GITHUB_FIRST.match(head.lstrip("\n")):
        return "github-actions"
    lines = head.count("\n") + 1
    if lines >= 4 and len(_GITHUB_LINE.findall(head)) >= lines // 2:
        return "github-actions"
    if "section_start:" in head or "gitlab-runner" in head[:4096]:
        return "gitlab"
    return None
