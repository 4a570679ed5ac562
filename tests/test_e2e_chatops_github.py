"""``/flake`` commands end to end on GitHub: signed ``issue_comment`` deliveries through the service (real
HTTP, SQLite, queue workers, templates, a retrain child process) to the fake GitHub and back."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
import time
from pathlib import Path

import pytest

from bot.config import Settings
from bot.jobs import retrain_command
from bot.modelstore import ModelStore, repo_dir
from bot.web import CTX, create_app
from tests.ci_logs import cause, real_bug
from tests.retrain_data import seed_failures, train_shared_model
from tests.test_e2e_github import REPO, SECRET, seed_run, send, settle

KEY = f"github:{REPO}"
BOT = "flakebot-test[bot]"


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shared-model")
    train_shared_model(path)
    return path


@pytest.fixture
def settings(fake_github, github_app_key, shared_model, tmp_path) -> Settings:
    shutil.copytree(shared_model, tmp_path / "model")  # each test its own model directory
    return Settings(
        github_webhook_secret=SECRET,
        github_app_id=str(github_app_key.app_id),
        github_private_key=github_app_key.private_pem,
        github_api_url=fake_github.url,
        data_dir=tmp_path / "data",
        model_dir=tmp_path / "model",
        workers=2,
    )


@pytest.fixture
async def bot(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


def pull_number(fake) -> int:
    (number,) = fake.repo(REPO).pulls
    return number


async def comment(client, fake, body, *, user="alice", association=None, wait=True):
    payload = fake.issue_comment_payload(REPO, pull_number(fake), body, user=user)
    if association:
        payload["comment"]["author_association"] = association
    response = await send(client, "issue_comment", payload)
    assert response.status == 202
    if wait:
        await settle(client)
    return payload["comment"]


def the_comment(fake) -> dict:
    """flakebot's one comment on the pull request (its replies aside)."""
    (found,) = [
        c
        for c in fake.comments_on(REPO, pull_number(fake))
        if c["body"].startswith("<!-- flakebot:comment -->")
    ]
    return found


def replies(fake) -> list[str]:
    """The bot's replies (not its PR comment), oldest first."""
    return [
        c["body"]
        for c in fake.comments_on(REPO, pull_number(fake))
        if c["user"]["login"] == BOT and not c["body"].startswith("<!-- flakebot:comment -->")
    ]


async def failed_run(client, fake, failures=None, **kwargs):
    rng = random.Random(21)
    failures = failures or [
        ("tests/test_new.py::test_fetch", cause("reset", rng)),
        ("tests/test_cart.py::test_sum", real_bug(rng)),
    ]
    run = seed_run(fake, failures, **kwargs)
    await send(client, "workflow_run", fake.workflow_run_payload(REPO, run))
    await settle(client)
    return run


def store_of(client):
    return client.server.app[CTX].store


# --- who may command ---------------------------------------------------------------------------------


async def test_a_collaborators_commands_are_acknowledged_and_answered_in_one_reply(bot, fake_github):
    await failed_run(bot, fake_github)
    fake_github.set_role(REPO, "alice", "maintain")
    asked = await comment(
        bot,
        fake_github,
        "Let's see:\n/flake status\n/flake explain test_fetch\n/flake frobnicate\n/flake real\n> /flake retry",
    )
    assert len(fake_github.calls("repos/get-collaborator-permission-level")) == 1
    reactions = fake_github.repo(REPO).reactions
    assert [(r["comment_id"], r["content"], r["user"]["login"]) for r in reactions] == [
        (asked["id"], "eyes", BOT)
    ]
    (reply,) = replies(fake_github)
    assert "> `/flake status`" in reply and "**Active model:**" in reply and "the shared model" in reply
    assert "> `/flake explain test_fetch`" in reply and "**`tests/test_new.py::test_fetch`**" in reply
    assert "- **flake** in `tests (ubuntu)`" in reply and "The log: looks like a flake" in reply
    assert "| `tests (ubuntu)` |" in reply  # the history score
    assert "`/flake frobnicate` is not a command" in reply and "| `/flake retrain` |" in reply
    assert "`/flake real` needs a test name: `/flake real <test>`" in reply
    assert "/flake retry" not in reply.replace("| `/flake retry` |", "")  # the quoted line ran nothing
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []


