"""The GitHub adapter against the fake GitHub, over real HTTP on loopback."""

from __future__ import annotations

import io
import json
import logging
import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bot.forge.base import Change, ForgeError, Job, RateLimited, Repo
from bot.forge.github import MAX_BODY_CHARS, GitHubForge
from bot.forge.github_payloads import (
    PayloadError,
    note_from_comment,
    repo_from_payload,
    run_from_check_suite,
    run_from_workflow_run,
)
from tests.fakes.github import Fault, load_webhook

ROOT = Path(__file__).resolve().parent.parent

REPO = "octo-org/octo-repo"
SHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"
JUNIT = (
    b'<?xml version="1.0"?>\n<testsuite name="unit" tests="2" failures="1"><testcase name="a"/></testsuite>\n'
)


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def repo(fake_github):
    fake_github.add_repo(REPO)
    return Repo(forge="github", full_name=REPO, installation_id=957387)


@pytest.fixture
def seeded_run(fake_github, repo):
    """A failed run on a PR branch, parsed from a real webhook payload pointed at the fake."""
    run_id = fake_github.add_run(REPO, head_sha=SHA, head_branch="fix-flaky-test")
    fake_github.add_pull(REPO, head_sha=SHA, head_ref="fix-flaky-test")
    return run_from_workflow_run(fake_github.workflow_run_payload(REPO, run_id))


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def make_forge(session, fake_github, github_app_key, github_sleeps):
    async def sleep(seconds: float) -> None:
        github_sleeps.append(seconds)

    def make(**options) -> GitHubForge:
        defaults = {
            "api_url": fake_github.url,
            "app_id": github_app_key.app_id,
            "private_key": github_app_key.private_pem,
            "timeout": 1.0,
            "sleep": sleep,
        }
        return GitHubForge(session, **(defaults | options))

    return make


# --- construction ----------------------------------------------------------------------------
async def test_exactly_one_kind_of_credentials(session, github_app_key):
    with pytest.raises(ValueError, match="exactly one"):
        GitHubForge(session)
    with pytest.raises(ValueError, match="exactly one"):
        GitHubForge(session, token="t", app_id=1, private_key=github_app_key.private_pem)
    with pytest.raises(ValueError, match="both app_id and private_key"):
        GitHubForge(session, app_id=1)
    with pytest.raises(ValueError, match="PEM"):
        GitHubForge(session, app_id=1, private_key="/etc/flakebot/key.pem")


async def test_app_auth_needs_the_installation_id(github_forge, fake_github):
    fake_github.add_repo(REPO)
    with pytest.raises(ForgeError, match="installation id"):
        await github_forge.read_file(Repo(forge="github", full_name=REPO), "x")
    assert fake_github.requests == []


# --- reading a run ---------------------------------------------------------------------------
async def test_list_jobs_follows_pagination_and_keeps_the_latest_attempt(
    github_forge, fake_github, seeded_run
):
    fake_github.page_size = 2
    for index in range(5):
        fake_github.add_job(
            REPO, seeded_run.id, f"test ({index})", conclusion="failure" if index % 2 else "success"
        )
    fake_github.add_job(REPO, seeded_run.id, "test (0)", conclusion="failure", attempt=2)
    seeded_run = replace(seeded_run, attempt=2)  # the delivery of the attempt that re-ran it
    jobs = await github_forge.list_jobs(seeded_run)
    assert sorted(job.name for job in jobs) == [f"test ({i})" for i in range(5)]
    rerun = next(job for job in jobs if job.name == "test (0)")
    assert rerun.attempt == 2 and rerun.failed
    assert all(job.html_url.startswith("https://github.com/") and job.duration == 119.0 for job in jobs)
    pages = fake_github.calls("actions/list-jobs-for-workflow-run")
    assert len(pages) == 3 and pages[0].query["filter"] == ["latest"]


async def test_job_log_follows_the_redirect_without_credentials(github_forge, fake_github, seeded_run, repo):
    log = b"".join(b"2024-01-01T00:00:%02dZ line %d\n" % (i % 60, i) for i in range(20_000))
    job = Job(**{k: v for k, v in _job(fake_github, seeded_run, log).items()})
    chunks = [chunk async for chunk in github_forge.job_log(job, repo, max_bytes=10_000_000)]
    assert b"".join(chunks) == log and len(chunks) > 1
    (blob,) = fake_github.blob_requests
    assert blob.auth is None  # and the fixture checks no Authorization reached the blob host
    assert fake_github.calls("actions/download-job-logs-for-workflow-run")[0].auth == "token"


