"""Reading a job log as a stream of text blocks, whatever arrives.

``source`` is a path, ``-`` (stdin), a binary stream or an iterable of byte chunks; gzip is recognised by
its magic bytes and decompressed as a stream. Blocks are about ``BLOCK_BYTES`` long and end at a line
break, so a multi-byte character or a line is never split between two blocks. A line longer than
``MAX_LINE_BYTES`` is cut with a marker (the rest of it is skipped without being kept). Invalid UTF-8 is
repaired, NUL bytes are dropped, binary data is reported; line breaks are never added or removed, so line
numbers stay those of the original log.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

BLOCK_BYTES = 1 << 20
MAX_LINE_BYTES = 128 * 1024
READ_BYTES = 256 * 1024
LINE_CUT_MARKER = " [… rest of the line cut by flakebot]".encode()

Warn = Callable[[str, str], None]


class SplitError(ValueError):
    """The input cannot be split at all (unreadable, wrong type, not the announced format)."""


def source_name(source: Any) -> str | None:
    if isinstance(source, (str, Path)):
        return None if str(source) == "-" else Path(source).name
    name = getattr(source, "name", None)
    return Path(name).name if isinstance(name, str) and not name.startswith("<") else None


def raw_chunks(source: Any) -> Iterator[bytes]:
    """The bytes of ``source`` in chunks, as they come."""
    if isinstance(source, (str, Path)):
        if str(source) == "-":
            yield from _read_stream(sys.stdin.buffer)
            return
        try:
            stream = open(source, "rb")  # noqa: SIM115 - closed below, also when the consumer stops early
        except OSError as exc:
            raise SplitError(f"cannot read {source}: {exc.strerror or exc}") from exc
        with stream:
            yield from _read_stream(stream)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        yield bytes(source)
    elif hasattr(source, "read"):
        yield from _read_stream(source)
    elif isinstance(source, Iterable) and not isinstance(source, str):
        for chunk in source:
            if isinstance(chunk, str):
                raise SplitError("log chunks must be bytes, got str (open the file in binary mode)")
            yield bytes(chunk)
    else:
        raise SplitError(f"cannot read a log from {type(source).__name__}")


def _read_stream(stream: IO[bytes]) -> Iterator[bytes]:
    read = getattr(stream, "read1", None) or stream.read
    while True:
        chunk = read(READ_BYTES)
        if not chunk:
            return
        if isinstance(chunk, str):
            raise SplitError("the log stream must be binary, got text (open it with 'rb')")
        yield chunk


def gunzip_if_needed(chunks: Iterator[bytes], warn: Warn) -> Iterator[bytes]:
    """Pass chunks through, decompressing them when the stream starts with gzip's magic bytes."""
    first = b""
    for chunk in chunks:
        first += chunk
        if len(first) >= 2:
            break
    if first[:2] != b"\x1f\x8b":
        if first:
            yield first
        yield from chunks
        return
    inflater = zlib.decompressobj(wbits=47)
    pending = first
    while True:
        try:
            while pending:
                # bounded output per call: a small bomb cannot blow up memory
                out = inflater.decompress(pending, READ_BYTES)
                pending = inflater.unconsumed_tail
                if out:
                    yield out
                if inflater.eof:
                    pending = b""
        except zlib.error as exc:
            warn("gzip", f"corrupt gzip data, kept what came before it ({exc})")
            return
        if inflater.eof:
            return
        pending = next(chunks, b"")
        if not pending:
            warn("truncated", "the gzip stream ended early: the log is truncated")
            return


def blocks(
    chunks: Iterable[bytes], warn: Warn, *, block_bytes: int = 0, max_line: int = 0
) -> Iterator[bytes]:
    """Re-cut chunks into blocks that end at a line break; overlong lines are cut with a marker."""
    block_bytes = block_bytes or BLOCK_BYTES
    max_line = max_line or MAX_LINE_BYTES
    step = max(1, min(READ_BYTES, block_bytes))
    buf = bytearray()
    skipping = False  # inside the unkept rest of an overlong line
    for chunk in chunks:
        view = memoryview(chunk)
        for offset in range(0, len(view), step):
            piece = view[offset : offset + step]
            if skipping:
                newline = bytes(piece).find(b"\n")
                if newline < 0:
                    continue
                piece = piece[newline:]  # keep the line break: it ends the cut line
                skipping = False
            buf += piece
            last_newline = buf.rfind(b"\n")
            if len(buf) - last_newline - 1 > max_line:
                # the unfinished last line is too long: keep its head, skip the rest of it
                cut = _char_boundary(buf, last_newline + 1 + max_line)
                warn("overlong", f"lines longer than {max_line} bytes were cut")
                yield bytes(buf[:cut]) + LINE_CUT_MARKER + b"\n"
                buf.clear()
                skipping = True
            elif len(buf) >= block_bytes and last_newline >= 0:
                yield bytes(buf[: last_newline + 1])
                del buf[: last_newline + 1]
    if buf and not skipping:
        yield bytes(buf)


def _char_boundary(buf: bytearray, pos: int) -> int:
    """Move ``pos`` back so that it does not split a UTF-8 sequence."""
    for _ in range(3):
        if pos <= 0 or (buf[pos] & 0xC0) != 0x80:
            break
        pos -= 1
    return pos