async def test_a_contributor_without_write_access_is_denied_once_and_nothing_happens(bot, fake_github):
    await failed_run(bot, fake_github)
    fake_github.set_role(REPO, "carol", "read")  # author_association says CONTRIBUTOR: not enough
    await comment(bot, fake_github, "/flake retry", user="carol", association="CONTRIBUTOR")
    await comment(
        bot, fake_github, "/flake real test_fetch\n/flake retrain", user="carol", association="MEMBER"
    )
    (reply,) = replies(fake_github)
    assert reply.startswith("@carol thanks!") and "only people with write access" in reply
    assert fake_github.repo(REPO).reactions == []
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []
    assert all(r["label"] is None for r in await store_of(bot).training_records(KEY))
    assert await store_of(bot).deliveries("pending") == [] and not (await store_of(bot).deliveries("dead"))
    # someone unknown to the repository (404 from the permission API) is denied too, and told once
    await comment(bot, fake_github, "/flake retry", user="mallory")
    assert [r.split(" ", 1)[0] for r in replies(fake_github)] == ["@carol", "@mallory"]
    metrics = await (await bot.get("/metrics")).text()
    assert 'flakebot_chatops_commands_total{command="retry",forge="github",outcome="denied"} 2.0' in metrics


async def test_comments_without_commands_bots_and_plain_issues_cost_nothing(bot, fake_github):
    await failed_run(bot, fake_github)
    before = len(fake_github.requests)
    await comment(bot, fake_github, "LGTM, but `/flake retry` might help")
    payload = fake_github.issue_comment_payload(
        REPO, pull_number(fake_github), "/flake retry", user="dependabot[bot]"
    )
    payload["comment"]["user"]["type"] = "Bot"
    await send(bot, "issue_comment", payload)
    issue = fake_github.add_issue(REPO, "A plain issue")
    await send(bot, "issue_comment", fake_github.issue_comment_payload(REPO, issue["number"], "/flake retry"))
    await settle(bot)
    assert fake_github.requests[before:] == []


async def test_a_command_hidden_in_an_html_comment_runs_nothing(bot, fake_github):
    """No reader of the pull request can see it, so no one could object to it (hardening 6)."""
    await failed_run(bot, fake_github)
    fake_github.set_role(REPO, "alice", "write")
    before = len(fake_github.requests)
    await comment(
        bot, fake_github, "Thanks, LGTM!\n<!--\n/flake quarantine tests/test_new.py::test_fetch\n-->"
    )
    assert fake_github.requests[before:] == []  # not even a reaction
    assert await store_of(bot).overrides(KEY) == {}


# --- labels ------------------------------------------------------------------------------------------------


async def test_labels_are_stored_for_retraining_and_correct_the_comment(bot, fake_github):
    await failed_run(bot, fake_github)
    fake_github.set_role(REPO, "alice", "write")
    before = the_comment(fake_github)
    assert "| `tests/test_new.py::test_fetch` | :repeat: **flake** |" in before["body"]
    await comment(
        bot,
        fake_github,
        "/flake real test_fetch\n/flake flake tests/test_cart.py::test_sum\n/flake flake nope",
    )
    after = the_comment(fake_github)
    assert after["id"] == before["id"]
    assert (
        "| `tests/test_new.py::test_fetch` | :x: **real** (labelled by alice; flakebot said flake) |"
        in after["body"]
    )
    assert "| `tests/test_cart.py::test_sum` | :repeat: **flake** (labelled by alice;" in after["body"]
    assert "**2 failed tests:** 1 flake, 1 real." in after["body"]
    labels = {r["test"]: r["label"] for r in await store_of(bot).training_records(KEY)}
    assert labels == {"tests/test_new.py::test_fetch": "real", "tests/test_cart.py::test_sum": "flake"}
    (reply,) = replies(fake_github)
    assert (
        "Recorded `tests/test_new.py::test_fetch` as a real failure" in reply
        and "comment is corrected" in reply
    )
    assert "`nope` matches no test that failed on this pull request" in reply
    explained = await comment(bot, fake_github, "/flake explain test_fetch")
    assert explained and "real, labelled by alice" in replies(fake_github)[-1]