def _job(fake, run, log, **options):
    data = fake.add_job(REPO, run.id, "build", log=log, **options)
    return {
        "id": data["id"],
        "name": data["name"],
        "conclusion": data["conclusion"],
        "html_url": data["html_url"],
    }


async def test_job_log_stops_at_the_cap(github_forge, fake_github, seeded_run, repo):
    log = bytes(range(256)) * 8192  # 2 MiB of binary
    job = Job(**_job(fake_github, seeded_run, log))
    data = b"".join([chunk async for chunk in github_forge.job_log(job, repo, max_bytes=100_000)])
    assert data == log[:100_000]


async def test_expired_log_is_a_clear_error(github_forge, fake_github, seeded_run, repo):
    job = Job(**_job(fake_github, seeded_run, None))
    with pytest.raises(ForgeError, match="expired or was deleted") as caught:
        [chunk async for chunk in github_forge.job_log(job, repo, max_bytes=1000)]
    assert caught.value.status == 410
    assert fake_github.blob_requests == []


async def test_blob_host_errors_are_retried(github_forge, fake_github, seeded_run, repo, github_sleeps):
    job = Job(**_job(fake_github, seeded_run, b"the log"))
    fake_github.fail("blob:logs", 503)
    assert b"".join([c async for c in github_forge.job_log(job, repo, max_bytes=1000)]) == b"the log"
    assert len(fake_github.blob_requests) == 2 and github_sleeps == [1.0]


async def test_test_reports_reads_junit_from_report_artifacts_only(
    github_forge, fake_github, seeded_run, caplog
):
    fake = fake_github
    fake.add_artifact(
        REPO, seeded_run.id, "junit-results", zipped({"out/unit.xml": JUNIT, "out/notes.txt": b"x"})
    )
    fake.add_artifact(REPO, seeded_run.id, "coverage", zipped({"coverage.xml": JUNIT}))
    fake.add_artifact(REPO, seeded_run.id, "test-results-old", zipped({"a.xml": JUNIT}), expired=True)
    bomb = b"<testsuite>" + b"\n" * 30_000_000 + b"</testsuite>"
    fake.add_artifact(REPO, seeded_run.id, "test-report-bomb", zipped({"bomb.xml": bomb}))
    fake.add_artifact(REPO, seeded_run.id, "Test output", b"this is no zip")
    with caplog.at_level(logging.WARNING):
        reports = await github_forge.test_reports(seeded_run, max_bytes=1_000_000)
    assert [(r.kind, r.name, r.data) for r in reports] == [("junit-xml", "junit-results/out/unit.xml", JUNIT)]
    downloads = fake.calls("actions/download-artifact")
    assert len(downloads) == 3  # not coverage, not the expired one
    assert "bomb.xml" in caplog.text and "not a readable zip" in caplog.text


async def test_artifact_over_the_cap_is_not_downloaded(github_forge, fake_github, seeded_run):
    fake_github.add_artifact(
        REPO, seeded_run.id, "junit", zipped({"a.xml": JUNIT, "b.bin": os.urandom(5000)})
    )
    assert await github_forge.test_reports(seeded_run, max_bytes=1_000) == []
    assert fake_github.calls("actions/download-artifact") == []


async def test_changes_for_run_fetches_the_prs_the_payload_names(github_forge, fake_github, seeded_run):
    assert seeded_run.change_numbers == [1]
    fake_github.add_pull(REPO, head_sha=SHA, head_ref="other", state="closed")
    (change,) = await github_forge.changes_for_run(seeded_run)
    assert change == Change(1, f"https://github.com/{REPO}/pull/1", SHA, "fix-flaky-test", "open")
    assert [r.path for r in fake_github.requests if r.host == "api"][1:] == [f"/repos/{REPO}/pulls/1"]


