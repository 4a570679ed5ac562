"""The PostgreSQL server the tests use, and a schema of their own on it.

``FLAKEBOT_TEST_DATABASE_URL`` names the server (default: 127.0.0.1:5432, user postgres, database
test, as on development machines and CI). Each test module gets a schema of its own, named after the
process and the module and dropped at the end, so engineers running the suite at once on one server
never share a table. Where no server answers, the tests that need one are left out with one line at
the end of the run (``tests/conftest.py``); under ``CI=true`` they run and fail: CI has a server.
"""

from __future__ import annotations

import os
import re
import secrets
from urllib.parse import quote

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_checked: list[str | None] = []  # the reason the server cannot be used, once checked


def server_url() -> str:
    return os.environ.get("FLAKEBOT_TEST_DATABASE_URL") or DEFAULT_URL


def unavailable() -> str | None:
    """Why the server cannot be used (None: it answers); asked once a session."""
    if not _checked:
        import psycopg

        try:
            psycopg.connect(server_url(), connect_timeout=3).close()
            _checked.append(None)
        except psycopg.Error as exc:
            _checked.append(
                f"no PostgreSQL server answers at FLAKEBOT_TEST_DATABASE_URL ({exc.__class__.__name__})"
            )
    return _checked[0]


def needs_server(item: pytest.Item) -> bool:
    """Whether a collected test uses the server (a ``pg_*`` fixture, or a backend parameter)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return "pg_schema_url" in getattr(item, "fixturenames", ()) or "postgresql" in params.values()


def require_server() -> str:
    """The server's URL; skips (fails under CI=true) when no server answers."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: under CI=true the PostgreSQL tests must run")
        pytest.skip(f"{reason}: PostgreSQL tests skipped")
    return server_url()


def with_schema(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq's ``options``)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def new_schema(label: str) -> str:
    """Create a fresh schema on the server; returns its name."""
    import psycopg

    name = f"t{os.getpid()}_{re.sub(r'[^a-z0-9]', '_', label.lower())[-30:]}_{secrets.token_hex(3)}"
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def drop_schema(name: str) -> None:
    import psycopg

    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def empty_tables(url: str) -> None:
    """Every table of the schema emptied (the schema's migrations kept)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename != 'schema_migrations'"
        )]  # fmt: skip
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
