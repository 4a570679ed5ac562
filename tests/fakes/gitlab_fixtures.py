"""pytest fixtures for the fake GitLab (registered in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.gitlab import FakeGitLab


@pytest.fixture
async def fake_gitlab() -> AsyncIterator[FakeGitLab]:
    """A running fake GitLab on 127.0.0.1 (random port); fails the test on unknown routes or unused faults."""
    fake = FakeGitLab()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
    problems = fake.problems()
    if problems:
        pytest.fail("fake GitLab: " + "; ".join(problems), pytrace=False)
