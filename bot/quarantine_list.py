"""The quarantine list: what ``flakebot quarantine-list --json`` prints and ``GET /quarantine.json``
serves, for the pytest plugin (the ``pytest-flakebot`` distribution, ``plugins/pytest-flakebot``,
which reads it; tests/test_quarantine_list.py checks that what this writes, it reads).

::

    {"version": 1, "generated_at": "2024-06-01T12:00:00Z",
     "tests": [{"test": "tests/test_x.py::test_y", "repo": "owner/name",
                "issue_url": "https://github.com/owner/name/issues/12", "since": "2024-05-30T08:00:00Z",
                "scope": {"jobs": ["tests (windows)"]}, "expires_at": "2024-06-29T08:00:00Z"}]}

``version`` must be 1; ``tests`` is a list; each entry needs a non-empty ``test`` string (a pytest node
id, ``module.Class.method``, ``Class.method`` or ``method (module.Class)``); ``repo``, ``issue_url``,
``since`` and ``expires_at`` are optional strings. ``scope`` (optional) says where the test is
quarantined: ``{"jobs": [...]}``, the CI jobs by name (as the forge names them: ``tests (windows)``,
``test: [ubuntu, 3.12]``); without it, in every job. The plugin matches the job it runs in (its
``FLAKEBOT_JOB`` or GitLab's ``CI_JOB_NAME``), and ignores an entry whose ``expires_at`` has passed.
Plugins from before scopes ignore both fields (unknown fields are ignored): they quarantine the test in
every job, as flakebot did then, so the list stays version 1.
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
    scope: dict[str, list[str]] | None = None  # {"jobs": [...]}: where it is quarantined; None: every job
    expires_at: str | None = None  # ISO-8601: when the quarantine ends unless renewed


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
