"""Turning a test's log into the text the flake model compares.

1. **The failing part** (`failing_part`): what a maintainer would read to see why the job failed —
   CI markup removed first (the text after a line's last carriage return, ANSI codes, GitLab
   ``section_start/section_end`` markers, GitHub ``##[group]`` markers and timestamps), then the last
   error region found with a case-insensitive failure vocabulary (Rust/cargo, Go, Java, JavaScript,
   Python, TAP and every runner's timeouts, kills and full disks), the runner's final failure line
   always kept; without any marker, windows around the error lines near the end or the last lines;
   capped by lines. The model trains and classifies on it, the comment shows it, the store keeps it.
2. **Line normalisation** (`normalize_line`): Cockpit's substitutions in Cockpit's order — 128/64/56/40/32
   hex-digit hashes (lower and upper case) to ``x…x``/``X…X``, GUIDs to an ``x`` pattern, every digit run
   to ``000``, file paths to their base name. The ``extended`` flavour (flakebot's default) first strips
   ANSI colour codes and CI timestamps and maps memory addresses (``0x7ffd…``) and short hex ids mixing
   letters and digits (git and container ids) to fixed tokens, so two runs of the same failure
   normalise to the same lines.
3. **Stop lines** (`StopLines`): lines found in more than ``max_df`` (0.17) of the training logs carry
   no information about *which* failure this is; they are dropped, as Cockpit did — except lines that
   say what failed.
4. **What and where** (`failure_lines`): of the failing part, the compression distance compares the
   lines that say *what* failed (an error vocabulary, exception names, errno codes) and *where* (stack
   frames, ``file:line``), once each. The test's own name is masked first (`mask_test_name`) when it
   looks like an identifier: which test failed is the history score's concern; the log distance
   compares causes.
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

    With ``keep_errors`` (flakebot's default) lines that say what failed (`is_failure_marker`) are
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
            stop = (line for line in stop if not is_failure_marker(line))
        self.lines = frozenset(stop)
        return self

    def drop(self, lines: Iterable[str]) -> list[str]:
        stop = self.lines
        return [line for line in lines if line not in stop]


# --- 3. focus ----------------------------------------------------------------------------------

# Lines that say what failed: a broad error vocabulary (any case) ...
_ERROR_WORDS = re.compile(  # matched against the lower-cased line (much faster than re.IGNORECASE)
    r"\b(?:errors?|exception|fail(?:s|ed|ure)?|fatal|panic|timeout|timed out|refused|reset|killed"
    r"|denied|unable|cannot|can't|could not|couldn't|not found|abort(?:ed)?|assert\w*|expected|got|received|exceeded|missing"
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
# A text with no error line and no frame falls back to the region's last lines.
_FALLBACK_LINES = 10


def is_error_line(line: str) -> bool:
    return bool(_ERROR_WORDS.search(line.lower()) or _ERROR_CASED.search(line))


def is_location_line(line: str) -> bool:
    """A line that says where it failed (a stack frame, ``file:line``) rather than what failed."""
    return bool(_FRAME.search(line))


def is_status_line(line: str) -> bool:
    """A test runner's result line (``--- FAIL:``, ``not ok 3``, pytest's ``___ test_x ___``)."""
    return bool(_STATUS.match(line))


def summary_message(line: str) -> str:
    """pytest's short-summary line without its ``FAILED <node id> - `` prefix: the message."""
    return _SUMMARY_PREFIX.sub("", line)


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


# --- the failing part of a CI log --------------------------------------------------------------
#
# One function (`failing_part`) picks what a maintainer would read to see why a job failed; the model
# trains and classifies on it, the comment shows it, and the store keeps it for retraining.

# CI markup that is not part of what a reader sees on the job page
_GITLAB_SECTION = re.compile(r"section_(?:start|end):\d+:[A-Za-z0-9_.-]+(?:\[[^\]]*\])?")
_GITHUB_GROUP = re.compile(r"^##\[(?:group|endgroup)\]")
_GITHUB_COMMAND = re.compile(r"^##\[(?:command|debug|section)\]")

