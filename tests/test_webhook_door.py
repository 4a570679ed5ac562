"""The webhook endpoints against hostile or odd deliveries (hardening 1–5): what is refused at the door,
with which answer, and what reaches the queue. The real service (aiohttp app, SQLite store, queue
workers) with the fake GitHub or GitLab on loopback; deliveries signed like the forges sign them."""

from __future__ import annotations

import pytest

from bot.config import Settings
from bot.web import CTX, create_app
from tests.fakes.github import delivery
from tests.test_e2e_github import REPO, SECRET, seed_run, settle, the_comment


@pytest.fixture
def settings(fake_github, github_app_key, tmp_path) -> Settings:
    return Settings(
        github_webhook_secret=SECRET,
        github_app_id=str(github_app_key.app_id),
        github_private_key=github_app_key.private_pem,
        github_api_url=fake_github.url,
        data_dir=tmp_path / "data",
        model_dir=tmp_path / "model",  # no model: every failure is "unknown", which is enough here
        workers=2,
    )


@pytest.fixture
async def bot(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    client.settings = settings
    return client


async def post(client, event, payload, *, secret=SECRET, **options):
    headers, body = delivery(event, payload, secret, **options)
    return await client.post("/github", data=body, headers=headers)


def store_of(client):
    return client.server.app[CTX].store


# --- 1. form-encoded deliveries ---------------------------------------------------------------------


async def test_a_form_encoded_delivery_is_processed_like_a_json_one(bot, fake_github):
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", "E   ConnectionResetError: reset")])
    answer = await post(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run), form=True)
    assert answer.status == 202, await answer.text()
    await settle(bot)
    assert "tests/test_new.py::test_fetch" in the_comment(fake_github)["body"]
    assert len(await store_of(bot).deliveries("done")) == 1


async def test_a_form_without_its_payload_or_with_a_wrong_signature_is_refused(bot, fake_github):
    fake_github.add_repo(REPO)
    payload = fake_github.workflow_run_payload(REPO, fake_github.add_run(REPO))
    headers, body = delivery("workflow_run", payload, "wrong-secret-xxxxxxxxxxxx", form=True)
    assert (await bot.post("/github", data=body, headers=headers)).status == 401
    headers, _ = delivery("workflow_run", b"", SECRET, form=True)
    for form, error in ((b"other=1", "one payload field"), (b"payload=1&payload=2", "one payload field"),
                        (b"payload=%7Bnot+json", "Expecting property name")):  # fmt: skip
        headers["X-Hub-Signature-256"] = delivery("x", form, SECRET)[0]["X-Hub-Signature-256"]
        answer = await bot.post("/github", data=form, headers=headers)
        assert answer.status == 400 and error in (await answer.json())["error"], form
    assert await store_of(bot).deliveries() == []
