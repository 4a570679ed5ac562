"""A forge that rate-limits flakebot (hardening 7): the delivery waits in the queue as long as the forge
asks, without holding a worker, and then goes on; it is never given up for a rate limit alone.

The real service with the fake GitHub and GitLab on loopback, whose rate-limit answers carry the
headers the forges send (``Retry-After``; ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset``)."""

from __future__ import annotations

import time

import pytest

from bot.config import Settings
from bot.forge.base import ForgeError, RateLimited
from bot.queue import MAX_DEFERRALS, Queue, is_permanent
from bot.web import CTX, QUEUE, create_app
from tests.test_e2e_github import REPO, SECRET, seed_run, send, the_comment


@pytest.fixture
async def bot(aiohttp_client, fake_github, github_app_key, tmp_path):
    settings = Settings(backfill_days=0, github_webhook_secret=SECRET, github_app_id=str(github_app_key.app_id),
                        github_private_key=github_app_key.private_pem, github_api_url=fake_github.url,
                        data_dir=tmp_path / "data", model_dir=tmp_path / "model")  # fmt: skip
    return await aiohttp_client(create_app(settings))


def waiting(client) -> list[dict]:
    """The deliveries waiting in the queue, with when they are due and their attempts so far."""
    db = client.server.app[CTX].store.store.db
    return list(db.query("SELECT delivery_id, status, attempts, next_attempt_at, error FROM deliveries"))


async def until_deferred(client, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = waiting(client)
        if rows and rows[0]["status"] == "pending" and rows[0]["error"]:
            return rows[0]
        assert not rows or rows[0]["status"] != "dead", rows
        await time_passes()
    raise AssertionError(f"the delivery was not deferred: {waiting(client)}")


async def time_passes() -> None:
    import asyncio

    await asyncio.sleep(0.02)


async def go_on(client) -> None:
    """The wait is over (made so in the store, rather than waited for)."""
    client.server.app[CTX].store.store.db.execute("UPDATE deliveries SET next_attempt_at = 0")
    client.server.app[CTX].store.store.db.conn.commit()
    client.server.app[QUEUE].notify()
    from tests.test_e2e_github import settle

    await settle(client)


@pytest.mark.parametrize(
    ("limit", "asked"),
    [
        ({"retry_after": 120}, 120),  # a secondary limit: 403 with Retry-After
        ({"retry_after": None, "reset_in": 900}, 900),  # the primary limit: remaining 0, reset in 15 min
        ({"retry_after": 300, "status": 429}, 300),
    ],
)
async def test_a_rate_limited_delivery_waits_as_asked_then_goes_on(bot, fake_github, limit, asked):
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", "E   ConnectionResetError: reset")])
    fake_github.rate_limit("actions/list-jobs-for-workflow-run", **limit)
    start = time.time()
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    row = await until_deferred(bot)
    assert time.time() - start < 10  # no worker slept through the wait
    assert start + asked - 2 <= row["next_attempt_at"] <= time.time() + asked + 5, (row, asked)
    assert row["attempts"] == 0  # a rate limit is not a failed attempt
    assert "rate limited" in row["error"]
    await go_on(bot)
    assert "tests/test_new.py::test_fetch" in the_comment(fake_github)["body"]
    assert [r["status"] for r in waiting(bot)] == ["done"]


async def test_a_rate_limit_while_reading_a_log_defers_the_run_rather_than_judging_it_without(
    bot, fake_github
):
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", "E   ConnectionResetError: reset")])
    fake_github.rate_limit("actions/download-job-logs-for-workflow-run", retry_after=120)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await until_deferred(bot)
    assert fake_github.calls("issues/create-comment") == []
    await go_on(bot)
    body = the_comment(fake_github)["body"]
    assert "tests/test_new.py::test_fetch" in body and "could not be read" not in body


async def test_gitlab_asking_for_300_s_is_waited_for_300_s(aiohttp_client, fake_gitlab, tmp_path):
    from tests.test_e2e_gitlab import seed_pipeline
    from tests.test_e2e_gitlab import send as send_gitlab

    settings = Settings(backfill_days=0, gitlab_url=fake_gitlab.url, gitlab_token=fake_gitlab.token,
                        gitlab_webhook_secret=fake_gitlab.webhook_secret, data_dir=tmp_path / "data",
                        model_dir=tmp_path / "model")  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    project, pipeline = seed_pipeline(fake_gitlab, {"pytest": [("tests/test_a.py::test_b", "E   boom")]})
    fake_gitlab.rate_limit(
        "GET", f"/projects/{project.id}/pipelines/{pipeline['id']}/jobs", retry_after="300"
    )
    start = time.time()
    await send_gitlab(
        client, fake_gitlab, "Pipeline Hook", fake_gitlab.pipeline_hook(project, pipeline["id"])
    )
    row = await until_deferred(client)
    assert start + 298 <= row["next_attempt_at"] <= time.time() + 305 and row["attempts"] == 0


async def test_deferrals_are_bounded(ctx):
    """A forge that never lets up: the delivery is given up after MAX_DEFERRALS waits, saying why."""

    async def limited(_delivery):
        raise RateLimited("GET /x: rate limited", 403, wait=60.0)

    await ctx.store.enqueue("github", "d-1", "workflow_run", b"{}")
    queue = Queue(ctx, limited)
    for _ in range(MAX_DEFERRALS + 1):
        ctx.store.store.db.execute("UPDATE deliveries SET next_attempt_at = 0")
        ctx.store.store.db.conn.commit()
        await queue.process(await ctx.store.claim(time.time(), 60.0))
    (dead,) = await ctx.store.deliveries("dead")
    assert f"rate limited {MAX_DEFERRALS + 1} times" in dead["error"]


def test_a_rate_limit_is_never_permanent():
    assert not is_permanent(RateLimited("rate limited", 403, wait=120.0))
    assert is_permanent(ForgeError("forbidden", 403))