# What only a failing run prints, matched case-insensitively against the visible, lower-cased line:
# Rust/cargo, Go, Java (Maven, Gradle), JavaScript (npm, Jest), Python (pytest, unittest), TAP, and
# what every runner says of a killed, timed-out or starved job.
_MARKER = re.compile(
    r"^(?:(?:error|fatal|panic|fail(?:ed|ure)?|not ok)\b|e {2,}|\[error\]|npm err!|\*\*\* )"
    r"|\berror(?:\[[a-z]*\d+\])?:"  # "error:", Rust's "error[E0425]:", "SyntaxError:" (below)
    r"|traceback \(most recent call last\)|--- fail:|^fail\t|panicked at|could not compile"
    r"|test result: failed|tests? failed|\d+ (?:failed|failing|errors?)\b|build fail(?:ed|ure)"
    r"|failures?:\s*(?:[1-9]|$)|assertion(?:error| failed)|exception\b|timed? ?out\b|deadline exceeded"
    r"|\bkilled\b|segmentation fault|core dumped|no space left|out of memory|oomkilled"
    r"|exit (?:code|status)[: ]+[1-9]|job failed|test-unexpected-|process-crash|##\[error\]"
)
# Exception class names (case matters: "SyntaxError", not "thiserror" in a crate name)
_MARKER_CASED = re.compile(r"[a-z](?:Error|Exception|Failure)\b")
# The runner's own last word on a failed job: it carries timeouts and system failures.
_RUNNER_FAILURE = re.compile(
    r"^(?:ERROR: Job failed|##\[error\]|Error: Process completed with exit code|"
    r"ERROR: Build failed|The job (?:running on runner|exceeded)|Error: The operation was canceled)"
)

SCAN_LINES = 5000  # a failure is at the end: only the last lines of a log are read
PART_LINES = 120  # the failing part is capped by lines (never the whole log) ...
LINE_CHARS = 300  # ... and each line by characters (a linker's command line can be 20 KB)
FALLBACK_LINES = 50  # no marker: the last visible lines ...
ERROR_WINDOW_LINES = 150  # ... or windows around the error lines among the last 150
_WINDOW = 2  # lines kept on either side of an error line in that fallback
_CONTEXT = 10  # lines kept before the first marker of the last error region
_GAP = 40  # markers farther apart than this start a new error region


def visible_line(raw: str) -> str:
    """What a reader of the job page sees of one raw log line: the text after its last carriage
    return (a progress bar's final state), without ANSI codes, GitLab section markers, GitHub
    group markers and timestamps, right-stripped."""
    if "\r" in raw:
        parts = [p for p in raw.split("\r") if _ANSI.sub("", p).strip()]
        raw = parts[-1] if parts else ""
    if "\x1b" in raw:
        raw = _ANSI.sub("", raw)
    if "section_" in raw:
        raw = _GITLAB_SECTION.sub("", raw)
    raw = _CI_TIMESTAMP.sub("", raw)
    if raw.startswith("##["):
        raw = _GITHUB_COMMAND.sub("", _GITHUB_GROUP.sub("", raw))
    return raw.rstrip()


def visible_lines(log: str, max_lines: int = SCAN_LINES) -> list[str]:
    """The non-empty visible lines of the end of a log (at most ``max_lines`` raw lines are read),
    each cut to its first ``LINE_CHARS`` characters (marked with " …")."""
    raw = log.split("\n")
    if len(raw) > max_lines:
        raw = raw[-max_lines:]
    text = "\n".join(raw)
    if "\x1b" in text:  # once over the text: most lines need nothing more
        text = _ANSI.sub("", text)
    out = []
    for line in text.split("\n"):
        if line.endswith("\r"):  # a CRLF line end
            line = line[:-1]
        if "\r" in line or "section_" in line or line.startswith(("##[", "2")):
            line = visible_line(line)
        else:
            line = line.rstrip()
        if line.strip():
            out.append(_cap(line))
    return out


def _cap(line: str) -> str:
    # a capped line, read again, is capped to itself: the failing part of a failing part is the same
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + " …"


def is_failure_marker(line: str) -> bool:
    """True for a visible line that only a failing run prints (any case; see ``_MARKER``)."""
    return bool(_MARKER.search(line.lstrip().lower()) or _MARKER_CASED.search(line))


def _last_region(lines: Sequence[str]) -> int | None:
    """The first marker of the last run of failure markers (at most ``_GAP`` lines apart), read from
    the end: only as far back as the run goes."""
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if start is not None and start - i > _GAP:
            break
        if is_failure_marker(lines[i]):
            start = i
    return start