async def test_fork_prs_are_found_by_head_owner_and_branch(github_forge, fake_github, repo):
    run_id = fake_github.add_run(REPO, head_sha=SHA, head_branch="patch-1")
    fake_github.add_pull(REPO, head_sha="0" * 40, head_ref="patch-1", head_owner="someone")  # other fork
    fork_pr = fake_github.add_pull(REPO, head_sha=SHA, head_ref="patch-1", head_owner="contributor")
    run = run_from_workflow_run(fake_github.workflow_run_payload(REPO, run_id))
    assert run.change_numbers == [] and run.head_owner == "contributor"
    changes = await github_forge.changes_for_run(run)
    assert [c.number for c in changes] == [fork_pr["number"]]
    (lookup,) = fake_github.calls("pulls/list")
    assert lookup.query["head"] == ["contributor:patch-1"] and lookup.query["state"] == ["open"]


async def test_fork_fallback_scans_open_prs_for_the_sha(github_forge, fake_github, repo):
    fake_github.page_size = 2
    run_id = fake_github.add_run(REPO, head_sha=SHA, head_branch="renamed-meanwhile")
    for index in range(4):
        fake_github.add_pull(REPO, head_sha=f"{index}" * 40, head_ref=f"b{index}", head_owner="forker")
    wanted = fake_github.add_pull(REPO, head_sha=SHA, head_ref="new-name", head_owner="forker")
    run = run_from_workflow_run(fake_github.workflow_run_payload(REPO, run_id))
    assert [c.number for c in await github_forge.changes_for_run(run)] == [wanted["number"]]
    assert len(fake_github.calls("pulls/list")) == 1 + 3  # the head= query, then three pages


async def test_read_file(github_forge, fake_github, repo):
    fake_github.add_file(REPO, ".github/flakebot.yml", "retries: 2\nlabel: flaky ✓\n")
    fake_github.add_file(REPO, ".github/flakebot.yml", "retries: 3\n", ref="feature")
    fake_github.add_file(REPO, "binary.bin", b"\xff\xfe\x00")
    assert await github_forge.read_file(repo, ".github/flakebot.yml") == "retries: 2\nlabel: flaky ✓\n"
    assert await github_forge.read_file(repo, ".github/flakebot.yml", ref="feature") == "retries: 3\n"
    assert await github_forge.read_file(repo, ".flakebot.yml") is None
    with pytest.raises(ForgeError, match="not UTF-8"):
        await github_forge.read_file(repo, "binary.bin")
    assert fake_github.calls("repos/get-content")[0].path == f"/repos/{REPO}/contents/.github/flakebot.yml"


async def test_a_malformed_answer_is_a_forge_error(github_forge, fake_github, seeded_run):
    fake_github.inject("pulls/get", Fault("status", status=200, message="not a pull request"))
    with pytest.raises(ForgeError, match="unreadable answer"):
        await github_forge.changes_for_run(seeded_run)


# --- acting ----------------------------------------------------------------------------------
async def test_upsert_note_creates_once_then_edits_in_place(github_forge, fake_github, repo):
    pull = fake_github.add_pull(REPO, head_sha=SHA, head_ref="b")
    change = Change(pull["number"], pull["html_url"], SHA, "b")
    marker = "<!-- flakebot:summary -->"
    fake_github.page_size = 2
    for index in range(5):
        fake_github.add_comment(REPO, change.number, f"comment {index}")
    fake_github.add_comment(REPO, change.number, f"quoting the bot: {marker}", user="troll")
    first = await github_forge.upsert_note(repo, change, marker, f"{marker}\n2 failures, 1 flaky")
    second = await github_forge.upsert_note(repo, change, marker, f"{marker}\n2 failures, 2 flaky")
    third = await github_forge.upsert_note(repo, change, marker, f"{marker}\n2 failures, 2 flaky")
    assert first.id == second.id == third.id and first.author == "flakebot-test[bot]"
    mine = [
        c for c in fake_github.comments_on(REPO, change.number) if c["user"]["login"] == "flakebot-test[bot]"
    ]
    assert len(mine) == 1 and mine[0]["body"].endswith("2 flaky")
    assert len(fake_github.calls("issues/create-comment")) == 1
    assert len(fake_github.calls("issues/update-comment")) == 1  # the unchanged third body is not sent
    assert len(fake_github.calls("apps/get-authenticated")) == 1  # the bot's login is asked once


async def test_the_bot_login_is_asked_again_after_a_transient_failure(github_forge, fake_github, repo):
    pull = fake_github.add_pull(REPO, head_sha=SHA, head_ref="b")
    change = Change(pull["number"], "", SHA, "b")
    fake_github.fail("apps/get-authenticated", 502, times=4)
    await github_forge.upsert_note(repo, change, "<!-- m -->", "one <!-- m -->")  # marker only
    await github_forge.upsert_note(repo, change, "<!-- m -->", "two <!-- m -->")
    assert len(fake_github.calls("apps/get-authenticated")) == 5
    assert [c["body"] for c in fake_github.comments_on(REPO, change.number)] == ["two <!-- m -->"]


