"""The webhook endpoints against hostile or odd deliveries (hardening 1–5): what is refused at the door,
with which answer, and what reaches the queue. The real service (aiohttp app, SQLite store, queue
workers) with the fake GitHub or GitLab on loopback; deliveries signed like the forges sign them."""

from __future__ import annotations

import asyncio
import json

import pytest

from bot.config import Settings
from bot.forge.base import Repo
from bot.web import BUDGET, CTX, QUEUE, create_app
from tests.fakes.github import delivery
from tests.fakes.gitlab import load_webhook as load_gitlab_webhook
from tests.test_e2e_github import REPO, SECRET, seed_run, settle, the_comment


@pytest.fixture
def settings(fake_github, github_app_key, tmp_path) -> Settings:
    return Settings(
        backfill_days=0,  # no first-sight backfill: these tests are about something else
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


# --- 2. signed but malformed payloads ---------------------------------------------------------------


def _set(payload, path, value):
    *parents, key = path.split(".")
    target = payload
    for parent in parents:
        target = target[parent]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return payload


async def test_a_signed_but_malformed_github_delivery_is_refused_with_its_reason(bot, fake_github):
    fake_github.add_repo(REPO)
    fake_github.add_pull(REPO, head_sha="a" * 40, head_ref="topic")
    run = fake_github.add_run(REPO)
    number = next(iter(fake_github.repo(REPO).pulls))
    workflow_run = lambda: fake_github.workflow_run_payload(REPO, run)  # noqa: E731
    comment = lambda: fake_github.issue_comment_payload(REPO, number, "/flake help")  # noqa: E731
    deep = b'{"action": "completed", "workflow_run": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    cases = [
        ("workflow_run", _set(workflow_run(), "action", ["completed"]), "'action' is a list"),
        ("workflow_run", deep, "recursion"),
        ("workflow_run", _set(workflow_run(), "workflow_run.id", "x"), "'id' is a string, not a whole number"),
        ("workflow_run", _set(workflow_run(), "workflow_run.id", True), "'id' is true/false"),
        ("workflow_run", _set(workflow_run(), "repository", KeyError), "lacks 'repository'"),
        ("workflow_run", _set(workflow_run(), "workflow_run", [1, 2]), "'workflow_run' is a list"),
        ("workflow_run", _set(workflow_run(), "workflow_run.pull_requests", [{"number": "1"}]), "'number'"),
        ("issue_comment", _set(comment(), "comment", ["/flake retry"]), "'comment' is a list"),
        ("issue_comment", _set(comment(), "issue.number", None), "lacks 'number'"),
        ("pull_request", _set(fake_github.pull_request_closed_payload(REPO, number), "pull_request.head.sha", 5),
         "'head.sha' is a whole number"),
        ("workflow_run", [1, 2], "must be a JSON object"),
    ]  # fmt: skip
    for event, payload, reason in cases:
        answer = await post(bot, event, payload)
        error = (await answer.json())["error"]
        assert answer.status == 400 and reason in error, (event, reason, answer.status, error)
    assert await store_of(bot).deliveries() == []


async def test_a_malformed_delivery_already_queued_is_given_up_at_once_not_retried(bot, fake_github):
    """One stored by an earlier version (before the checks at the door) fails for good on its first
    attempt: trying it again cannot help."""
    fake_github.add_repo(REPO)
    payload = _set(fake_github.workflow_run_payload(REPO, fake_github.add_run(REPO)), "workflow_run", [1])
    store = store_of(bot)
    await store.enqueue("github", "old-1", "workflow_run", json.dumps(payload).encode())
    bot.server.app[QUEUE].notify()
    await settle(bot)
    (dead,) = await store.deliveries("dead")
    assert dead["attempts"] == 1 and "malformed workflow_run payload" in dead["error"]


@pytest.fixture
async def gitlab_bot(aiohttp_client, fake_gitlab, tmp_path):
    settings = Settings(backfill_days=0, gitlab_url=fake_gitlab.url, gitlab_token=fake_gitlab.token,
                        gitlab_webhook_secret=fake_gitlab.webhook_secret, data_dir=tmp_path / "gitlab-data",
                        model_dir=tmp_path / "model")  # fmt: skip  # a service of its own: a store of its own
    return await aiohttp_client(create_app(settings))


