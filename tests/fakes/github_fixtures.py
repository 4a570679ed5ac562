"""pytest fixtures for the fake GitHub (registered in ``tests/conftest.py``).

* ``github_app_key``: a throw-away RSA key pair for the fake App, made once per session (never committed).
* ``fake_github``: both fake servers started, seeded with nothing; the test fails at teardown when a
  request broke GitHub's API description, when an Authorization header reached the blob host, or when
  the fake answered off-spec.
* ``github_sleeps`` and ``github_forge``: a :class:`~bot.forge.github.GitHubForge` authenticated as
  the fake App against ``fake_github``, with a short time-out, and sleeps recorded instead of slept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from bot.forge.github import GitHubForge
from tests.fakes.github import FakeGitHub, app_key_pair


@dataclass(frozen=True)
class AppKey:
    app_id: int
    private_pem: str
    public_pem: bytes


@pytest.fixture(scope="session")
def github_app_key() -> AppKey:
    private_pem, public_pem = app_key_pair()
    return AppKey(app_id=4242, private_pem=private_pem, public_pem=public_pem)


@pytest.fixture
async def fake_github(github_app_key: AppKey) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(app_id=github_app_key.app_id, app_public_key=github_app_key.public_pem)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
    problems = fake.problems()
    if problems:
        pytest.fail("the fake GitHub saw requests GitHub would refuse:\n  " + "\n  ".join(problems))


@pytest.fixture
def github_sleeps() -> list[float]:
    """The waits the forge asked for (nothing is actually slept)."""
    return []


@pytest.fixture
async def github_forge(
    fake_github: FakeGitHub, github_app_key: AppKey, github_sleeps: list[float]
) -> AsyncIterator[GitHubForge]:
    async def sleep(seconds: float) -> None:
        github_sleeps.append(seconds)

    async with aiohttp.ClientSession() as session:
        yield GitHubForge(
            session,
            api_url=fake_github.url,
            app_id=github_app_key.app_id,
            private_key=github_app_key.private_pem,
            timeout=1.0,
            max_wait=30.0,
            sleep=sleep,
        )
