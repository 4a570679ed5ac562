"""Known-issue patterns in Cockpit's style: a failure that matches one is "known issue #N".

Cockpit kept one file per pattern, ``naughty/<image>/<issue>-<slug>``, holding a pasted piece of a
traceback with ``*`` where the text varies. Its ``tests-policy`` normalised both the failure's trace and
the pattern (file paths in ``File "…"`` reduced to base names, SELinux ``audit(…)`` stamps and
``pid=``/``ino=`` numbers zeroed, ``testlib.Error`` -> ``Error``, outer whitespace stripped) and then
called ``fnmatch.fnmatchcase(trace, "*" + pattern + "*")``, retrying with ``[`` replaced by ``?`` because
pasted brackets broke fnmatch's character classes.

Here only ``*`` is a wildcard: ``?`` and ``[`` are literal text, which is what the pasted patterns mean
(Cockpit's ``?`` also matched any one character; none of the 1,168 real patterns relies on that). The
same normalisation is applied to both sides. A pattern is compiled into its literal pieces and matched
by finding them in order with ``str.find`` — linear time, no regular expression, so no catastrophic
backtracking whatever the pattern. With hundreds of patterns, a prefilter keeps the work small: each
pattern is indexed by its longest whole word that cannot touch a ``*``, and only the patterns whose word
occurs among the text's words are checked in full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FILE_PATH = re.compile(r'File "[^"]*/([^/"]+)"')
_AUDIT = re.compile(r"audit\([0-9.:]+\)")
_PID_INO = re.compile(r"\b(pid|ino)=[0-9]+ ")
_WORD = re.compile(r"\w+")
MIN_KEY = 3


class KnownIssuesError(ValueError):
    """A patterns file that cannot be used; ``str()`` says where and why."""


def normalize(trace: str) -> str:
    """Cockpit's normalisation of a trace (and of a pattern) before matching."""
    trace = _FILE_PATH.sub(r'File "\1"', trace.strip())
    trace = _AUDIT.sub("audit(0)", trace)
    trace = _PID_INO.sub(r"\1=0 ", trace)
    return trace.replace("testlib.Error", "Error")


@dataclass(frozen=True)
class KnownIssueMatch:
    issue: int
    slug: str | None
    pattern: str
    image: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Pattern:
    issue: int
    pattern: str
    slug: str | None = None
    image: str | None = None
    path: str | None = None

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Pattern:
        if not isinstance(obj, Mapping):
            raise ValueError("expected a JSON object")
        pattern, issue = obj.get("pattern"), obj.get("issue")
        if not isinstance(pattern, str) or not pattern.strip().strip("*").strip():
            raise ValueError("'pattern' must be a non-empty string with some literal text")
        if isinstance(issue, bool) or not isinstance(issue, int):
            if isinstance(issue, str) and issue.lstrip("#").isdigit():
                issue = int(issue.lstrip("#"))
            else:
                raise ValueError("'issue' must be an issue number")
        return cls(
            issue=issue,
            pattern=pattern,
            slug=obj.get("slug") or None,
            image=obj.get("image") or None,
            path=obj.get("path") or None,
        )


def _pieces(pattern: str) -> tuple[str, ...]:
    return tuple(piece for piece in normalize(pattern).split("*") if piece)


def _key(pieces: tuple[str, ...]) -> str | None:
    """The longest word inside a piece with a non-word character on both sides (so it is a whole word
    of any text the piece occurs in), or None."""
    best = None
    for piece in pieces:
        for match in _WORD.finditer(piece):
            if match.start() == 0 or match.end() == len(piece):
                continue  # may continue into the text a '*' stands for
            word = match.group()
            if len(word) >= MIN_KEY and (best is None or len(word) > len(best)):
                best = word
    return best


def glob_in(pieces: tuple[str, ...], text: str) -> bool:
    """Whether ``*piece1*piece2*…*`` matches ``text``: the pieces occur in order, without overlap."""
    pos = 0
    for piece in pieces:
        found = text.find(piece, pos)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


class KnownIssues:
    """A set of known-issue patterns; :meth:`match` finds the first one a failure's log matches."""

    def __init__(self, patterns: Iterable[Pattern | Mapping[str, Any]]):
        self.patterns: list[Pattern] = [
            p if isinstance(p, Pattern) else Pattern.from_dict(p) for p in patterns
        ]
        self._compiled = [_pieces(p.pattern) for p in self.patterns]
        self._by_word: dict[str, list[int]] = {}
        self._always: list[int] = []
        for index, pieces in enumerate(self._compiled):
            key = _key(pieces)
            if key is None:
                self._always.append(index)
            else:
                self._by_word.setdefault(key, []).append(index)

    def __len__(self) -> int:
        return len(self.patterns)

    @classmethod
    def load(cls, path: str | Path) -> KnownIssues:
        """Read a JSONL file of patterns (``pattern``, ``issue``; optional ``slug``, ``image``, ``path``)."""
        patterns = []
        try:
            with open(path, encoding="utf-8") as stream:
                for number, line in enumerate(stream, start=1):
                    if not line.strip():
                        continue
                    try:
                        patterns.append(Pattern.from_dict(json.loads(line)))
                    except (json.JSONDecodeError, ValueError) as exc:
                        raise KnownIssuesError(f"{path}:{number}: {exc}") from None
        except OSError as exc:
            raise KnownIssuesError(f"cannot read {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise KnownIssuesError(f"{path}: not UTF-8 text ({exc.reason})") from None
        return cls(patterns)

    def candidates(self, text: str) -> list[int]:
        """Indexes of the patterns worth a full check against (normalised) ``text``, in load order."""
        words = set(_WORD.findall(text))
        found = list(self._always)
        for word in self._by_word.keys() & words:
            found.extend(self._by_word[word])
        return sorted(found)

    def match(self, text: str, image: str | None = None) -> KnownIssueMatch | None:
        """The first pattern (in load order) that matches ``text``; with ``image``, only patterns for
        that image or for none."""
        trace = normalize(text)
        for index in self.candidates(trace):
            pattern = self.patterns[index]
            if image is not None and pattern.image not in (None, image):
                continue
            if glob_in(self._compiled[index], trace):
                return KnownIssueMatch(
                    pattern.issue, pattern.slug, pattern.pattern, pattern.image, pattern.path
                )
        return None