async def test_a_malformed_gitlab_delivery_is_refused_with_its_reason(gitlab_bot, fake_gitlab):
    merge = _set(_set(load_gitlab_webhook("pipeline_failed_mr"), "object_kind", "merge_request"),
                 "object_attributes.action", "merge")  # fmt: skip
    merge["object_attributes"]["last_commit"] = {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"}
    deep = b'{"object_kind": "pipeline", "object_attributes": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    cases = [
        ("Merge Request Hook", _set(json.loads(json.dumps(merge)), "object_attributes.last_commit", ["x"]),
         "object_attributes.last_commit has the wrong type (list)"),
        ("Merge Request Hook", _set(json.loads(json.dumps(merge)), "object_attributes.action", ["merge"]), None),
        ("Merge Request Hook", _set(json.loads(json.dumps(merge)), "project", KeyError), "payload.project is missing"),
        ("Pipeline Hook", _set(load_gitlab_webhook("pipeline_failed_mr"), "object_attributes.id", "x"),
         "object_attributes.id has the wrong type (str)"),
        ("Pipeline Hook", _set(load_gitlab_webhook("pipeline_failed_mr"), "object_kind", ["pipeline"]),
         "expected object_kind 'pipeline'"),
        ("Pipeline Hook", deep, "recursion"),
        ("Job Hook", _set(load_gitlab_webhook("job_retry_success"), "build_id", "x"), "build_id"),
        ("Note Hook", _set(load_gitlab_webhook("note_mr_create"), "object_attributes.note", ["/flake retry"]),
         "object_attributes.note has the wrong type (list)"),
    ]  # fmt: skip
    for event, payload, reason in cases:
        headers, body = fake_gitlab.delivery(event, payload)
        answer = await gitlab_bot.post("/gitlab", data=body, headers=headers)
        if reason is None:  # a merge request event that is not a merge: nothing to do, nothing to refuse
            assert answer.status == 200, (event, await answer.text())
            continue
        error = (await answer.json())["error"]
        assert answer.status == 400 and reason in error, (event, reason, answer.status, error)
    assert await store_of(gitlab_bot).deliveries() == []


# --- 3. repository names ----------------------------------------------------------------------------

TRAVERSALS = ["../../etc/passwd", "octo-org/..", "octo-org/.", "octo-org/octo repo", "octo-org/x?per_page=1",
              "octo-org/x#y", "%2e%2e/x", "octo-org//x", "/octo-org/x", "octo-org/", "octo-org", "a/b/c",
              "octo-org/x\n", "-octo/x", "octo\\org/x"]  # fmt: skip


@pytest.mark.parametrize("name", TRAVERSALS)
def test_a_github_repository_is_only_ever_owner_slash_name(name):
    with pytest.raises(ValueError, match="not a GitHub repository name"):
        Repo("github", name)


@pytest.mark.parametrize("name", ["octo-org/octo-repo", "octocat/.github", "mona_octocorp/a.b-c_d", "O/x"])
def test_real_github_repository_names_are_accepted(name):
    assert Repo("github", name).full_name == name


@pytest.mark.parametrize("name", ["../../etc/passwd", "group/../x", "group/./x", "group//x", "group", "-g/x",
                                  "group/sub/x?y", "g/" + "s/" * 21 + "x"])  # fmt: skip
def test_a_gitlab_project_is_only_ever_a_namespace_path(name):
    with pytest.raises(ValueError, match="not a GitLab project path"):
        Repo("gitlab", name)


@pytest.mark.parametrize(
    "name", ["gitlab-org/gitlab-test", "group/sub/sub2/project", "user/.dotfiles", "g_1/p.2"]
)
def test_real_gitlab_project_paths_are_accepted(name):
    assert Repo("gitlab", name).full_name == name


async def test_a_delivery_naming_a_path_for_its_repository_reaches_no_api(bot, fake_github):
    """``../../etc/passwd`` made flakebot send authenticated requests outside /repos/."""
    fake_github.add_repo(REPO)
    run = fake_github.add_run(REPO)
    for name in ("../../etc/passwd", "octo-org/../../user"):
        payload = fake_github.workflow_run_payload(REPO, run)
        payload["repository"]["full_name"] = name
        answer = await post(bot, "workflow_run", payload)
        assert answer.status == 400 and "not a GitHub repository name" in (await answer.json())["error"]
    await settle(bot)
    assert fake_github.requests == [] and await store_of(bot).deliveries() == []


async def test_a_gitlab_delivery_naming_a_path_for_its_project_is_refused(gitlab_bot, fake_gitlab):
    payload = load_gitlab_webhook("pipeline_failed_mr")
    payload["project"]["path_with_namespace"] = "../../etc/passwd"
    headers, body = fake_gitlab.delivery("Pipeline Hook", payload)
    answer = await gitlab_bot.post("/gitlab", data=body, headers=headers)
    assert answer.status == 400 and "not a GitLab project path" in (await answer.json())["error"]


# --- 4. replays ---------------------------------------------------------------------------------------


async def test_a_captured_delivery_replayed_under_new_ids_is_processed_once(bot, fake_github):
    """X-GitHub-Delivery is not signed: a replay with a fresh id passed the id check every time."""
    fake_github.add_repo(REPO)
    fake_github.add_pull(REPO, head_sha="a" * 40, head_ref="topic")
    number = next(iter(fake_github.repo(REPO).pulls))
    fake_github.set_role(REPO, "octocat", "write")
    headers, body = delivery(
        "issue_comment", fake_github.issue_comment_payload(REPO, number, "/flake help"), SECRET
    )
    answers = []
    for i in range(3):
        answer = await bot.post("/github", data=body, headers={**headers, "X-GitHub-Delivery": f"replay-{i}"})
        answers.append((answer.status, await answer.json()))
        await settle(bot)
    assert [status for status, _ in answers] == [202, 202, 202]
    assert [a["queued"] for _, a in answers] == [True, False, False]
    assert "same signed body" in answers[1][1]["duplicate"]
    assert len(fake_github.calls("issues/create-comment")) == 1  # one reply, not three
    assert len(await store_of(bot).deliveries()) == 1


