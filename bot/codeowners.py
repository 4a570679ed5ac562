"""Who owns a test's file: a repository's CODEOWNERS file, read the forge's way. Pure.

flakebot assigns a quarantine issue to the code owners of the test's file (docs/history.md, "Code
owners"). Where each forge looks, first file found wins:

* GitHub: ``.github/CODEOWNERS``, ``CODEOWNERS``, ``docs/CODEOWNERS``;
* GitLab: ``CODEOWNERS``, ``docs/CODEOWNERS``, ``.gitlab/CODEOWNERS``.

The rules (one a line: a path pattern, then owners; ``#`` starts a comment line; ``\\ `` and ``\\#``
escape a space and a hash) are matched as each forge does:

* the **last** matching rule wins; a pattern with no owner leaves the file without owners;
* a pattern matches at any depth unless it is anchored: on GitHub, as in ``.gitignore``, by a slash
  at its start or in its middle (``docs/*`` is ``/docs/*``); on GitLab only by a leading slash
  (``ee/docs`` matches ``x/ee/docs`` too). ``*`` and ``?`` stay within a path part, ``**`` crosses
  them; a pattern that names a directory owns everything under it; a trailing slash matches
  directories only;
* GitLab's **sections** (``[Name]``, ``^[Optional]``, ``[Name][2]``, optionally followed by the
  section's default owners) are matched separately and their owners combined; a rule without owners
  in a section takes the section's defaults; ``!pattern`` (GitLab 17.10) un-owns.

Owners are kept apart by kind: **users** (``@login``: a GitLab ``@name`` may also be a group, which the
adapter finds out when it assigns), **teams and groups** (``@org/team``, ``@group/sub``, GitLab roles
``@@maintainer``), which cannot be assigned an issue, and e-mail addresses, which are not shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PATHS = {
    "github": (".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"),
    "gitlab": ("CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS"),
}
MAX_ASSIGNEES = 10  # GitHub's limit per issue (GitLab Free keeps one)
_SECTION = re.compile(r"^\^?\[(?P<name>[^\]]+)\](?:\[\d+\])?(?P<owners>.*)$")
_EXTENSIONS = (
    "py|pyx|js|jsx|mjs|cjs|ts|tsx|mts|cts|vue|svelte|rb|go|rs|java|kt|kts|scala|groovy|cs|fs|vb|php"
    "|c|cc|cpp|cxx|h|hh|hpp|m|mm|swift|ex|exs|erl|clj|cljs|dart|lua|pl|t|sh|bats|r|jl|hs|ml|zig|nim"
)
# a source file's path at the start of a test's name: what pytest, Jest, RSpec and TAP name tests by
_SOURCE = re.compile(rf"^(?P<path>[\w@+.-]*(?:/[\w@+.-]+)*\.(?:{_EXTENSIONS}))(?:$|::|[\s>:(\[])")


@dataclass(frozen=True)
class Rule:
    pattern: str
    owners: tuple[str, ...]
    section: str = ""  # GitLab: the section's name (lower case), "" before any section
    line: int = 0


@dataclass(frozen=True)
class Owners:
    """The code owners of one file, as the CODEOWNERS file at ``path`` names them."""

    path: str  # the CODEOWNERS file
    file: str  # the file they own
    users: tuple[str, ...] = ()  # logins, without "@": what an issue can be assigned to
    teams: tuple[str, ...] = ()  # teams, groups, roles: shown, never assigned, never mentioned

    def __bool__(self) -> bool:
        return bool(self.users or self.teams)


def _tokens(line: str) -> list[str]:
    """Whitespace-separated tokens, ``\\ `` and ``\\#`` unescaped."""
    out, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                out.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        out.append("".join(current))
    return out


def _owners(tokens: Iterable[str]) -> tuple[str, ...]:
    out = []
    for token in tokens:
        if token.startswith("#"):
            break  # an inline comment
        if token.startswith("@") or "@" in token:
            out.append(token)
    return tuple(out)


def parse(text: str, forge: str = "github") -> list[Rule]:
    """The rules of a CODEOWNERS file, in order (malformed lines are skipped, as the forges do)."""
    rules: list[Rule] = []
    section, defaults = "", ()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if forge == "gitlab" and (match := _SECTION.match(line)):
            section, defaults = match["name"].strip().lower(), _owners(_tokens(match["owners"]))
            continue
        tokens = _tokens(line)
        owners = _owners(tokens[1:])
        if not owners and section:
            owners = defaults
        rules.append(Rule(tokens[0], owners, section, number))
    return rules


def _regex(pattern: str, forge: str) -> re.Pattern[str]:
    directory_only = pattern.endswith("/")
    body = pattern.strip("/")
    anchored = pattern.startswith("/") or (forge == "github" and "/" in body)
    out = []
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    last = body.rsplit("/", 1)[-1]
    # a directory owns what is under it, but "docs/*" owns the files directly in docs/ only
    suffix = "/.*" if directory_only else "" if "*" in last.replace("**", "") else "(?:/.*)?"
    return re.compile(prefix + "".join(out) + suffix)


def owners_of(rules: Sequence[Rule], file: str, forge: str = "github") -> tuple[str, ...]:
    """The owners of ``file`` (a path from the repository's root): per section, the last matching
    rule's; sections combined, in order of appearance, each owner once."""
    file = file.lstrip("/")
    last: dict[str, Rule] = {}
    for rule in rules:
        negated = rule.pattern.startswith("!")
        pattern = rule.pattern[1:] if negated else rule.pattern
        if pattern and _regex(pattern, forge).fullmatch(file):
            last[rule.section] = Rule(rule.pattern, () if negated else rule.owners, rule.section, rule.line)
    combined: dict[str, None] = {}
    for rule in last.values():
        combined.update(dict.fromkeys(rule.owners))
    return tuple(combined)


def test_file(test: str) -> str | None:
    """The source file a test's name points at (``tests/test_x.py::test_y`` → ``tests/test_x.py``;
    ``src/app.test.js > renders`` → ``src/app.test.js``); None for a name that names no file (a dotted
    JUnit name, a Go test)."""
    match = _SOURCE.match(test.strip())
    return match["path"] if match else None


test_file.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def code_owners(text: str, path: str, test: str, forge: str = "github") -> Owners | None:
    """The owners of ``test``'s file by the CODEOWNERS ``text`` found at ``path``; None when the test's
    name names no file."""
    file = test_file(test)
    if file is None:
        return None
    users, teams = [], []
    for owner in owners_of(parse(text, forge), file, forge):
        if owner.startswith("@@"):
            teams.append(f"{owner[2:]} role")  # GitLab: everyone with that role
        elif owner.startswith("@") and "/" in owner:
            teams.append(owner[1:])
        elif owner.startswith("@"):
            users.append(owner[1:])
        # e-mail addresses: neither assignable by flakebot nor shown in a public issue
    return Owners(path=path, file=file, users=tuple(users[:MAX_ASSIGNEES]), teams=tuple(teams))