async def test_bodies_over_githubs_limit_are_cut_in_the_middle_and_a_lost_marker_is_refused(
    github_forge, fake_github, repo, caplog
):
    pull = fake_github.add_pull(REPO, head_sha=SHA, head_ref="b")
    change = Change(pull["number"], "", SHA, "b")
    marker = "<!-- m -->"
    with pytest.raises(ValueError, match="marker"):
        await github_forge.upsert_note(repo, change, marker, "no marker here")
    assert fake_github.requests == []
    note = await github_forge.upsert_note(repo, change, marker, marker + "x" * MAX_BODY_CHARS)
    (posted,) = fake_github.comments_on(REPO, change.number)
    assert posted["body"] == note.body and len(note.body) == MAX_BODY_CHARS
    assert note.body.startswith(marker) and "characters cut" in note.body
    issue = await github_forge.create_issue(repo, "t", "x" * (MAX_BODY_CHARS + 1), [])
    assert len(issue.body) == MAX_BODY_CHARS and "characters cut" in issue.body
    assert "cut in the middle" in caplog.text


async def test_reply_and_acknowledge(github_forge, fake_github, repo):
    pull = fake_github.add_pull(REPO, head_sha=SHA, head_ref="b")
    command = fake_github.add_comment(REPO, pull["number"], "/flakebot retry", user="maintainer")
    await github_forge.acknowledge(repo, pull["number"], command["id"])
    await github_forge.acknowledge(repo, pull["number"], command["id"])  # GitHub answers 200 the second time
    note = await github_forge.reply(repo, pull["number"], "Re-running the failed jobs.")
    assert note.body == "Re-running the failed jobs." and note.html_url.endswith(f"#issuecomment-{note.id}")
    reactions = fake_github.repo(REPO).reactions
    assert [(r["content"], r["comment_id"]) for r in reactions] == [("eyes", command["id"])]


async def test_retry_jobs(github_forge, fake_github, seeded_run):
    failed = [Job(1, "test", "failure", "")]
    await github_forge.retry_jobs(seeded_run, [])
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []
    await github_forge.retry_jobs(seeded_run, failed)
    assert fake_github.repo(REPO).runs[seeded_run.id]["reruns"] == 1
    # now in progress: GitHub refuses a second re-run with 403
    with pytest.raises(ForgeError, match="still in progress") as caught:
        await github_forge.retry_jobs(seeded_run, failed)
    assert caught.value.status == 403
    assert len(fake_github.calls("actions/re-run-workflow-failed-jobs")) == 2


async def test_labels_are_created_before_the_issue(github_forge, fake_github, repo):
    fake_github.add_label(REPO, "flaky")
    issue = await github_forge.create_issue(repo, "Flaky: test_x", "It flakes.", ["flaky", "flakebot"])
    assert sorted(issue.labels) == ["flakebot", "flaky"] and fake_github.dropped_labels == []
    operations = [r.operation for r in fake_github.requests if r.operation.startswith("issues/")]
    assert operations == ["issues/get-label", "issues/get-label", "issues/create-label", "issues/create"]
    await github_forge.ensure_labels(repo, ["flaky", "flakebot"])  # known now: no requests
    assert len(fake_github.calls("issues/get-label")) == 2


async def test_find_issues_and_update_issue(github_forge, fake_github, repo):
    fake = fake_github
    old = fake.add_issue(REPO, "Flaky: test_a", labels=("flaky",), state="closed", closed_by="maintainer")
    fake.add_issue(REPO, "unrelated", labels=("bug",))
    pull = fake.add_pull(REPO, head_sha=SHA, head_ref="b")
    fake.repo(REPO).issues[pull["number"]]["labels"] = [fake.add_label(REPO, "flaky")]
    new = fake.add_issue(REPO, "Flaky: test_b", labels=("flaky",))
    issues = await github_forge.find_issues(repo, "flaky")
    assert [(i.number, i.state, i.closed_by) for i in issues] == [
        (new["number"], "open", None),
        (old["number"], "closed", "maintainer"),
    ]
    (listing,) = fake.calls("issues/list-for-repo")
    assert listing.query["state"] == ["all"] and listing.query["labels"] == ["flaky"]
    closed = await github_forge.update_issue(
        repo, new["number"], state="closed", comment="Stable for 30 runs."
    )
    assert closed.state == "closed" and closed.closed_by == "flakebot-test[bot]"
    assert fake.comments_on(REPO, new["number"])[0]["body"] == "Stable for 30 runs."
    same = await github_forge.update_issue(repo, new["number"], comment="Still stable.")
    assert same.state == "closed" and len(fake.calls("issues/update")) == 1


