"""Shared test fixtures.

The fake forges (real HTTP servers on loopback) live in ``tests/fakes/<forge>.py``; their pytest
fixtures are registered here, one module a line. Here too: ``store``, a real SQLite store in the
test's own directory, and ``ctx``, the service's context around one (no forge).
"""

import pytest

from bot.config import Settings
from bot.context import Context, ModelProvider
from bot.metrics import Metrics
from bot.store import AsyncStore, open_store

pytest_plugins: list[str] = [
    "tests.fakes.github_fixtures",
    "tests.fakes.gitlab_fixtures",
]


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "data")
    yield s
    s.close()


@pytest.fixture
async def ctx(tmp_path):
    """Settings' defaults, but a retrain child process is stopped after half a second."""
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "model", retrain_timeout=0.5)
    context = Context(
        settings, AsyncStore(open_store(settings.data_dir)), ModelProvider(settings.model_dir), Metrics()
    )
    yield context
    await context.store.aclose()