# --- quarantine by hand ------------------------------------------------------------------------------------


async def test_a_manual_quarantine_holds_until_a_maintainer_lifts_it(bot, fake_github):
    fake_github.add_repo(REPO)
    fake_github.add_file(REPO, ".github/flakebot.yml", "quarantine:\n  stable_runs_to_close: 1\n")
    run = await failed_run(bot, fake_github)
    fake_github.set_role(REPO, "alice", "admin")
    await comment(bot, fake_github, "/flake quarantine test_fetch")
    issues = [i for i in fake_github.repo(REPO).issues.values() if "pull_request" not in i]
    assert len(issues) == 1 and issues[0]["state"] == "open"
    assert issues[0]["title"] == "Flaky test: tests/test_new.py::test_fetch"
    assert "Quarantined by alice" in issues[0]["body"] and [lb["name"] for lb in issues[0]["labels"]] == [
        "flaky-test"
    ]
    assert [q["test"] for q in await store_of(bot).quarantined(KEY)] == ["tests/test_new.py::test_fetch"]

    # a green run: the lifecycle would close an issue after one stable run, but not this one
    seed_run(fake_github, [], attempt=2, conclusion="success", run_id=run)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    assert issues[0]["state"] == "open"

    await comment(bot, fake_github, "/flake unquarantine tests/test_new.py::test_fetch")
    assert issues[0]["state"] == "closed"
    assert await store_of(bot).quarantined(KEY) == []
    assert (await store_of(bot).overrides(KEY))["tests/test_new.py::test_fetch"]["override"] == "unquarantine"
    assert "Unquarantined `tests/test_new.py::test_fetch`" in replies(fake_github)[-1]
    await comment(bot, fake_github, "/flake quarantine test_nothing_like_it")
    assert "matches no test in this repository's history" in replies(fake_github)[-1]


# --- retry ---------------------------------------------------------------------------------------------------


async def test_retry_reruns_failed_jobs_real_failures_included_within_the_budget(bot, fake_github):
    run = await failed_run(bot, fake_github)
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []  # a real failure: not by itself
    fake_github.set_role(REPO, "alice", "write")
    await comment(bot, fake_github, "/flake retry please")
    assert len(fake_github.calls("actions/re-run-workflow-failed-jobs")) == 1
    assert "re-running 1 failed job(s), attempt 2 of 3" in replies(fake_github)[-1]

    rng = random.Random(5)
    seed_run(fake_github, [("tests/test_cart.py::test_sum", real_bug(rng))], attempt=3, run_id=run)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    await comment(bot, fake_github, "/flake retry")
    assert "attempt 3 of 3: the retry budget is spent" in replies(fake_github)[-1]
    assert len(fake_github.calls("actions/re-run-workflow-failed-jobs")) == 1


async def test_the_retry_reply_shows_a_hostile_workflow_name_as_it_is(bot, fake_github):
    """The workflow's name is the pull request's to choose (it is in the workflow file): in the reply's
    link it can neither end the link, nor load an image, nor mention anyone."""
    from tests.markdown_check import render_markdown

    name = "CI](https://evil.example) <img src=https://evil.example/p.png> @octo-org/admins"
    rng = random.Random(21)
    run = seed_run(fake_github, [("tests/test_cart.py::test_sum", real_bug(rng))])
    payload = fake_github.workflow_run_payload(REPO, run)
    payload["workflow_run"]["name"] = name
    await send(bot, "workflow_run", payload)
    await settle(bot)
    fake_github.set_role(REPO, "alice", "write")
    await comment(bot, fake_github, "/flake retry")
    shown = render_markdown(replies(fake_github)[-1])
    assert "re-running 1 failed job(s)" in shown.visible
    assert shown.foreign_tags == set() and shown.mentions == []
    assert shown.links and all(link.startswith("https://github.com/") for link in shown.links), shown.links
    assert name in shown.visible.replace("\u200b", "")


