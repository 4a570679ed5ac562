"""The quarantine list: what ``flakebot quarantine-list --json`` prints and the pytest plugin reads.

::

    {"version": 1, "generated_at": "2024-06-01T12:00:00Z",
     "tests": [{"test": "tests/test_x.py::test_y", "repo": "owner/name",
                "issue_url": "https://github.com/owner/name/issues/12", "since": "2024-05-30T08:00:00Z"}]}

``version`` must be 1; ``tests`` is a list; each entry needs a non-empty ``test`` string (a pytest node
id, ``module.Class.method``, ``Class.method`` or ``method (module.Class)``); ``repo``, ``issue_url``
and ``since`` are optional strings. Unknown fields are ignored, so later versions can add some.
Stdlib only: the pytest plugin imports this in other projects' test runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

VERSION = 1


@dataclass(frozen=True)
class QuarantinedTest:
    test: str
    repo: str | None = None
    issue_url: str | None = None
    since: str | None = None  # ISO-8601: when the quarantine issue was opened


def parse_quarantine_list(data: Any) -> tuple[list[QuarantinedTest], list[str]]:
    """The entries of a parsed quarantine list, and a description of each entry that was left out.

    Raises ValueError when the document as a whole cannot be used (wrong version, no test list).
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if data.get("version") != VERSION:
        raise ValueError(
            f"unsupported quarantine list version {data.get('version')!r} (this flakebot reads 1)"
        )
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise ValueError("'tests' must be a list")
    entries, problems = [], []
    for index, item in enumerate(tests):
        if not isinstance(item, dict) or not isinstance(item.get("test"), str) or not item["test"].strip():
            problems.append(f"entry {index}: needs a non-empty 'test' string")
            continue
        optional = {key: item.get(key) for key in ("repo", "issue_url", "since")}
        bad = [key for key, value in optional.items() if value is not None and not isinstance(value, str)]
        if bad:
            problems.append(f"entry {index}: {', '.join(bad)} must be strings")
            continue
        entries.append(QuarantinedTest(item["test"].strip(), **optional))
    return entries, problems


def loads(text: str | bytes) -> tuple[list[QuarantinedTest], list[str]]:
    """Parse the JSON text of a quarantine list; ValueError with the reason when it is unusable."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    return parse_quarantine_list(data)


def quarantine_list(entries: Iterable[QuarantinedTest], generated_at: str | None = None) -> dict[str, Any]:
    """The JSON document for ``entries``, sorted by test name."""
    document: dict[str, Any] = {"version": VERSION}
    if generated_at:
        document["generated_at"] = generated_at
    document["tests"] = [
        {k: v for k, v in asdict(entry).items() if v is not None}
        for entry in sorted(entries, key=lambda e: e.test)
    ]
    return document
