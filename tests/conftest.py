"""Shared test fixtures.

The fake forges (real HTTP servers on loopback) live in ``tests/fakes/<forge>.py``; their pytest
fixtures are registered here, one module a line.
"""

pytest_plugins: list[str] = [
    "tests.fakes.github_fixtures",
    "tests.fakes.gitlab_fixtures",
]
