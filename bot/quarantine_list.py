"""The quarantine list: what ``flakebot quarantine-list --json`` prints and ``GET /quarantine.json``
serves, for the pytest plugin (the ``pytest-flakebot`` distribution, ``plugins/pytest-flakebot``,
which reads it; tests/test_quarantine_list.py checks that what this writes, it reads).

::

    {"version": 1, "generated_at": "2024-06-01T12:00:00Z",
     "tests": [{"test": "tests/test_x.py::test_y", "repo": "owner/name",
                "issue_url": "https://github.com/owner/name/issues/12", "since": "2024-05-30T08:00:00Z"}]}

``version`` must be 1; ``tests`` is a list; each entry needs a non-empty ``test`` string (a pytest node
id, ``module.Class.method``, ``Class.method`` or ``method (module.Class)``); ``repo``, ``issue_url``
and ``since`` are optional strings. The plugin ignores unknown fields, so later versions can add some
(a per-job ``scope``) and the plugins already installed keep working.
"""

from __future__ import annotations

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