def failing_part(log: str, max_lines: int = PART_LINES) -> list[str]:
    """The visible lines that explain why a job or test failed, in order, at most ``max_lines``.

    * The last error region: from ``_CONTEXT`` lines before the first failure marker of the last run
      of markers (markers at most ``_GAP`` lines apart) to the end of the log. The runner's final
      failure line (GitLab's ``ERROR: Job failed…``, GitHub's ``##[error]Process completed…``) does
      not start a region of its own, but is always kept.
    * No marker: windows around the error lines among the last ``ERROR_WINDOW_LINES`` lines, else
      the last ``FALLBACK_LINES`` lines.
    * Longer than ``max_lines``: its first and last halves (the first error and the summary).
      Lines longer than ``LINE_CHARS`` keep their start (`visible_lines`).
    """
    lines = visible_lines(log)
    final: str | None = None
    tail_start = max(0, len(lines) - 5)
    for i in range(len(lines) - 1, tail_start - 1, -1):
        if _RUNNER_FAILURE.match(lines[i].lstrip()):
            final = lines[i]
            del lines[i]
            break
    start = _last_region(lines)
    if start is not None:
        part = lines[max(0, start - _CONTEXT) :]
    else:
        recent = lines[-ERROR_WINDOW_LINES:]
        near = sorted(
            {j for i, line in enumerate(recent) if is_error_line(line)
             for j in range(max(0, i - _WINDOW), min(len(recent), i + _WINDOW + 1))}
        )  # fmt: skip
        part = [recent[j] for j in near] if near else lines[-FALLBACK_LINES:]
    budget = max_lines - (final is not None)
    if len(part) > budget:
        part = part[: budget // 2] + part[len(part) - (budget - budget // 2) :]
    return [*part, final] if final is not None else part


# --- the test's own name -----------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")


def _identifier_like(word: str) -> bool:
    """``check_journal``, ``TestJournal``, ``testBasic``: an underscore between letters, an inner
    capital, or a ``test`` prefix (``testBasic``, not ``tests``). Plain words (``docker``, ``security``) and platform names
    (``x86_64``) are not: they are also a tool's, a service's or an image's name elsewhere in the log."""
    return bool(
        re.search(r"[A-Za-z]_[A-Za-z]", word)
        or re.search(r"[a-z][A-Z]", word)
        or re.match(r"[Tt]est[A-Z0-9_]", word)
    )


def name_parts(test: str) -> list[str]:
    """The parts of a test's name that identify it in its own log, longest first.

    Its identifier-like parts (`_identifier_like`), and the whole name when it has such a part. Plain words —
    a job called ``docker`` or ``security``, or Jest's "creates the user" — are never masked:
    masking them would erase ordinary text such as image and registry names.
    """
    name = test.strip()
    parts = set()
    for ident in _IDENT.findall(name):
        if _identifier_like(ident):
            parts.add(ident)
    if parts:  # the whole name is a test's name, not a plain word
        parts.add(name)
    return sorted(parts, key=len, reverse=True)


def mask_test_name(log: str, test: str) -> str:
    """Replace the test's own name in its log by ``TEST``: two tests failing the same way should look
    alike; which test failed is the history score's business, not the log distance's."""
    parts = name_parts(test)
    if not parts:
        return log
    return re.sub("|".join(re.escape(p) for p in parts), "TEST", log)


# --- signs of the infrastructure --------------------------------------------------------------

# What CI runners, container platforms, package registries and networks print when they, not the
# change, failed (by kind). General CI knowledge, not learnt from any one project: the model weighs it by how
# often it went with flaky failures in the repository's own history (``bot.model``).
_INFRA: dict[str, str] = {
    "runner system failure": r"\(system failure\)|runner system failure|lost communication with the server"
    r"|runner (?:has received a shutdown|was (?:stopped|terminated))|the operation was canceled",
    "job time limit": r"execution took longer than|exceeded the maximum execution time|job was cancelled after",
    "container platform": r"cannot connect to the docker daemon|failed to pull image|error pulling image"
    r"|imagepullbackoff|errimagepull|waiting for pod|containersnotready|unschedulable"
    r"|insufficient (?:cpu|memory)|\bevicted\b|no such container|toomanyrequests|pull rate limit"
    r"|uploading artifacts[^\n]*error|failed to upload artifacts",
    "disk full": r"no space left on device|disk quota exceeded|not enough space on the disk",
    "out of memory": r"out of memory|cannot allocate memory|oomkilled|oom-kill|exit (?:code|status):? 137\b"
    r"|signal: killed|killed signal 9",
    "network": r"could not resolve host|temporary failure in name resolution|name or service not known"
    r"|network is unreachable|connection reset by peer|connection timed out|tls handshake timeout"
    r"|i/o timeout|ssl error|early eof|the remote end hung up unexpectedly|rpc failed"
    r"|unable to access '?https?://|network failure|failed to download|could not read from remote"
    r"|\b(?:502 bad gateway|503 service unavailable|504 gateway time-?out)\b|too many requests"
    r"|rate limit exceeded|econnreset|etimedout|eai_again",
}
INFRA_SIGNS: dict[str, re.Pattern[str]] = {name: re.compile(p) for name, p in _INFRA.items()}


def infra_signs(lines: Sequence[str]) -> list[str]:
    """The kinds of infrastructure failure the lines show (``_INFRA``), in that order."""
    text = "\n".join(lines).lower()  # the patterns are lower case (faster than re.IGNORECASE)
    return [name for name, pattern in INFRA_SIGNS.items() if pattern.search(text)]
