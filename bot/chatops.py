"""``/flake`` commands in pull/merge request comments: parsing and the small decisions around them. Pure.

A command is a line of its own: ``/flake <command> [test]``, up to three spaces of indentation (four
make a Markdown code block). Lines inside fenced code blocks (````` ``` ````` or ``~~~``), indented code
and quotes (``>``) are not commands: quoting someone's command, or the bot's help, runs nothing. The
word ``/flake`` and the command are case-insensitive; a test name is taken as written (the rest of the
line, surrounding backticks removed). Commands without an argument ignore trailing words
(``/flake retry please``). A comment runs at most :data:`MAX_COMMANDS` commands, each once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_COMMANDS = 10
MAX_ARGUMENT = 500  # characters of a test name
MAX_DAYS = 400  # the longest history /flake backfill reads

# name -> (argument, what it does); the order is the help's
COMMANDS: dict[str, tuple[str, str]] = {
    "retrain": ("", "retrain this repository's model in the background and reply with the trial report"),
    "backfill": (
        "[days]",
        "read this repository's CI history of the last days (30 unless given) in the background, "
        "label its failures from their re-runs and learn a first model from them",
    ),
    "status": ("", "the active model: version, when and on what it was trained, its trial figures"),
    "explain": ("<test>", "the evidence for the latest verdict on a test of this change, and its history"),
    "flake": ("<test>", "label the test's failure on this change flaky (used by the next retrain)"),
    "real": ("<test>", "label the test's failure on this change a real failure (used by the next retrain)"),
    "quarantine": (
        "<test>",
        "quarantine the test in every job now, or renew its quarantine (it expires unless renewed)",
    ),
    "unquarantine": (
        "<test>",
        "end the test's quarantine; flakebot will not quarantine it again for a while",
    ),
    "retry": ("", "re-run the failed jobs of this change's latest runs, within the retry budget"),
    "help": ("", "this list"),
}
WRITE_PERMISSIONS = frozenset({"admin", "write"})

_COMMAND = re.compile(r"^ {0,3}/flake(?:[ \t]+(?P<name>\S+)(?:[ \t]+(?P<rest>.*?))?)?[ \t]*$", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})")
_BOUNDARY = ":./\\ ("  # what may precede a shortened test name: `test_x` for `tests/a.py::test_x`


@dataclass(frozen=True)
class Command:
    name: str  # lower case, as typed ("help" for a bare "/flake")
    argument: str | None = None
    error: str | None = None  # why it cannot run: unknown command, missing or bad argument

    @property
    def text(self) -> str:
        """The command as a canonical line, for replies."""
        return f"/flake {self.name}" + (f" {self.argument}" if self.argument else "")


def _argument(rest: str | None) -> str:
    text = (rest or "").strip()
    match = re.fullmatch(r"(`+)\s*(.*?)\s*\1", text)
    return match.group(2) if match else text


def _command(name: str, rest: str | None) -> Command:
    name = name.lower()
    if name not in COMMANDS:
        shown = name[:40].replace("`", "'")
        return Command(name, error=f"`/flake {shown}` is not a command")
    if not COMMANDS[name][0]:
        return Command(name)  # trailing words are ignored
    if COMMANDS[name][0].startswith("["):  # an optional number: /flake backfill [days]
        word = _argument(rest).split(" ", 1)[0]
        if not word:
            return Command(name)
        if not word.isdigit() or not 1 <= int(word) <= MAX_DAYS:
            shown = word[:20].replace("`", "'")
            return Command(
                name, error=f"`/flake {name}` takes a number of days from 1 to {MAX_DAYS}, not `{shown}`"
            )
        return Command(name, str(int(word)))
    argument = _argument(rest)
    if not argument:
        return Command(name, error=f"`/flake {name}` needs a test name: `/flake {name} <test>`")
    if len(argument) > MAX_ARGUMENT:
        return Command(name, error=f"the test name is longer than {MAX_ARGUMENT} characters")
    return Command(name, argument)


def command_lines(body: str) -> Iterable[tuple[str, str | None]]:
    """(command word, rest of the line) of each command line outside code blocks and quotes."""
    fence: str | None = None
    for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        opening = _FENCE.match(line)
        if fence is not None:
            closing = opening and opening["fence"][0] == fence[0] and len(opening["fence"]) >= len(fence)
            if closing and not line[opening.end() :].strip():
                fence = None
            continue
        if opening:
            fence = opening["fence"]
            continue
        if line.lstrip().startswith(">") or line.startswith(("    ", "\t")):
            continue
        match = _COMMAND.match(line)
        if match:
            yield match["name"] or "help", match["rest"]


def parse_commands(body: str) -> list[Command]:
    """The commands of a comment in order, duplicates removed (at most ``MAX_COMMANDS + 1``: one more
    than may run, so the caller can say that some were left out)."""
    commands: list[Command] = []
    for name, rest in command_lines(body or ""):
        command = _command(name, rest)
        if command not in commands:
            commands.append(command)
        if len(commands) > MAX_COMMANDS:
            break
    return commands


def may_command(permission: str) -> bool:
    """Only people who can push to the repository steer the bot (GitHub write/maintain/admin, GitLab
    Developer or higher)."""
    return permission in WRITE_PERMISSIONS


def match_test(name: str, known: Iterable[str]) -> list[str]:
    """The known test names ``name`` designates: itself when known, else the names it ends, at a
    separator (``test_x`` → ``tests/a.py::test_x``, not ``tests/a.py::best_x``). Sorted."""
    known = sorted(set(known))
    if name in known:
        return [name]
    return [
        candidate
        for candidate in known
        if candidate.endswith(name)
        and len(candidate) > len(name)
        and (name[0] in _BOUNDARY or candidate[-len(name) - 1] in _BOUNDARY)
    ]
