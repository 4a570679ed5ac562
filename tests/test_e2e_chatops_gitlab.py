"""``/flake`` commands end to end on GitLab: ``Note Hook`` deliveries (GitLab's documented example, pointed
at the fake's state) through the service to the fake GitLab that python-gitlab talks to."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from bot.config import Settings
from bot.modelstore import ModelStore, repo_dir
from bot.web import CTX, create_app
from tests.ci_logs import actions_pytest_log, cause, real_bug
from tests.fakes.gitlab import DEFAULT_TOKEN, DEFAULT_WEBHOOK_SECRET, load_webhook
from tests.retrain_data import seed_failures, train_shared_model
from tests.test_e2e_github import settle

KEY = "gitlab:gitlab-org/gitlab-test"
DEVELOPER, REPORTER = 30, 20
FLAKY, REAL = "tests/test_net.py::test_poll", "tests/test_cart.py::test_total"


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shared-model")
    train_shared_model(path)
    return path


@pytest.fixture
def settings(fake_gitlab, shared_model, tmp_path) -> Settings:
    shutil.copytree(shared_model, tmp_path / "model")
    return Settings(gitlab_url=fake_gitlab.url, gitlab_token=DEFAULT_TOKEN, gitlab_webhook_secret=DEFAULT_WEBHOOK_SECRET,
                    data_dir=tmp_path / "data", model_dir=tmp_path / "model")  # fmt: skip


@pytest.fixture
async def bot(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


async def deliver(client, fake, event, payload, *, queued=True):
    headers, body = fake.delivery(event, payload)
    response = await client.post("/gitlab", data=body, headers=headers)
    # a delivery with nothing to do may be answered 200 and dropped at the door instead of queued
    assert response.status == 202 if queued else response.status in (200, 202), await response.text()
    await settle(client)


@pytest.fixture
async def project(bot, fake_gitlab):
    """A failed merge request pipeline (GitLab's documented payload): an infrastructure failure in
    ``test-image``, a flaky and a real failure in ``test-build``; flakebot has commented on the MR."""
    pipeline = load_webhook("pipeline_failed_mr")
    rng = random.Random(4)
    trace = actions_pytest_log([(FLAKY, cause("reset", rng)), (REAL, real_bug(rng))])
    project = fake_gitlab.seed_from_pipeline_hook(pipeline, traces={"test-build": trace})
    await deliver(bot, fake_gitlab, "Pipeline Hook", pipeline)
    assert the_note(fake_gitlab, project)
    return project


def the_note(fake, project) -> dict:
    (note,) = [n for n in project.mr_notes[1] if n["body"].startswith("<!-- flakebot:comment -->")]
    return note


def replies(fake, project) -> list[str]:
    return [
        n["body"]
        for n in project.mr_notes[1]
        if n["author"]["id"] == fake.bot["id"] and not n["body"].startswith("<!-- flakebot:comment -->")
    ]


def member(fake, project, username, level):
    user = fake.add_user(username)
    fake.add_member(project, user, level)
    return user


def note_hook(fake, project, body, user, *, action="create"):
    """GitLab's documented "comment on a merge request" payload for a new note on MR !1 of ``project``."""
    note = fake.add_note(project, 1, body, author=user)
    payload = load_webhook("note_mr_create")
    payload["project_id"] = project.id
    payload["project"].update(id=project.id, path_with_namespace=project.data["path_with_namespace"],
                              web_url=project.data["web_url"], default_branch="master")  # fmt: skip
    payload["user"].update(id=user["id"], username=user["username"], name=user["name"])
    mr = project.mrs[1]
    payload["merge_request"].update(
        id=mr["id"], iid=1, source_project_id=project.id, target_project_id=project.id
    )
    payload["object_attributes"].update(id=note["id"], note=body, author_id=user["id"], project_id=project.id,
                                        noteable_id=mr["id"], action=action,
                                        url=f"{mr['web_url']}#note_{note['id']}")  # fmt: skip
    return payload, note


async def test_a_developers_commands_are_acknowledged_and_answered(bot, fake_gitlab, project):
    dev = member(fake_gitlab, project, "dev", DEVELOPER)
    payload, note = note_hook(
        fake_gitlab, project, "/flake status\n/FLAKE Explain test_poll\n/flake what", dev
    )
    await deliver(bot, fake_gitlab, "Note Hook", payload)
    assert [(a["name"], a["user"]["id"]) for a in project.awards[note["id"]]] == [
        ("eyes", fake_gitlab.bot["id"])
    ]
    (reply,) = replies(fake_gitlab, project)
    assert "**Active model:**" in reply and "the shared model" in reply
    assert f"**`{FLAKY}`**" in reply and "- **flake** in `test-build`" in reply
    assert "`/flake what` is not a command" in reply and "| `/flake quarantine <test>` |" in reply
    assert fake_gitlab.calls("GET", rf"/projects/{project.id}/members/all/{dev['id']}")


async def test_a_reporter_is_denied_once_and_nothing_happens(bot, fake_gitlab, project):
    reporter = member(fake_gitlab, project, "rep", REPORTER)
    for body in ("/flake retry", "/flake real test_poll\n/flake retrain"):
        payload, note = note_hook(fake_gitlab, project, body, reporter)
        await deliver(bot, fake_gitlab, "Note Hook", payload)
        assert note["id"] not in project.awards
    (reply,) = replies(fake_gitlab, project)
    assert reply.startswith("@rep thanks!") and "Developer or higher" in reply and "merge request" in reply
    assert fake_gitlab.calls("POST", r"/projects/1/jobs/\d+/retry") == []
    records = await bot.server.app[CTX].store.training_records(KEY)
    assert [r["label"] for r in records] and all(r["label"] is None for r in records)


async def test_edits_issue_notes_and_the_bots_own_notes_are_ignored(bot, fake_gitlab, project):
    dev = member(fake_gitlab, project, "dev", DEVELOPER)
    before = len(fake_gitlab.requests)
    edited, _ = note_hook(fake_gitlab, project, "/flake retry", dev, action="update")
    await deliver(bot, fake_gitlab, "Note Hook", edited, queued=False)
    on_issue = load_webhook("note_issue")
    on_issue["object_attributes"]["note"] = "/flake retry"
    await deliver(bot, fake_gitlab, "Note Hook", on_issue, queued=False)
    own, _ = note_hook(fake_gitlab, project, "/flake retry", fake_gitlab.bot)
    await deliver(bot, fake_gitlab, "Note Hook", own)
    assert fake_gitlab.requests[before:] == []  # the bot knows who it is from its own MR note
    assert replies(fake_gitlab, project) == ["/flake retry"]  # the own note seeded above, unanswered


async def test_retry_retries_each_failed_job_real_failures_included(bot, fake_gitlab, project):
    assert fake_gitlab.calls("POST", r"/projects/1/jobs/\d+/retry") == []  # a real failure: not by itself
    dev = member(fake_gitlab, project, "dev", DEVELOPER)
    payload, _ = note_hook(fake_gitlab, project, "/flake retry", dev)
    await deliver(bot, fake_gitlab, "Note Hook", payload)
    retried = sorted(r.path for r in fake_gitlab.calls("POST", r"/projects/1/jobs/\d+/retry"))
    assert retried == ["/projects/1/jobs/377/retry", "/projects/1/jobs/378/retry"]
    assert "re-running 2 failed job(s), attempt 2 of 3" in replies(fake_gitlab, project)[-1]


async def test_a_label_corrects_the_merge_request_note(bot, fake_gitlab, project):
    dev = member(fake_gitlab, project, "dev", DEVELOPER)
    note_id = the_note(fake_gitlab, project)["id"]
    payload, _ = note_hook(fake_gitlab, project, "/flake real test_poll", dev)
    await deliver(bot, fake_gitlab, "Note Hook", payload)
    note = the_note(fake_gitlab, project)
    assert note["id"] == note_id
    assert f"| `{FLAKY}` | :x: **real** (labelled by dev; flakebot said flake) |" in note["body"]
    labels = {r["test"]: r["label"] for r in await bot.server.app[CTX].store.training_records(KEY)}
    assert labels[FLAKY] == "real" and labels[REAL] is None


async def test_retrain_on_gitlab_replies_with_the_trial_report(bot, fake_gitlab, project, settings):
    seed_failures(bot.server.app[CTX].store.store, KEY)
    dev = member(fake_gitlab, project, "dev", DEVELOPER)
    payload, _ = note_hook(fake_gitlab, project, "/flake retrain", dev)
    await deliver(bot, fake_gitlab, "Note Hook", payload)
    queued, report = replies(fake_gitlab, project)
    assert "in the background" in queued
    assert f"### flakebot retrain of `{KEY}`: promoted" in report
    assert ModelStore(repo_dir(settings.model_dir, KEY)).active_version() in report


async def test_quarantine_by_hand_and_the_other_commands_on_gitlab(bot, fake_gitlab, project):
    dev = member(fake_gitlab, project, "dev", DEVELOPER)
    payload, _ = note_hook(
        fake_gitlab, project, "/flake quarantine test_poll\n/flake flake test_total\n/flake help", dev
    )
    await deliver(bot, fake_gitlab, "Note Hook", payload)
    (issue,) = project.issues.values()
    assert issue["state"] == "opened" and issue["labels"] == ["flaky-test"]
    assert issue["title"] == f"Flaky test: {FLAKY}" and "Quarantined by dev" in issue["description"]
    reply = replies(fake_gitlab, project)[-1]
    assert f"Quarantined `{FLAKY}`" in reply and f"Recorded `{REAL}` as a flake" in reply
    assert "| `/flake unquarantine <test>` |" in reply
    assert (
        f"| `{REAL}` | :repeat: **flake** (labelled by dev; flakebot said"
        in the_note(fake_gitlab, project)["body"]
    )

    payload, _ = note_hook(fake_gitlab, project, f"/flake unquarantine {FLAKY}", dev)
    await deliver(bot, fake_gitlab, "Note Hook", payload)
    assert issue["state"] == "closed"
    assert "Unquarantined by dev" in project.issue_notes[issue["iid"]][-1]["body"]
    assert await bot.server.app[CTX].store.quarantined(KEY) == []
