"""``/flake`` commands in pull/merge request comments: parsing and the small decisions around them. Pure.

A command is a line of its own: ``/flake <command> [test]``, up to three spaces of indentation (four
make a Markdown code block). Only what a reader of the rendered comment sees as such a line runs. Lines
inside fenced code blocks (````` ``` ````` or ``~~~``), indented code and quotes (``>``) are not
commands: quoting someone's command, or the bot's help, runs nothing. Nor is anything inside an HTML
comment (``<!-- /flake quarantine x -->``, on one line or several: the comment is not shown), or a raw
``<pre>``, ``<script>``, ``<style>`` or ``<textarea>`` block; inline code never starts a line, and a
``<!--`` inside it opens no comment (docs/hardening.md, 6). The
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
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)")
# raw HTML blocks whose content is code or is not shown as text (CommonMark's HTML block kind 1)
_RAW_BLOCK = re.compile(r"^ {0,3}<(pre|script|style|textarea)(?=[\s>]|$)", re.IGNORECASE)
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


def _outside_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    """The parts of ``line`` outside HTML comments (``<!-- … -->``, also ``<!-->`` and ``<!--->``, on
    one line or across several), and whether a comment is still open at its end. A ``<!--`` inside
    inline code opens nothing."""
    kept, start = [], 0
    blanked = _CODE_SPAN.sub(lambda m: "\0" * len(m.group()), line)  # same offsets, code blanked out
    while True:
        if in_comment:
            end = blanked.find("-->", start)
            if end < 0:
                return "".join(kept), True
            start, in_comment = end + 3, False
        opening = blanked.find("<!--", start)
        if opening < 0:
            return "".join(kept) + line[start:], False
        kept.append(line[start:opening])
        start, in_comment = opening + 2, True  # from "<!" on, so that "<!-->" closes at once


def command_lines(body: str) -> Iterable[tuple[str, str | None]]:
    """(command word, rest of the line) of each command line a reader sees as a line of its own: not in
    a code block (fenced or indented), a quote, an HTML comment or a raw ``<pre>``, ``<script>``,
    ``<style>`` or ``<textarea>`` block."""
    fence: str | None = None
    in_comment = False
    raw_end: str | None = None  # the closing tag of the raw HTML block being skipped
    for line in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if fence is not None:
            opening = _FENCE.match(line)
            closing = opening and opening["fence"][0] == fence[0] and len(opening["fence"]) >= len(fence)
            if closing and not line[opening.end() :].strip():
                fence = None
            continue
        if raw_end is not None:
            if raw_end in line.lower():
                raw_end = None
            continue
        line, in_comment = _outside_comments(line, in_comment)
        opening = _FENCE.match(line)
        if opening:
            fence = opening["fence"]
            continue
        raw = _RAW_BLOCK.match(line)
        if raw:
            closing_tag = f"</{raw[1].lower()}>"
            raw_end = None if closing_tag in line.lower() else closing_tag
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
