"""Bounded text buffers and the records built from them.

A :class:`Capture` keeps the head and, above all, the tail of a text that grows a piece at a time, so a
test that printed a gigabyte costs at most ``limit`` characters. A :class:`Region` is a capture tied to a
place in the log: the engine feeds it the text of each block from where it was opened until it is closed.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from bot.redact import mask_secrets

CUT_MARKER = "\n[… {n} characters cut by flakebot …]\n"
KEPT_MARKER = "\n[… {n} characters cut by flakebot; the {k} flagged line(s) among them follow …]\n"
MAX_PINS = 200
_MARKER_ROOM = 64  # the marker's length, with room for the number
HEAD_SHARE = 0.25  # the rest of the budget goes to the tail, where tracebacks end


class Capture:
    """Keeps at most ``limit`` characters of everything added: a quarter of head, the rest tail."""

    def __init__(self, limit: int, head_share: float = HEAD_SHARE):
        usable = max(0, limit - _MARKER_ROOM)
        self.head_limit = int(usable * head_share)
        self.tail_limit = usable - self.head_limit
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.cut = 0
        self.total = 0  # characters added so far
        self.pins: list[tuple[int, str]] = []  # (offset, line): lines to keep even from a cut middle
        self.pinned = 0
        self.pin_budget = self.tail_limit // 4

    def pin(self, offset: int, line: str) -> None:
        """Ask to keep ``line`` (which starts ``offset`` characters into everything added) if the middle
        is cut: failure lines of a long test must survive the cut (bounded: a quarter of the tail)."""
        if len(self.pins) < MAX_PINS and self.pinned + len(line) + 1 <= self.pin_budget:
            self.pins.append((offset, line))
            self.pinned += len(line) + 1

    def add(self, text: str, start: int = 0, end: int | None = None) -> None:
        """Add ``text[start:end]``, slicing only the parts that are kept."""
        end = len(text) if end is None else end
        if start >= end:
            return
        self.total += end - start
        room = self.head_limit - self.head_len
        if room > 0:
            part = text[start : min(end, start + room)]
            self.head.append(part)
            self.head_len += len(part)
            start += len(part)
            if start >= end:
                return
        if end - start >= self.tail_limit:
            # the new piece alone fills the tail: drop everything older without copying it
            self.cut += self.tail_len + (end - start - self.tail_limit)
            self.tail.clear()
            self.tail.append(text[end - self.tail_limit : end] if self.tail_limit else "")
            self.tail_len = self.tail_limit
            return
        self.tail.append(text[start:end])
        self.tail_len += end - start
        excess = self.tail_len - self.tail_limit
        while excess > 0:
            first = self.tail[0]
            if len(first) <= excess:
                self.tail.popleft()
                self.tail_len -= len(first)
                self.cut += len(first)
                excess -= len(first)
            else:
                self.tail[0] = first[excess:]
                self.tail_len -= excess
                self.cut += excess
                excess = 0

    @property
    def empty(self) -> bool:
        return not (self.head_len or self.tail_len)

    def text(self) -> tuple[str, bool]:
        """The kept text and whether anything was cut (the cut is marked in the text)."""
        head = "".join(self.head)
        tail = "".join(self.tail)
        if not self.cut:
            return head + tail, False
        if self.pins:
            tail = tail[min(len(tail), self.pinned) :]  # make room for the flagged lines
        # start the tail on a line boundary when one is near, so the reader sees whole lines
        newline = tail.find("\n", 0, 400)
        if newline >= 0:
            tail = tail[newline + 1 :]
        cut_end = self.total - len(tail)
        cut = cut_end - self.head_len
        kept = [
            line for offset, line in self.pins if offset >= self.head_len and offset + len(line) <= cut_end
        ]
        if kept:
            middle = (
                KEPT_MARKER.format(n=cut, k=len(kept))
                + "\n".join(kept)
                + "\n[… end of the flagged lines …]\n"
            )
            return head + middle + tail, True
        return head + CUT_MARKER.format(n=cut) + tail, True


def fit_bytes(text: str, limit: int) -> tuple[str, bool]:
    """Cut the middle of ``text`` so that its UTF-8 encoding has at most ``limit`` bytes."""
    if len(text) <= limit and (text.isascii() or len(text.encode("utf-8")) <= limit):
        return text, False
    if limit <= _MARKER_ROOM:
        return text[-limit:].encode("utf-8")[-limit:].decode("utf-8", "ignore"), True
    capture = Capture(limit)
    capture.add(text)
    out, _ = capture.text()
    while len(out.encode("utf-8")) > limit:  # multi-byte characters: shrink until it fits
        overflow = len(out.encode("utf-8")) - limit
        capture = Capture(max(_MARKER_ROOM + 1, len(out) - overflow))
        capture.add(text)
        out, _ = capture.text()
    return out, True


def mask(text: str) -> str:
    """:func:`bot.redact.mask_secrets` (which skips a text no secret pattern can match)."""
    return mask_secrets(text)


def make_record(
    status: str,
    test: str,
    log: str,
    *,
    job: str | None,
    fmt: str,
    lines: tuple[int, int] | None,
    truncated: bool = False,
    max_bytes: int,
) -> dict[str, Any]:
    """A record in the shape of ``bot/records.py``; the log is capped and has secrets masked."""
    log = mask(log.strip("\n")) if log else ""
    log, cut = fit_bytes(log, max_bytes)
    record: dict[str, Any] = {"status": status, "test": " ".join(test.split()) or "(unnamed)", "log": log}
    if job:
        record["job"] = job
    record["format"] = fmt
    if lines is not None:
        record["lines"] = [lines[0], max(lines[0], lines[1])]
    record["truncated"] = bool(truncated or cut)
    return record