async def test_assign_issue_leaves_out_who_github_refuses(github_forge, fake_github, repo):
    issue = fake_github.add_issue(REPO, "Flaky test: t", labels=("flaky-test",))
    fake_github.set_role(REPO, "alice", "write")
    fake_github.set_role(REPO, "bob", "read")
    assert await github_forge.assign_issue(repo, issue["number"], ["alice", "bob"]) == ["alice", "bob"]
    assert len(fake_github.calls("issues/update")) == 1  # one call when GitHub takes the whole list
    # GitHub refuses a list with one login it cannot assign (422): the others are assigned one by one
    got = await github_forge.assign_issue(repo, issue["number"], ["alice", "gone-user", "bob"])
    assert got == ["alice", "bob"]
    assert [a["login"] for a in fake_github.repo(REPO).issues[issue["number"]]["assignees"]] == [
        "alice",
        "bob",
    ]
    assert await github_forge.assign_issue(repo, issue["number"], ["gone-user"]) == []


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
        (None, "none"),
    ],
)
async def test_permission_mapping(github_forge, fake_github, repo, role, expected):
    if role:
        fake_github.set_role(REPO, "alice", role)
    assert await github_forge.permission(repo, "alice") == expected


# --- authentication --------------------------------------------------------------------------
async def test_installation_token_is_cached_and_renewed_after_a_401(github_forge, fake_github, repo):
    for _ in range(3):
        await github_forge.permission(repo, "nobody")
    assert fake_github.tokens_issued == 1
    fake_github.expire_tokens()
    assert await github_forge.permission(repo, "nobody") == "none"
    assert fake_github.tokens_issued == 2
    statuses = [r.status for r in fake_github.calls("repos/get-collaborator-permission-level")]
    assert statuses == [404, 404, 404, 401, 404]


async def test_installation_token_is_renewed_shortly_before_it_expires(make_forge, fake_github, repo):
    now = [time.time()]
    forge = make_forge(clock=lambda: now[0])
    await forge.permission(repo, "nobody")
    now[0] += 3600 - 600  # ten minutes before expiry: still good
    await forge.permission(repo, "nobody")
    assert fake_github.tokens_issued == 1
    now[0] += 400  # within five minutes of expiry: renew without waiting for a 401
    await forge.permission(repo, "nobody")
    assert fake_github.tokens_issued == 2
    assert 401 not in [r.status for r in fake_github.requests]


async def test_a_bad_app_key_is_a_clear_error(make_forge, fake_github, repo):
    other = make_forge(app_id=999)  # the JWT's issuer is not the App the fake knows
    with pytest.raises(ForgeError, match="installation token") as caught:
        await other.permission(repo, "x")
    assert caught.value.status == 401


async def test_personal_token_mode(make_forge, fake_github, repo):
    forge = make_forge(app_id=None, private_key=None, token=fake_github.personal_token)
    pull = fake_github.add_pull(REPO, head_sha=SHA, head_ref="b")
    note = await forge.upsert_note(repo, Change(pull["number"], "", SHA, "b"), "<!-- m -->", "hi <!-- m -->")
    assert note.author == "flakebot-user"
    assert fake_github.tokens_issued == 0 and len(fake_github.calls("users/get-authenticated")) == 1


# --- failures and retries --------------------------------------------------------------------
async def test_server_errors_are_retried_then_succeed(github_forge, fake_github, seeded_run, github_sleeps):
    fake_github.fail("actions/list-jobs-for-workflow-run", 502, times=2)
    assert await github_forge.list_jobs(seeded_run) == []
    assert github_sleeps == [1.0, 2.0]
    assert len(fake_github.calls("actions/list-jobs-for-workflow-run")) == 3


