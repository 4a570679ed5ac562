"""Turning a test's log into the text the flake model compares.

Three steps, each switchable so that Cockpit's original behaviour stays available:

1. **Line normalisation** (`normalize_line`): Cockpit's substitutions in Cockpit's order — 128/64/56/40/32
   hex-digit hashes (lower and upper case) to ``x…x``/``X…X``, GUIDs to an ``x`` pattern, every digit run
   to ``000``, file paths to their base name. The ``extended`` flavour (flakebot's default) first strips
   ANSI colour codes and CI timestamps and maps memory addresses (``0x7ffd…``) and short hex ids mixing
   letters and digits (git and container ids) to fixed tokens, so two runs of the same failure
   normalise to the same lines.
2. **Stop lines** (`StopLines`): lines found in more than ``max_df`` (0.17) of the training logs carry
   no information about *which* failure this is; they are dropped, as Cockpit did.
3. **Focus** (`error_region`, `failure_lines`, `tail_bytes`): Cockpit compared whole logs, but zlib only
   sees 32 KiB back, so two long logs compress independently, and most of a log is output that differs
   from run to run. flakebot keeps what explains the failure: in the log's last error region (from the
   first failure marker of its last run of markers), the lines that say *what* failed (an error
   vocabulary, exception names, errno codes) and *where* (stack frames, ``file:line``), once each,
   capped at ``focus_bytes`` keeping the end. The test's own name is masked first
   (`mask_test_name`): which test failed is the history score's concern; the log distance compares
   causes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

# --- 1. line normalisation ---------------------------------------------------------------------

# Cockpit's substitutions, in Cockpit's order (cockpituous learn/extractor.py, NOISE): the hashes ...
_HASHES: list[tuple[re.Pattern[str], str]] = []
for _n in (128, 64, 56, 40, 32):
    _HASHES.append((re.compile(f"[0-9a-f]{{{_n}}}"), "x" * _n))
    _HASHES.append((re.compile(f"[0-9A-F]{{{_n}}}"), "X" * _n))
_ANY_HASH = re.compile(r"[0-9a-fA-F]{32}")  # none of the ten can match without such a run
# ... then GUIDs, digits and paths.
_COCKPIT: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    ),
    (re.compile(r"\d+"), "000"),
    (re.compile(r"(/[a-zA-Z0-9_\.-]+)+/(?P<base>[a-zA-Z0-9_.-]+)\b"), r"\g<base>"),
]

# flakebot's additions, applied before Cockpit's.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CI_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ")  # GitHub Actions line prefix
_EXTENDED: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "ADDRESS"),
    # hex ids of 7+ characters that mix letters and digits (git short SHAs, container ids)
    (re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,}\b"), "xxxxxxx"),
]

# A cheap test: only lines with a digit, a slash or a long hex run can change under the substitutions.
_MAY_CHANGE = re.compile(r"[0-9/]|[0-9a-fA-F]{32}")


def normalize_line(line: str, flavour: str = "extended") -> str:
    """Normalise one log line (``flavour`` is ``extended`` or Cockpit's original ``cockpit``)."""
    line = line.strip()
    if flavour == "extended":
        if "\x1b" in line:
            line = _ANSI.sub("", line).strip()
        line = _CI_TIMESTAMP.sub("", line)
        if not _MAY_CHANGE.search(line):
            return line
        for pattern, replacement in _EXTENDED:
            line = pattern.sub(replacement, line)
    elif not _MAY_CHANGE.search(line):
        return line
    if _ANY_HASH.search(line):
        for pattern, replacement in _HASHES:
            line = pattern.sub(replacement, line)
    for pattern, replacement in _COCKPIT:
        line = pattern.sub(replacement, line)
    return line


def split_lines(log: str) -> list[str]:
    """Cockpit's line split: ``\\r\\n`` and ``\\r`` count as line ends."""
    return log.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def normalize_log(log: str, flavour: str = "extended", max_lines: int | None = None) -> list[str]:
    """The normalised lines of a log; with ``max_lines`` only the last ones (the failure is at the end)."""
    lines = split_lines(log)
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[-max_lines:]
    return [normalize_line(line, flavour) for line in lines]


# --- 2. stop lines -----------------------------------------------------------------------------


class StopLines:
    """Lines present in more than ``max_df`` of the training logs (Cockpit's CountVectorizer
    ``max_df=0.17`` with one whole line a token: only its stop words were ever used).

    With ``keep_errors`` (flakebot's default) lines that say what failed (see ``FAILURE_MARKER``) are
    never stop lines: in Cockpit's own sample the two most common failure causes, ``Error: timeout``
    (89 of 200 logs) and an image download failure (75 of 200), were deleted as "noise", so logs of the
    same frequent failure no longer looked alike.
    """

    def __init__(self, max_df: float = 0.17, keep_errors: bool = True):
        self.max_df = max_df
        self.keep_errors = keep_errors
        self.lines: frozenset[str] = frozenset()

    def fit(self, logs: Iterable[Sequence[str]]) -> StopLines:
        df: Counter[str] = Counter()
        n = 0
        for lines in logs:
            df.update(set(lines))
            n += 1
        limit = self.max_df * n
        stop = (line for line, count in df.items() if count > limit)
        if self.keep_errors:
            stop = (line for line in stop if not FAILURE_MARKER.search(line))
        self.lines = frozenset(stop)
        return self

    def drop(self, lines: Iterable[str]) -> list[str]:
        stop = self.lines
        return [line for line in lines if line not in stop]


# --- 3. focus ----------------------------------------------------------------------------------

# Where the last error region of a log starts: lines that only a failing run prints.
FAILURE_MARKER = re.compile(
    r"Traceback \(most recent call last\)|^(?:E\s+|FAIL|FAILED|ERROR|not ok\b|--- FAIL|panic:|fatal:)"
    r"|\b(?:Error|Exception|FAILED|Failure|AssertionError|Timeout|timed out|Killed|Segmentation fault"
    r"|core dumped|TEST-UNEXPECTED-\w+|PROCESS-CRASH|##\[error\])",
)
# Lines that say what failed: a broad error vocabulary (any case) ...
_ERROR_WORDS = re.compile(  # matched against the lower-cased line (much faster than re.IGNORECASE)
    r"\b(?:errors?|exception|fail(?:s|ed|ure)?|fatal|panic|timeout|timed out|refused|reset|killed"
    r"|denied|unable|cannot|can't|not found|abort(?:ed)?|assert\w*|expected|got|received|exceeded|missing"
    r"|invalid|unexpected|deadline|crash\w*|segfault|oom\w*|hang up|unreachable|no such|undefined"
    r"|mismatch\w*|in use|stale|errno|eof|rate limit|too many requests|out of memory|no space|want)\b"
)
# ... plus exception class names and errno codes (case-sensitive: "export" is not an errno).
_ERROR_CASED = re.compile(
    r"[a-z](?:Error|Exception|Failure|Fault)\b"
    r"|\bE(?:CONN\w+|TIMEDOUT|ADDRINUSE|NOENT|ACCES|PIPE|NOSPC|NOMEM|HOSTUNREACH|NETUNREACH|AI_AGAIN)\b"
)
# Lines that say where it failed: stack frames and file:line locations (Python, JS, Go, Java, ...).
_FRAME = re.compile(
    r'^\s*File ".*", line \d|^\s*at \S'
    r"|\b[\w.-]+\.(?:py|go|js|jsx|mjs|ts|tsx|java|kt|scala|rb|rs|c|cc|cpp|h|hpp|cs|php|sh|pl):\d+"
)
# Test-result lines of the runners: once the test's name is masked they say nothing about the cause.
_STATUS = re.compile(
    r"^(?:Traceback \(most recent call last\):|not ok \d+|ok \d+|--- (?:FAIL|PASS|SKIP):|=== (?:RUN|PAUSE|CONT)"
    r"|_{3,} .* _{3,}$|●|FAILED\s*$|FAIL\s*$)"
)
# pytest's short summary repeats the message after the node id: keep the message.
_SUMMARY_PREFIX = re.compile(r"^(?:FAILED|ERROR) \S+ - ")
# Lines before the first marker of the last error region that still belong to it.
_REGION_CONTEXT = 30
# Markers more than this many lines apart start a new error region.
_REGION_GAP = 40
# A text with no error line and no frame falls back to the region's last lines.
_FALLBACK_LINES = 10


def is_error_line(line: str) -> bool:
    return bool(_ERROR_WORDS.search(line.lower()) or _ERROR_CASED.search(line))


def usable_lines(region: Sequence[str]) -> list[str]:
    """The lines of a raw region that `failure_lines` can use: error lines, frames and the last
    lines (its fallback), in order. Selecting them before normalising saves normalising the rest."""
    tail = len(region) - 2 * _FALLBACK_LINES
    kept = []
    for i, line in enumerate(region):
        plain = _ANSI.sub("", line) if "\x1b" in line else line
        if i >= tail or is_error_line(plain) or _FRAME.search(plain):
            kept.append(line)
    return kept


def error_region(lines: Sequence[str], context: int = _REGION_CONTEXT) -> list[str]:
    """The failing part of a normalised log: its last error region, to the end of the log.

    The region starts ``context`` lines before the first marker of the last run of failure markers
    (markers at most 40 lines apart) and runs to the end, because what a test prints after its
    traceback still belongs to the failure. A log without any marker is kept whole.
    """
    markers = [i for i, line in enumerate(lines) if FAILURE_MARKER.search(line)]
    if not markers:
        return list(lines)
    start = markers[-1]
    for i in reversed(markers[:-1]):
        if start - i > _REGION_GAP:  # far apart: an earlier, unrelated error
            break
        start = i
    return list(lines[max(0, start - context) :])


def failure_lines(region: Sequence[str], stop: StopLines) -> list[str]:
    """The lines of a region that describe the failure: what failed and where, once each.

    Error lines are kept even when common (``Error: timeout`` is a cause, not noise); frames are
    kept unless they are stop lines (the harness's own frames); runner status lines and everything
    else a test prints (application logs, progress, set-up) are left out: they make two runs of the
    same failure look different. Without any error line or frame, the region's last lines are used.
    """
    out: list[str] = []
    seen: set[str] = set()
    for raw in region:
        line = _SUMMARY_PREFIX.sub("", raw)
        if line in seen or _STATUS.match(line):
            continue
        if is_error_line(line) or (_FRAME.search(line) and line not in stop.lines):
            seen.add(line)
            out.append(line)
    if not out:
        out = [line for line in region if line and not _STATUS.match(line)][-_FALLBACK_LINES:]
    return out


def tail_bytes(lines: Sequence[str], limit: int) -> list[str]:
    """The last lines of ``lines`` that fit in ``limit`` characters (at least one, itself cut)."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > limit and kept:
            break
        kept.append(line[-limit:])
    kept.reverse()
    return kept


# --- the test's own name -----------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")


def name_parts(test: str) -> list[str]:
    """The parts of a test's name that identify it in its own log, longest first.

    The whole name, and its identifier-like parts: with an underscore, an inner capital, or a
    ``test`` prefix (``check_journal``, ``TestJournal``, ``testBasic``). Plain words of sentence-like
    names (Jest's "creates the user") are not parts: masking "user" would erase ordinary text.
    """
    parts = {test.strip()} if test.strip() else set()
    for ident in _IDENT.findall(test):
        if "_" in ident.strip("_") or re.search(r"[a-z][A-Z]", ident) or ident.lower().startswith("test"):
            parts.add(ident)
    return sorted(parts, key=len, reverse=True)


def mask_test_name(log: str, test: str) -> str:
    """Replace the test's own name in its log by ``TEST``: two tests failing the same way should look
    alike; which test failed is the history score's business, not the log distance's."""
    parts = name_parts(test)
    if not parts:
        return log
    return re.sub("|".join(re.escape(p) for p in parts), "TEST", log)