async def test_only_sha256_signatures_are_accepted(bot, fake_github):
    import hashlib
    import hmac

    fake_github.add_repo(REPO)
    headers, body = delivery(
        "workflow_run", fake_github.workflow_run_payload(REPO, fake_github.add_run(REPO)), SECRET
    )
    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()  # a valid SHA-1 signature
    for signature in (sha1, headers["X-Hub-Signature-256"].removeprefix("sha256="), "SHA256=" + "0" * 64):
        answer = await bot.post("/github", data=body, headers={**headers, "X-Hub-Signature-256": signature})
        assert answer.status == 401 and "sha256=" in (await answer.json())["error"], signature
    assert await store_of(bot).deliveries() == []


def test_a_body_is_a_replay_within_the_window_only(store):
    digest = b"\x01" * 32
    assert store.remember_body("github", digest, 1000.0, 600.0) is True
    assert store.remember_body("github", digest, 1500.0, 600.0) is False
    assert store.remember_body("gitlab", digest, 1500.0, 600.0) is True  # per forge
    assert store.remember_body("github", b"\x02" * 32, 1500.0, 600.0) is True
    assert store.remember_body("github", digest, 1700.0, 600.0) is True  # 700 s later: out of the window
    store.forget_body("github", digest)
    assert store.remember_body("github", digest, 1701.0, 600.0) is True


# --- 5. memory before authentication ----------------------------------------------------------------


async def raw_post(client, path, headers, body=b"", *, then_wait=True):
    """A request written on a socket of its own: the headers, ``body`` (maybe much less than the
    Content-Length says), then the answer's status line (None when none came within 5 s)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {client.server.host}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    if not then_wait:
        return reader, writer
    try:
        status = await asyncio.wait_for(reader.readline(), 5)
    except TimeoutError:
        status = b""
    writer.close()
    return int(status.split()[1]) if status else None


async def test_a_body_declared_over_the_cap_or_unsigned_is_refused_before_it_is_read(bot, gitlab_bot):
    cap = bot.settings.max_body_bytes
    signed = {"X-GitHub-Event": "workflow_run", "X-Hub-Signature-256": "sha256=" + "0" * 64,
              "Content-Type": "application/json"}  # fmt: skip
    assert await raw_post(bot, "/github", {**signed, "Content-Length": str(cap + 1)}) == 413
    unsigned = {k: v for k, v in signed.items() if k != "X-Hub-Signature-256"}
    assert await raw_post(bot, "/github", {**unsigned, "Content-Length": str(cap)}) == 401
    wrong_token = {"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": "guess", "Content-Length": str(cap)}
    assert await raw_post(gitlab_bot, "/gitlab", wrong_token) == 401


async def test_bodies_not_yet_authenticated_share_one_bounded_budget(aiohttp_client, settings, fake_github,
                                                                     monkeypatch):  # fmt: skip
    """Senders that declare big bodies and trickle them hold at most the budget in all; a sender that
    finds no room is told to come back (503); once they are gone a real delivery goes through."""
    from dataclasses import replace

    import bot.intake

    monkeypatch.setattr(bot.intake, "BUDGET_WAIT", 0.5)
    budget = 256 * 1024
    client = await aiohttp_client(create_app(replace(settings, max_unauthenticated_bytes=budget)))
    headers = {"X-GitHub-Event": "workflow_run", "X-Hub-Signature-256": "sha256=" + "0" * 64,
               "Content-Type": "application/json", "Content-Length": str(1024 * 1024)}  # fmt: skip
    held, peak = [], 0
    for _ in range(4):
        held.append(await raw_post(client, "/github", headers, b"x" * 200 * 1024, then_wait=False))
        for _ in range(20):
            await asyncio.sleep(0.02)
            peak = max(peak, client.server.app[BUDGET].used)
    statuses = []
    for reader, _writer in held:
        try:
            statuses.append(await asyncio.wait_for(reader.readline(), 2))
        except TimeoutError:
            statuses.append(b"")  # still waiting for the rest of its body
    assert 0 < peak <= budget
    assert any(b" 503 " in line for line in statuses), statuses
    for _reader, writer in held:
        writer.close()
    for _ in range(100):
        if client.server.app[BUDGET].used == 0:
            break
        await asyncio.sleep(0.02)
    assert client.server.app[BUDGET].used == 0
    fake_github.add_repo(REPO)
    answer = await post(
        client, "workflow_run", fake_github.workflow_run_payload(REPO, fake_github.add_run(REPO))
    )
    assert answer.status == 202
    metrics = await (await client.get("/metrics")).text()
    assert "flakebot_webhook_unauthenticated_bytes 0.0" in metrics