async def test_server_errors_that_persist_raise_with_the_status(github_forge, fake_github, seeded_run):
    fake_github.fail("actions/list-jobs-for-workflow-run", 500, times=10)
    with pytest.raises(ForgeError) as caught:
        await github_forge.list_jobs(seeded_run)
    assert caught.value.status == 500
    assert len(fake_github.calls("actions/list-jobs-for-workflow-run")) == 4


async def test_client_errors_are_not_retried(github_forge, fake_github, repo, github_sleeps):
    fake_github.fail("issues/create", 422)
    with pytest.raises(ForgeError) as caught:
        await github_forge.create_issue(repo, "t", "b", [])
    assert caught.value.status == 422 and github_sleeps == []


async def test_retry_after_is_honoured(github_forge, fake_github, repo, github_sleeps):
    fake_github.rate_limit("repos/get-collaborator-permission-level", retry_after=7)
    fake_github.rate_limit("repos/get-collaborator-permission-level", retry_after=3, status=429)
    assert await github_forge.permission(repo, "x") == "none"
    assert github_sleeps == [7.0, 3.0]


async def test_primary_rate_limit_waits_for_the_reset_within_the_cap(
    make_forge, fake_github, repo, github_sleeps
):
    forge = make_forge(max_wait=120)
    fake_github.rate_limit("repos/get-collaborator-permission-level", retry_after=None, reset_in=30)
    assert await forge.permission(repo, "x") == "none"
    assert len(github_sleeps) == 1 and 29 <= github_sleeps[0] <= 32


async def test_rate_limit_longer_than_the_cap_gives_up_at_once(
    github_forge, fake_github, repo, github_sleeps
):
    fake_github.rate_limit("repos/get-collaborator-permission-level", retry_after=None, reset_in=3600)
    with pytest.raises(RateLimited, match="GitHub asks to wait 36") as caught:
        await github_forge.permission(repo, "x")
    assert github_sleeps == [] and 3599 <= caught.value.wait <= 3602  # the queue waits it out


async def test_a_rate_limit_that_outlasts_the_attempts_is_a_wait_not_a_refusal(
    make_forge, fake_github, repo, github_sleeps
):
    forge = make_forge(max_attempts=2)
    fake_github.rate_limit("repos/get-collaborator-permission-level", retry_after=5, times=2)
    with pytest.raises(RateLimited) as caught:
        await forge.permission(repo, "x")
    assert github_sleeps == [5.0] and caught.value.wait == 5.0 and caught.value.status == 403


async def test_timeouts_are_retried_then_raise(make_forge, fake_github, repo, github_sleeps):
    forge = make_forge(timeout=0.2, max_attempts=2)
    fake_github.delay("repos/get-collaborator-permission-level", 0.6)
    assert await forge.permission(repo, "x") == "none"  # the second attempt is quick
    fake_github.delay("repos/get-collaborator-permission-level", 0.6, times=2)
    with pytest.raises(ForgeError, match="timed out"):
        await forge.permission(repo, "x")
    assert github_sleeps == [1.0, 1.0]


async def test_dropped_connections_are_retried(github_forge, fake_github, repo):
    fake_github.drop("repos/get-collaborator-permission-level", times=2)
    assert await github_forge.permission(repo, "x") == "none"


async def test_unreachable_github_is_a_forge_error(session, repo, github_sleeps):
    async def sleep(seconds):
        github_sleeps.append(seconds)

    forge = GitHubForge(session, api_url="http://127.0.0.1:9", token="t" * 40, timeout=0.5, sleep=sleep)
    with pytest.raises(ForgeError, match="4 attempts"):
        await forge.permission(repo, "x")
    assert github_sleeps == [1.0, 2.0, 4.0]


async def test_secrets_never_reach_the_logs(
    github_forge, fake_github, seeded_run, repo, caplog, github_app_key
):
    job = Job(**_job(fake_github, seeded_run, b"log"))
    fake_github.fail("blob:logs", 500)
    fake_github.fail("apps/create-installation-access-token", 503)
    with caplog.at_level(logging.DEBUG):
        [c async for c in github_forge.job_log(job, repo, 100)]
        fake_github.expire_tokens()
        await github_forge.permission(repo, "x")
    assert "retrying" in caplog.text
    for secret in [*fake_github.tokens, "sig=", "BEGIN PRIVATE KEY", github_app_key.private_pem[40:80]]:
        assert secret not in caplog.text


