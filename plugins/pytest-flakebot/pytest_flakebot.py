"""pytest-flakebot: run the tests flakebot has quarantined as non-strict xfails (or skip them). Opt-in.

Installed, it registers the ``flakebot`` pytest plugin, which does nothing until a quarantine list is
given (``-p pytest_flakebot`` loads it where plugin autoloading is off)::

    pytest --flakebot-quarantine=quarantine.json              # or an http(s) URL
    FLAKEBOT_QUARANTINE=https://bot.example/quarantine.json pytest
    pytest --flakebot-quarantine=q.json --flakebot-quarantine-mode=skip

When the flakebot service guards its list with a read token, set ``FLAKEBOT_READ_TOKEN`` in the test
run's environment too: it is sent as ``Authorization: Bearer`` to that URL only (never to a redirect).

flakebot quarantines a test in the CI jobs where it is flaky (its ``scope``). The plugin applies an
entry with a scope only in those jobs, so it needs the name of the job it runs in, as the forge shows
it: ``--flakebot-job``, else ``$FLAKEBOT_JOB``, else GitLab's ``$CI_JOB_NAME`` (GitHub has no variable
with a job's display name: set ``FLAKEBOT_JOB: "tests (${{ matrix.os }})"`` in the workflow). Without a
job name, every entry applies in every job, and the report's header says so.

The list is the JSON that ``flakebot quarantine-list --json`` prints and the service serves at
``GET /quarantine.json``::

    {"version": 1, "generated_at": "2024-06-01T12:00:00Z",
     "tests": [{"test": "tests/test_x.py::test_y", "repo": "owner/name",
                "issue_url": "https://github.com/owner/name/issues/12", "since": "2024-05-30T08:00:00Z",
                "scope": {"jobs": ["tests (windows)"]}, "expires_at": "2024-06-29T08:00:00Z"}]}

``version`` must be 1; ``tests`` is a list; each entry needs a non-empty ``test`` string; ``repo``,
``issue_url``, ``since`` and ``expires_at`` are optional strings; ``scope`` is optional, an object
whose ``jobs`` is a list of job names (no ``jobs``, or no ``scope``: every job). An entry whose
``expires_at`` has passed is ignored (a list saved long ago stops quarantining). Unknown fields, of the
document, of an entry or of its scope, are ignored whatever their type, so the service can add some
without breaking the plugins already installed.

In the default ``xfail`` mode a quarantined test still runs and reports (xfail/xpass, non-strict), so it
keeps producing history; ``skip`` does not run it. A list that cannot be read (unreachable URL, broken
file, wrong version) never stops the run and never passes silently: every test runs, and the header and
the end of the report say why.

Names match a collected test when they are its node id (``tests/test_x.py::TestC::test_m``, with or
without a ``[param]`` part, or the same id with fewer leading directories), or a dotted name of at least
two parts that ends its dotted path (``tests.test_x.TestC.test_m``, ``TestC.test_m``,
``test_x.test_m``), or the unittest form ``test_m (tests.test_x.TestC)``. A bare ``test_m`` matches
nothing: it is too ambiguous.

Standard library and pytest only: this module is imported into other projects' test runs.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

__version__ = "0.1.0"

ENV_VAR = "FLAKEBOT_QUARANTINE"
TOKEN_VAR = "FLAKEBOT_READ_TOKEN"  # noqa: S105 - the variable's name, not a token
JOB_VARS = ("FLAKEBOT_JOB", "CI_JOB_NAME")  # the job this run is: ours, then GitLab's
VERSION = 1  # of the quarantine list
MODES = ("xfail", "skip")
MAX_BYTES = 10 * 1024 * 1024
TIMEOUT_SECONDS = 10.0
_UNITTEST = re.compile(r"^(?P<name>[^\s()]+) \((?P<cls>[^\s()]+)\)$")


# --- the quarantine list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantinedTest:
    test: str
    repo: str | None = None
    issue_url: str | None = None
    since: str | None = None  # ISO-8601: when the quarantine issue was opened
    jobs: tuple[str, ...] | None = None  # the jobs it is quarantined in; None: every job
    expires_at: str | None = None  # ISO-8601: when the quarantine ends unless renewed

    def applies_in(self, job: str | None) -> bool:
        """Whether the entry quarantines the test in ``job`` (None: unknown, every entry applies)."""
        return self.jobs is None or job is None or job.strip() in self.jobs

    def expired(self, now: datetime) -> bool:
        if not self.expires_at:
            return False
        try:
            moment = datetime.fromisoformat(self.expires_at.strip().replace("Z", "+00:00"))
        except ValueError:
            return False  # unreadable: kept, as the service meant it
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)) <= now  # noqa: UP017 - Python 3.9+


def parse_quarantine_list(data: Any) -> tuple[list[QuarantinedTest], list[str]]:
    """The entries of a parsed quarantine list, and a description of each entry that was left out.

    Raises ValueError when the document as a whole cannot be used (wrong version, no test list).
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("version") != VERSION:
        raise ValueError(f"unsupported quarantine list version {data.get('version')!r} (this plugin reads 1)")
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise ValueError("'tests' must be a list")
    entries, problems = [], []
    for index, item in enumerate(tests):
        if not isinstance(item, dict) or not isinstance(item.get("test"), str) or not item["test"].strip():
            problems.append(f"entry {index}: needs a non-empty 'test' string")
            continue
        optional = {key: item.get(key) for key in ("repo", "issue_url", "since", "expires_at")}
        bad = [key for key, value in optional.items() if value is not None and not isinstance(value, str)]
        if bad:
            problems.append(f"entry {index}: {', '.join(bad)} must be strings")
            continue
        scope = item.get("scope")
        jobs = scope.get("jobs") if isinstance(scope, dict) else None
        if jobs is not None and not (
            isinstance(jobs, list) and jobs and all(isinstance(j, str) and j.strip() for j in jobs)
        ):
            problems.append(f"entry {index}: scope.jobs must be a non-empty list of job names")
            continue
        entries.append(
            QuarantinedTest(
                item["test"].strip(), jobs=tuple(j.strip() for j in jobs) if jobs else None, **optional
            )
        )
    return entries, problems