# --- retraining ------------------------------------------------------------------------------------------------


async def seed_history(client):
    store = store_of(client).store  # the SQLite store behind the service's async one
    seed_failures(store, KEY)


def repo_models(settings) -> ModelStore:
    return ModelStore(repo_dir(settings.model_dir, KEY))


async def test_retrain_replies_with_the_trial_report_and_the_new_model_takes_over(bot, fake_github, settings):
    await failed_run(bot, fake_github)
    await seed_history(bot)
    fake_github.set_role(REPO, "alice", "write")
    await comment(bot, fake_github, "/flake retrain")
    queued, report = replies(fake_github)
    assert "Retraining this repository's model in the background" in queued
    assert f"### flakebot retrain of `{KEY}`: promoted" in report
    assert "| Precision (of the failures called flaky, how many were) |" in report
    assert "| Flake probability above | Precision | Recall | Called flaky |" in report
    version = repo_models(settings).active_version()
    assert version and f"**Active model now:** `{version}` (this repository's own" in report
    assert "Active model `" in report  # judged against the shared model on the same failures
    await comment(bot, fake_github, "/flake status")
    status = replies(fake_github)[-1]
    assert f"**Active model:** `{version}`, this repository's own" in status and "Trial: precision" in status
    assert "Last retrain of this repository:" in status and "**promoted**" in status
    metrics = await (await bot.get("/metrics")).text()
    assert 'flakebot_retrains_total{outcome="promoted"} 1.0' in metrics


async def test_two_retrains_asked_at_once_run_once(bot, fake_github, settings):
    await failed_run(bot, fake_github)
    await seed_history(bot)
    fake_github.set_role(REPO, "alice", "write")
    fake_github.set_role(REPO, "bob", "write")
    await comment(bot, fake_github, "/flake retrain", wait=False)
    await comment(bot, fake_github, "/flake retrain", user="bob", wait=False)
    await settle(bot)
    answers = replies(fake_github)
    assert sum("in the background" in a for a in answers) == 1
    assert sum("already running" in a for a in answers) == 1
    assert sum("### flakebot retrain of" in a for a in answers) == 1
    assert len(repo_models(settings).versions()) == 1