# --- third-party check suites ----------------------------------------------------------------
async def test_third_party_check_suite_runs_use_the_checks_api(github_forge, fake_github, repo):
    payload = load_webhook("check_suite.completed")
    payload["repository"]["full_name"] = REPO
    run = run_from_check_suite(payload)
    assert run is not None and run.event == "check_suite" and run.id == payload["check_suite"]["id"]
    fake_github.add_check_run(REPO, run.id, "lint", output_text="E501 line too long")
    fake_github.add_check_run(REPO, run.id + 1, "other suite")
    (job,) = await github_forge.list_jobs(run)
    assert job.name == "lint" and job.failed
    text = b"".join([c async for c in github_forge.job_log(job, repo, 1000)])
    assert b"E501 line too long" in text
    assert await github_forge.test_reports(run, 1000) == []
    with pytest.raises(ForgeError, match="third-party"):
        await github_forge.retry_jobs(run, [job])


# --- payload parsers on real payloads ---------------------------------------------------------
def test_workflow_run_payload_with_a_pr():
    run = run_from_workflow_run(load_webhook("workflow_run.completed.failure"))
    assert (run.id, run.sha, run.branch, run.attempt) == (289782451, SHA, "master", 1)
    assert run.failed and run.conclusion == "failure" and run.change_numbers == [2]
    assert run.name == "test" and run.event == "repository_dispatch" and run.head_owner == "octo-org"
    assert run.html_url == "https://github.com/octo-org/octo-repo/actions/runs/289782451"
    assert run.repo == Repo(
        "github", "octo-org/octo-repo", 300029405, 957387, "https://github.com/octo-org/octo-repo", "master"
    )


def test_workflow_run_payload_from_a_fork_and_a_success():
    fork = run_from_workflow_run(load_webhook("workflow_run.completed.failure-fork"))
    assert (
        fork.change_numbers == []
        and fork.head_owner == "octo-contributor"
        and fork.branch == "fix-flaky-test"
    )
    success = run_from_workflow_run(load_webhook("workflow_run.completed.success"))
    assert not success.failed and success.change_numbers == []


def test_check_suites_made_by_actions_are_left_to_workflow_run():
    assert run_from_check_suite(load_webhook("check_suite.completed.actions")) is None
    suite = run_from_check_suite(load_webhook("check_suite.completed"))
    assert suite.name == "octocoders-linter" and suite.change_numbers == [2] and not suite.failed


def test_issue_comment_and_ping_payloads():
    payload = load_webhook("issue_comment.created.pull")
    note = note_from_comment(payload["comment"])
    assert note.author == "Codertocat" and note.body.startswith("You are totally right!")
    assert (
        "pull_request" in payload["issue"]
        and "pull_request" not in load_webhook("issue_comment.created.issue")["issue"]
    )
    assert repo_from_payload(payload).installation_id == 1
    ping = repo_from_payload(load_webhook("ping"))
    assert ping.full_name and ping.installation_id is None


def test_malformed_payloads_name_the_missing_field():
    payload = load_webhook("workflow_run.completed.failure")
    del payload["workflow_run"]["head_sha"]
    with pytest.raises(PayloadError, match="head_sha"):
        run_from_workflow_run(payload)
    with pytest.raises(PayloadError, match="repository"):
        run_from_check_suite({"check_suite": {"id": 1, "head_sha": "x"}})
    with pytest.raises(PayloadError, match="workflow_run"):
        run_from_workflow_run({"zen": "not a workflow_run delivery"})


def test_app_manifest_asks_for_the_permissions_and_events_flakebot_uses():
    manifest = json.loads((ROOT / "github-app-manifest.json").read_text())
    assert manifest["default_permissions"] == {
        "actions": "write",  # rerun-failed-jobs; read covers logs and artifacts
        "checks": "read",
        "contents": "read",
        "issues": "write",
        "metadata": "read",
        "pull_requests": "write",
    }
    # exactly the events the service queues (bot/hooks' routers), each with a real payload among the fixtures
    from bot.hooks import ROUTERS

    assert sorted(manifest["default_events"]) == sorted(ROUTERS["github"].events)
    for event in manifest["default_events"]:
        assert list((ROOT / "tests/fixtures/github/webhooks").glob(f"{event}.*.json"))
    assert manifest["hook_attributes"]["active"] is True and manifest["public"] is False