def loads(text: str | bytes) -> tuple[list[QuarantinedTest], list[str]]:
    """Parse the JSON text of a quarantine list; ValueError with the reason when it is unusable."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    return parse_quarantine_list(data)


# --- what the plugin shows of a source: no credentials ---------------------------------------------

_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@")
_SECRET_QUERY = re.compile(r"(?i)([?&][^=&#\s]*(?:token|secret|key|passw|auth|sig)[^=&#\s]*=)[^&#\s]*")


def masked(text: str) -> str:
    """``text`` without the read token, a URL's password or a secret-looking query parameter's value."""
    token = os.environ.get(TOKEN_VAR, "").strip()
    if len(token) >= 6:
        text = text.replace(token, "***")
    return _SECRET_QUERY.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


# --- the plugin --------------------------------------------------------------------------------------


@dataclass
class _State:
    source: str
    mode: str
    job: str | None = None  # the CI job this run is (None: unknown)
    entries: dict[str, QuarantinedTest] = field(default_factory=dict)  # key -> entry
    error: str | None = None
    problems: list[str] = field(default_factory=list)
    ignored: int = 0  # bare names
    other_jobs: int = 0  # entries for other jobs than this one
    expired: int = 0  # entries whose quarantine has expired
    unscoped_here: int = 0  # entries for some jobs only, applied everywhere because the job is unknown
    applied: list[str] = field(default_factory=list)  # node ids quarantined in this run


MODULE_NAME = "pytest_flakebot"  # the name ``-p pytest_flakebot`` registers this module under
ENTRY_NAME = "flakebot"  # the pytest11 entry point
ACTIVE_NAME = "flakebot-quarantine"  # the hooks that act, registered only when a list is given


def _add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("flakebot", "flakebot quarantine")
    group.addoption(
        "--flakebot-quarantine",
        metavar="FILE_OR_URL",
        default=None,
        help=f"flakebot quarantine list (JSON file or http(s) URL); default: ${ENV_VAR}.",
    )
    group.addoption(
        "--flakebot-quarantine-mode",
        choices=MODES,
        default="xfail",
        help="xfail (default, non-strict: the test still runs) or skip quarantined tests.",
    )
    group.addoption(
        "--flakebot-job",
        metavar="NAME",
        default=None,
        help="the CI job this run is, as the forge names it, for entries quarantined in some jobs only; "
        f"default: ${JOB_VARS[0]}, else ${JOB_VARS[1]} (GitLab).",
    )


def _configure(config: pytest.Config) -> None:
    source = config.getoption("flakebot_quarantine", None) or os.environ.get(ENV_VAR, "").strip()
    if not source or config.pluginmanager.has_plugin(ACTIVE_NAME):
        return
    job = config.getoption("flakebot_job", None) or next(
        (os.environ[name].strip() for name in JOB_VARS if os.environ.get(name, "").strip()), None
    )
    state = _State(source=source, mode=config.getoption("flakebot_quarantine_mode", "xfail"), job=job)
    _load(state)
    config.pluginmanager.register(_Quarantine(state), ACTIVE_NAME)


# The module's own hooks, for ``-p pytest_flakebot``. pluggy refuses one module under two names, so
# the entry point is a separate object (``entry_point`` below): whichever is registered first adds the
# options, and the module, when it is loaded, does the configuring.
def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.has_plugin(ENTRY_NAME):
        _add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    _configure(config)


class _EntryPoint:
    """The ``flakebot`` pytest11 entry point: inert unless a quarantine list is given."""

    def pytest_addoption(self, parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
        if not pluginmanager.has_plugin(MODULE_NAME):
            _add_options(parser)

    def pytest_configure(self, config: pytest.Config) -> None:
        if not config.pluginmanager.has_plugin(MODULE_NAME):
            _configure(config)


entry_point = _EntryPoint()


def read_source(source: str) -> bytes:
    """The bytes of a file or an http(s) URL, at most MAX_BYTES; OSError/ValueError with the reason."""
    if re.match(r"https?://", source, re.I):
        request = urllib.request.Request(source, headers={"Accept": "application/json"})  # noqa: S310
        token = os.environ.get(TOKEN_VAR, "").strip()
        if token:
            request.add_unredirected_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                data = response.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise OSError(f"unreachable: {exc.reason}") from None
    else:
        path = Path(source)
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    return data


def entry_key(name: str) -> str | None:
    """The key a quarantine entry is matched on; None for a bare name."""
    name = name.strip()
    if "::" in name or name.endswith(".py"):
        return "id:" + name
    match = _UNITTEST.match(name)
    if match:
        name = f"{match['cls']}.{match['name']}"
    if "." not in name.partition("[")[0]:
        return None
    return "dotted:" + name


def item_keys(nodeid: str) -> set[str]:
    """Every key under which a collected test can be quarantined."""
    keys = set()
    base, bracket, params = nodeid.partition("[")
    for candidate in (nodeid, base) if bracket else (nodeid,):
        keys.add("id:" + candidate)
        for index, char in enumerate(candidate.split("::")[0]):
            if char == "/":
                keys.add("id:" + candidate[index + 1 :])
    path, _, rest = base.partition("::")
    module = path[:-3] if path.endswith(".py") else path
    parts = [*module.replace("\\", "/").split("/"), *(rest.split("::") if rest else [])]
    parts = [p for p in parts if p]
    for start in range(len(parts) - 1):
        dotted = ".".join(parts[start:])
        keys.add("dotted:" + dotted)
        if bracket:
            keys.add("dotted:" + dotted + bracket + params)
    return keys


def _load(state: _State) -> None:
    try:
        entries, state.problems = loads(read_source(state.source))
    except (OSError, ValueError) as exc:
        state.error = masked(str(exc))
        return
    now = datetime.now(timezone.utc)  # noqa: UP017 - datetime.UTC is Python 3.11+, the plugin runs on 3.9+
    for entry in entries:
        key = entry_key(entry.test)
        if key is None:
            state.ignored += 1
        elif entry.expired(now):
            state.expired += 1
        elif not entry.applies_in(state.job):
            state.other_jobs += 1
        else:
            state.unscoped_here += entry.jobs is not None and state.job is None
            state.entries.setdefault(key, entry)


class _Quarantine:
    """The hooks that apply a quarantine list; registered by ``_configure`` when one is given."""

    def __init__(self, state: _State):
        self.state = state

    def source(self) -> str:
        return masked(self.state.source)

    def pytest_report_header(self) -> str:
        state = self.state
        if state.error:
            return f"flakebot quarantine: NOT APPLIED, running every test: {self.source()}: {state.error}"
        unusable = len(state.problems) + state.ignored
        extra = f", {unusable} entries unusable" if unusable else ""
        if state.job is not None:
            extra += f", job {state.job!r}" + (
                f": {state.other_jobs} for other jobs" if state.other_jobs else ""
            )
        elif state.unscoped_here:
            extra += (
                f", job unknown: {state.unscoped_here} quarantined in some jobs only applied in this one too "
                f"(set {JOB_VARS[0]})"
            )
        if state.expired:
            extra += f", {state.expired} expired"
        return (
            f"flakebot quarantine: {len(state.entries)} tests from {self.source()} (mode {state.mode}{extra})"
        )

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        state = self.state
        if not state.entries:
            return
        for item in items:
            entry = next(
                (state.entries[k] for k in sorted(item_keys(item.nodeid)) if k in state.entries), None
            )
            if entry is None:
                continue
            reason = "quarantined by flakebot" + (f": {entry.issue_url}" if entry.issue_url else "")
            if state.mode == "skip":
                item.add_marker(pytest.mark.skip(reason=reason))
            else:
                item.add_marker(pytest.mark.xfail(reason=reason, strict=False))
            state.applied.append(item.nodeid)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        state = self.state
        if state.error:
            terminalreporter.write_sep("=", "flakebot quarantine NOT APPLIED", yellow=True)
            terminalreporter.write_line(f"{self.source()}: {state.error}")
            terminalreporter.write_line("every test ran; fix the quarantine list or its URL")
            return
        problems = list(state.problems)
        if state.ignored:
            problems.append(f"{state.ignored} bare test names (no module or class) were ignored")
        if not problems and not state.applied:
            return
        terminalreporter.write_sep("-", "flakebot quarantine")
        for problem in problems:
            terminalreporter.write_line(f"unusable entry: {problem}", yellow=True)
        if state.applied:
            shown = ", ".join(state.applied[:10]) + (" …" if len(state.applied) > 10 else "")
            terminalreporter.write_line(f"{len(state.applied)} tests quarantined ({state.mode}): {shown}")
