"""Shared test fixtures.

The fake forges (real HTTP servers on loopback) live in ``tests/fakes/<forge>.py``; their pytest
fixtures are registered here, one module a line. Here too: ``store``, a real store of each backend
(SQLite in the test's own directory; PostgreSQL in a schema of the test module's own, emptied for each
test: ``tests/pg.py``), ``pg_url`` (that schema's URL), and ``ctx``, the service's context around an
SQLite store (no forge).
"""

import os

import pytest

from bot.config import Settings
from bot.context import Context, ModelProvider
from bot.metrics import Metrics
from bot.store import open_store
from bot.store.adapters import ThreadedStore
from tests import pg

pytest_plugins: list[str] = [
    "tests.fakes.github_fixtures",
    "tests.fakes.gitlab_fixtures",
]


@pytest.fixture(scope="module")
def pg_schema_url(request):
    """A schema of this test module's own on the test server (dropped afterwards)."""
    pg.require_server()
    name = pg.new_schema(request.module.__name__)
    yield pg.with_schema(pg.server_url(), name)
    pg.drop_schema(name)


@pytest.fixture
def pg_url(pg_schema_url):
    """The module's schema, emptied for this test."""
    pg.empty_tables(pg_schema_url)
    return pg_schema_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The store contract: each test that takes ``store`` runs on both backends."""
    if request.param == "sqlite":
        s = open_store(tmp_path / "data")
    else:
        s = open_store(tmp_path / "data", request.getfixturevalue("pg_url"))
    yield s
    s.close()


@pytest.fixture
async def ctx(tmp_path):
    """Settings' defaults, but a retrain child process is stopped after half a second."""
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "model", retrain_timeout=0.5)
    context = Context(
        settings, ThreadedStore(open_store(settings.data_dir)), ModelProvider(settings.model_dir), Metrics()
    )
    yield context
    await context.store.aclose()


def pytest_collection_modifyitems(config, items):
    """Without a PostgreSQL server (and not under CI=true), the tests that need one are left out, and
    one line at the end of the run says so (pytest_terminal_summary)."""
    needing = [item for item in items if pg.needs_server(item)]
    if not needing or os.environ.get("CI") == "true" or (reason := pg.unavailable()) is None:
        return
    config.hook.pytest_deselected(items=needing)
    left = set(needing)
    items[:] = [item for item in items if item not in left]
    config.stash[_PG_LEFT_OUT] = f"{len(needing)} tests that need PostgreSQL were not run: {reason}"


_PG_LEFT_OUT = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, config):
    if (line := config.stash.get(_PG_LEFT_OUT, None)) is not None:
        terminalreporter.write_line(f"SKIPPED {line}", yellow=True)
