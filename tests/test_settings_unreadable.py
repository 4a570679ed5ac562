"""A repository's settings file that cannot be read (hardening 14): the settings last read for that
repository apply, or, when none were ever read, flakebot comments only. Never the defaults, which
re-run jobs and open issues the repository may have switched off."""

from __future__ import annotations

import random

from tests.ci_logs import cause
from tests.test_e2e_github import REPO, bot, model_dir, seed_run, send, settings, settle, the_comment  # noqa: F401

SETTINGS = ".github/flakebot.yml"


async def flaky_run(client, fake, seed):
    run = seed_run(fake, [("tests/test_new.py::test_fetch", cause("reset", random.Random(seed)))])
    await send(client, "workflow_run", fake.workflow_run_payload(REPO, run))
    await settle(client)
    return the_comment(fake)["body"]


async def test_the_settings_last_read_apply_when_the_file_cannot_be_read(bot, fake_github):  # noqa: F811
    fake_github.add_repo(REPO)
    fake_github.add_file(REPO, SETTINGS, "retry:\n  enabled: false\nquarantine:\n  enabled: false\n")
    body = await flaky_run(bot, fake_github, 1)
    assert "automatic retries are turned off" in body

    fake_github.fail("repos/get-content", 403, times=20)  # refused for a while (a 5xx takes 7 s of retries)
    body = await flaky_run(bot, fake_github, 2)
    assert "automatic retries are turned off" in body  # as last read, not the defaults
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []
    assert fake_github.calls("issues/create") == []


async def test_settings_never_read_mean_comment_only(bot, fake_github):  # noqa: F811
    fake_github.fail("repos/get-content", 403, times=20)
    body = await flaky_run(bot, fake_github, 3)
    assert ".github/flakebot.yml could not be read" in body and "comments only" in body
    assert "Did not re-run: the repository's flakebot settings could not be read" in body
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []
    assert fake_github.calls("issues/create") == []


def test_the_store_keeps_the_last_settings_of_each_repository(store):
    assert store.last_config("github:octo/a") is None
    store.remember_config("github:octo/a", "retry:\n  enabled: false\n")
    store.remember_config("github:octo/b", None)  # no file: the defaults, read as such
    store.remember_config("github:octo/a", "comment: false\n")
    assert store.last_config("github:octo/a")["text"] == "comment: false\n"
    assert (
        store.last_config("github:octo/b")["text"] is None and store.last_config("github:octo/b")["read_at"]
    )
