"""Downloading job logs (hardening 8): one deadline for the whole download, one more fetch when the
connection cuts a log short, and a cut log judged on what arrived with the comment saying so. The real
service and the fake forges on loopback; the fakes cut and trickle their downloads for real."""

from __future__ import annotations

import time

import pytest

from bot.config import Settings
from bot.web import create_app
from tests.test_e2e_github import REPO, SECRET, seed_run, send, settle, the_comment

FAILURES = [
    ("tests/test_new.py::test_fetch", "E   ConnectionResetError: [Errno 104] Connection reset by peer"),
    ("tests/test_new.py::test_poll", "E   TimeoutError: timed out after 30 s"),
]


@pytest.fixture
async def bot(aiohttp_client, fake_github, github_app_key, tmp_path):
    settings = Settings(backfill_days=0, github_webhook_secret=SECRET, github_app_id=str(github_app_key.app_id),
                        github_private_key=github_app_key.private_pem, github_api_url=fake_github.url,
                        data_dir=tmp_path / "data", model_dir=tmp_path / "model", log_deadline=1.5)  # fmt: skip
    return await aiohttp_client(create_app(settings))


def log_downloads(fake) -> int:
    return len(fake.calls("blob:logs"))


async def judged_comment(client, fake, run) -> str:
    await send(client, "workflow_run", fake.workflow_run_payload(REPO, run))
    await settle(client)
    return the_comment(fake)["body"]


async def test_a_log_the_connection_cut_short_is_fetched_again(bot, fake_github):
    run = seed_run(fake_github, FAILURES)
    fake_github.cut("blob:logs", after_bytes=1500)
    body = await judged_comment(bot, fake_github, run)
    assert log_downloads(fake_github) == 2
    assert "test_fetch" in body and "test_poll" in body
    assert "cut short" not in body and "could not be read" not in body


async def test_a_log_cut_twice_is_judged_on_what_arrived_and_the_comment_says_so(bot, fake_github):
    run = seed_run(fake_github, FAILURES)
    state = fake_github.repo(REPO)
    (log,) = [state.logs[i] for i, job in state.jobs.items() if job["name"] == "tests (ubuntu)"]
    fake_github.cut("blob:logs", after_bytes=int(len(log) * 0.8), times=2)
    body = await judged_comment(bot, fake_github, run)
    assert log_downloads(fake_github) == 2
    assert "was cut short by the connection (fetched twice): it is judged on the" in body
    assert "test_fetch" in body, body  # what arrived was judged


async def test_a_trickled_log_is_given_up_at_the_deadline_and_judged_on_what_arrived(bot, fake_github):
    run = seed_run(fake_github, FAILURES)
    fake_github.trickle("blob:logs", chunk_bytes=100, every=0.3)  # the whole log would take 9 s
    start = time.monotonic()
    body = await judged_comment(bot, fake_github, run)
    assert time.monotonic() - start < 6  # the deadline, 1.5 s, not the log's 9 s
    assert "did not finish downloading within 1.5 s: it is judged on the" in body
    assert log_downloads(fake_github) == 1  # a slow server is not asked twice


async def test_a_gitlab_trace_cut_short_is_fetched_again(aiohttp_client, fake_gitlab, tmp_path):
    from tests.test_e2e_gitlab import seed_pipeline, the_note
    from tests.test_e2e_gitlab import send as send_gitlab
    from tests.test_e2e_gitlab import settle as settle_gitlab

    settings = Settings(backfill_days=0, gitlab_url=fake_gitlab.url, gitlab_token=fake_gitlab.token,
                        gitlab_webhook_secret=fake_gitlab.webhook_secret, data_dir=tmp_path / "data",
                        model_dir=tmp_path / "model")  # fmt: skip
    client = await aiohttp_client(create_app(settings))
    project, pipeline = seed_pipeline(fake_gitlab, {"pytest": FAILURES})
    fake_gitlab.truncate("GET", rf"/projects/{project.id}/jobs/\d+/trace", after_bytes=1500)
    await send_gitlab(
        client, fake_gitlab, "Pipeline Hook", fake_gitlab.pipeline_hook(project, pipeline["id"])
    )
    await settle_gitlab(client)
    assert len(fake_gitlab.calls("GET", rf"/projects/{project.id}/jobs/\d+/trace")) == 2
    body = the_note(project)["body"]
    assert "test_fetch" in body and "test_poll" in body and "cut short" not in body