async def test_a_retrain_never_holds_up_webhook_handling(bot, fake_github, settings, monkeypatch):
    await seed_history(bot)
    real = retrain_command

    def slow(settings, repo, owner):  # the same retrain, two seconds late
        return [sys.executable, "-c", "import os, sys, time; time.sleep(2); os.execv(sys.argv[1], sys.argv[1:])",
                *real(settings, repo, owner)]  # fmt: skip

    monkeypatch.setattr("bot.jobs.retrain_command", slow)
    fake_github.add_repo(REPO)
    fake_github.add_pull(REPO, head_sha="3484a3fb816e0859fd6e1cea078d76385ff50625", head_ref="fix-flaky-test")
    fake_github.set_role(REPO, "alice", "write")
    await comment(bot, fake_github, "/flake retrain", wait=False)
    store = store_of(bot)
    deadline = time.monotonic() + 10
    while not [d for d in await store.deliveries("working") if d["forge"] == "internal"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    rng = random.Random(3)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("dns", rng))])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    while not any(c["body"].startswith("<!-- flakebot:comment") for c in fake_github.comments_on(REPO, 1)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    # the run was judged and commented while the retrain was still running
    assert await store.lock_holder(f"retrain:{KEY}", time.time()) is not None
    assert not any("### flakebot retrain of" in r for r in replies(fake_github))
    await settle(bot)
    assert any("### flakebot retrain of" in r for r in replies(fake_github))


async def test_a_failed_retrain_leaves_the_active_model_untouched(bot, fake_github, settings, monkeypatch):
    await failed_run(bot, fake_github)
    await seed_history(bot)
    shared = ModelStore(settings.model_dir).active_version()
    monkeypatch.setattr(
        "bot.jobs.retrain_command",
        lambda *a: [sys.executable, "-c", "raise SystemExit('Error: disk full (simulated)')"],
    )
    fake_github.set_role(REPO, "alice", "write")
    await comment(bot, fake_github, "/flake retrain")
    report = replies(fake_github)[-1]
    assert "**The retrain failed:** disk full (simulated). Nothing was activated" in report
    assert f"**Active model now:** `{shared}` (the shared model" in report
    assert (
        repo_models(settings).active_version() is None
        and ModelStore(settings.model_dir).active_version() == shared
    )
    assert repo_models(settings).last_retrain()["outcome"] == "failed"
    assert await store_of(bot).lock_holder(f"retrain:{KEY}", time.time()) is None  # free for the next one


async def test_a_retrain_cut_short_by_a_shutdown_is_resumed(
    aiohttp_client, fake_github, settings, monkeypatch, tmp_path
):
    from bot.store import open_store

    pid_file = tmp_path / "child.pid"
    sleeper = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    monkeypatch.setattr("bot.jobs.retrain_command", lambda *a: [sys.executable, "-c", sleeper])
    client = await aiohttp_client(create_app(settings))
    await failed_run(client, fake_github)
    await seed_history(client)
    fake_github.set_role(REPO, "alice", "write")
    await comment(client, fake_github, "/flake retrain", wait=False)
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    child = int(pid_file.read_text())
    await client.close()  # the service stops in the middle of the retrain
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(child, 0)
            await asyncio.sleep(0.02)
    assert repo_models(settings).versions() == []
    store = open_store(settings.data_dir)
    assert [d["event"] for d in store.deliveries("working")] == ["retrain"]
    assert store.recover(time.time() + 3600) == 1  # as when its lease runs out (or its process died)
    store.close()

    monkeypatch.setattr("bot.jobs.retrain_command", retrain_command)
    again = await aiohttp_client(create_app(settings))
    await settle(again)
    assert f"### flakebot retrain of `{KEY}`: promoted" in replies(fake_github)[-1]
    assert repo_models(settings).active_version()


async def test_the_schedule_retrains_repositories_with_new_labels(aiohttp_client, settings, fake_github):
    from dataclasses import replace

    from bot.store import open_store

    store = open_store(settings.data_dir)
    seed_failures(store, KEY)
    store.close()
    client = await aiohttp_client(create_app(replace(settings, retrain_every=7 * 86400.0)))
    deadline = time.monotonic() + 30
    while repo_models(settings).active_version() is None:
        assert time.monotonic() < deadline, "the schedule did not retrain"
        await asyncio.sleep(0.05)
    await settle(client)
    assert repo_models(settings).last_retrain()["outcome"] == "promoted"
    assert [r.method for r in fake_github.requests if r.method == "POST"] == []  # nobody asked: no reply


async def test_in_dry_run_commands_write_nothing_to_github_but_labels_are_kept(bot, fake_github):
    fake_github.add_repo(REPO)
    fake_github.add_file(REPO, ".github/flakebot.yml", "dry_run: true\n")
    await failed_run(bot, fake_github)
    fake_github.set_role(REPO, "alice", "write")
    before = len(fake_github.requests)
    await comment(
        bot, fake_github, "/flake real test_fetch\n/flake retry\n/flake quarantine test_fetch\n/flake status"
    )
    writes = [r.operation for r in fake_github.requests[before:] if r.method in ("POST", "PATCH")]
    assert [w for w in writes if w != "apps/create-installation-access-token"] == []
    assert replies(fake_github) == [] and fake_github.repo(REPO).reactions == []
    labels = {r["test"]: r["label"] for r in await store_of(bot).training_records(KEY)}
    assert labels["tests/test_new.py::test_fetch"] == "real"
