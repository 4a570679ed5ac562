"""The GitLab adapter over real HTTP against the fake GitLab, its faults, and the payload parsers."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import socket
import time
from pathlib import Path

import pytest

from bot.forge.base import Change, ForgeError, Identity, Job, Repo, Run
from bot.forge.gitlab import GitLabForge
from bot.forge.gitlab_payloads import (
    PayloadError,
    access_permission,
    delivery_key,
    ignore_reason,
    job_from_job_hook,
    latest_jobs,
    note_from_note_hook,
    run_from_pipeline_hook,
)
from tests.fakes.gitlab import FakeGitLab, load_webhook

FIXTURES = Path(__file__).parent / "fixtures" / "gitlab"
SHA = "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
MARKER = "<!-- flakebot:report -->"
JOBS = r"/projects/1/pipelines/31/jobs"


@pytest.fixture
async def forge(fake_gitlab: FakeGitLab):
    forge = GitLabForge(url=fake_gitlab.url, token=fake_gitlab.token, timeout=2.0)
    yield forge
    await forge.aclose()


@pytest.fixture
def run(fake_gitlab: FakeGitLab) -> Run:
    """The documented failed Pipeline Hook, with the fake seeded to match it."""
    payload = load_webhook("pipeline_failed_mr")
    fake_gitlab.seed_from_pipeline_hook(payload, traces={"test-build": b"$ pytest\nFAILED test_x\n"})
    parsed = run_from_pipeline_hook(payload)
    assert parsed is not None
    return parsed


def project(fake: FakeGitLab):
    return fake.project(1)


# --- payload parsers (pure) ---------------------------------------------------------------------


def test_failed_pipeline_with_merge_request_becomes_a_run():
    run = run_from_pipeline_hook(load_webhook("pipeline_failed_mr"))
    assert run is not None
    assert (run.id, run.sha, run.branch, run.conclusion, run.failed) == (31, SHA, "master", "failed", True)
    assert run.change_numbers == [1]
    assert run.attempt == 1
    assert run.event == "merge_request_event"
    assert run.name == "Pipeline for branch: master"
    assert run.html_url == "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"
    assert run.repo == Repo(
        forge="gitlab",
        full_name="gitlab-org/gitlab-test",
        id=1,
        html_url="http://192.168.64.1:3005/gitlab-org/gitlab-test",
        default_branch="master",
    )


def test_successful_pipeline_is_a_run_too():
    run = run_from_pipeline_hook(load_webhook("pipeline_success_mr"))
    assert run is not None and run.conclusion == "success" and not run.failed


@pytest.mark.parametrize("status", ["running", "pending", "canceled", "skipped", "manual", "created"])
def test_unfinished_or_canceled_pipelines_are_ignored(status):
    payload = load_webhook("pipeline_failed_mr")
    payload["object_attributes"]["status"] = status
    assert run_from_pipeline_hook(payload) is None


def test_merge_request_of_another_project_is_not_taken_as_a_change():
    payload = load_webhook("pipeline_failed_mr")
    payload["merge_request"]["target_project_id"] = 99
    run = run_from_pipeline_hook(payload)
    assert run is not None and run.change_numbers == []


def test_branch_pipeline_without_merge_request_names_no_change():
    payload = load_webhook("pipeline_failed_mr")
    del payload["merge_request"]
    payload["object_attributes"]["name"] = None
    run = run_from_pipeline_hook(payload)
    assert run is not None and run.change_numbers == [] and run.name == "merge_request_event"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("object_attributes"), "payload.object_attributes is missing"),
        (lambda p: p["object_attributes"].update(id="31"), "object_attributes.id has the wrong type (str)"),
        (lambda p: p["object_attributes"].update(sha=None), "object_attributes.sha is missing"),
        (lambda p: p["project"].pop("path_with_namespace"), "project.path_with_namespace is missing"),
        (lambda p: p["project"].update(id=True), "project.id has the wrong type (bool)"),
        (lambda p: p["merge_request"].update(iid="1"), "merge_request.iid has the wrong type (str)"),
        (lambda p: p.update(object_kind="build"), "expected object_kind 'pipeline', got 'build'"),
    ],
)
def test_malformed_pipeline_hook_names_the_field(mutate, message):
    payload = load_webhook("pipeline_failed_mr")
    mutate(payload)
    with pytest.raises(PayloadError) as caught:
        run_from_pipeline_hook(payload)
    assert str(caught.value) == message


@pytest.mark.parametrize("payload", [None, [], "pipeline", 42])
def test_non_object_payloads_are_refused(payload):
    for parse in (run_from_pipeline_hook, job_from_job_hook, note_from_note_hook):
        with pytest.raises(PayloadError, match="JSON object"):
            parse(payload)


def test_failed_job_hook_is_recorded_with_its_infrastructure_reason():
    event = job_from_job_hook(load_webhook("job_failed"))
    assert event is not None and event.kind == "failed"
    assert (event.pipeline_id, event.retries, event.ref) == (2366, 0, "gitlab-script-trigger")
    job = event.job
    assert (job.id, job.name, job.conclusion, job.attempt) == (1977, "test", "failed", 1)
    assert job.failure_reason == "runner_system_failure" and job.infra_failure
    assert job.duration == 201.0
    assert job.html_url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/1977"
    assert event.repo.id == 380


def test_retried_job_that_passed_is_flake_evidence():
    event = job_from_job_hook(load_webhook("job_retry_success"))
    assert event is not None and event.kind == "retry-passed"
    assert (event.job.attempt, event.job.conclusion, event.job.failure_reason) == (2, "success", None)
    assert event.sha == "2293ada6b400935a1378653304eaf6221e0fdb8f"


@pytest.mark.parametrize(
    "changes",
    [
        {"build_status": "created"},
        {"build_status": "running"},
        {"build_status": "canceled"},
        {"build_status": "success", "retries_count": 0},
        {"build_status": "success", "retries_count": None},  # GitLab < 16.2: unknown
    ],
)
def test_job_hooks_without_evidence_are_ignored(changes):
    payload = load_webhook("job_retry_success")
    payload.update(changes)
    assert job_from_job_hook(payload) is None


def test_malformed_job_hook_names_the_field():
    payload = load_webhook("job_failed")
    del payload["build_id"]
    with pytest.raises(PayloadError, match=r"^payload\.build_id is missing$"):
        job_from_job_hook(payload)


def test_new_merge_request_comment_is_a_chat_ops_note():
    note = note_from_note_hook(load_webhook("note_mr_create"))
    assert note is not None
    assert (note.change_number, note.note_id, note.author_id, note.author) == (1, 1244, 1, "root")
    assert note.body == "This MR needs work."
    assert note.repo.full_name == "gitlab-org/gitlab-test" and note.repo.id == 5
    assert note.html_url.endswith("#note_1244")


def test_edited_comment_issue_comment_and_system_note_are_ignored():
    assert note_from_note_hook(load_webhook("note_mr_update")) is None
    assert note_from_note_hook(load_webhook("note_issue")) is None
    system = load_webhook("note_mr_create")
    system["object_attributes"]["system"] = True
    assert note_from_note_hook(system) is None


def test_comment_from_gitlab_before_16_11_without_action_counts_as_new():
    payload = load_webhook("note_mr_create")
    del payload["object_attributes"]["action"]
    note = note_from_note_hook(payload)
    assert note is not None and note.note_id == 1244


def test_malformed_note_hook_names_the_field():
    payload = load_webhook("note_mr_create")
    payload["object_attributes"]["note"] = ["not", "text"]
    with pytest.raises(PayloadError, match=r"object_attributes\.note has the wrong type \(list\)"):
        note_from_note_hook(payload)


def test_delivery_key_prefers_the_idempotency_key_and_falls_back_to_event_ids():
    payload = load_webhook("pipeline_failed_mr")
    assert delivery_key({"Idempotency-Key": "abc"}, payload) == "gitlab:abc"
    first = delivery_key({}, payload)
    assert first == delivery_key({}, load_webhook("pipeline_failed_mr"))  # a redelivery
    assert first != delivery_key({}, load_webhook("pipeline_success_mr"))  # the retried pipeline finishing
    assert delivery_key({}, load_webhook("note_mr_create")) != delivery_key(
        {}, load_webhook("note_mr_update")
    )
    assert delivery_key({}, load_webhook("job_failed")) != delivery_key({}, load_webhook("job_retry_success"))
    with pytest.raises(PayloadError):
        delivery_key({}, {"object_kind": "push"})


@pytest.mark.parametrize(
    ("event", "fixture", "change", "ignored"),
    [
        ("Pipeline Hook", "pipeline_failed_mr", {}, None),
        ("Pipeline Hook", "pipeline_success_mr", {}, None),
        ("Pipeline Hook", "pipeline_failed_mr", {"object_attributes.status": "running"}, "pipeline running"),
        ("Pipeline Hook", "pipeline_failed_mr", {"object_attributes.status": "canceled"}, "pipeline canceled"),
        ("Job Hook", "job_retry_success", {}, None),
        ("Job Hook", "job_failed", {}, "job failed"),  # the Pipeline Hook that follows covers it
        ("Job Hook", "job_failed", {"build_status": "running"}, "job running"),
        ("Note Hook", "note_mr_create", {}, None),
        ("Note Hook", "note_mr_update", {}, "not a new comment"),
        ("Note Hook", "note_issue", {}, "not a new comment"),
        ("Merge Request Hook", "pipeline_failed_mr", {"object_kind": "merge_request", "object_attributes.action": "merge",
                                                      "object_attributes.iid": 1, "object_attributes.last_commit": {"id": "da15"}}, None),
        ("Merge Request Hook", "pipeline_failed_mr", {"object_kind": "merge_request", "object_attributes.action": "update"}, "merge request update"),
    ],
)  # fmt: skip
def test_ignore_reason_drops_deliveries_that_need_no_work(event, fixture, change, ignored):
    payload = load_webhook(fixture)
    for path, value in change.items():
        *parents, key = path.split(".")
        target = payload
        for parent in parents:
            target = target[parent]
        target[key] = value
    reason = ignore_reason(event, payload)
    assert reason is None if ignored is None else reason.startswith(ignored)


@pytest.mark.parametrize("event", ["Pipeline Hook", "Job Hook", "Note Hook", "Merge Request Hook"])
def test_ignore_reason_refuses_malformed_payloads(event):
    for payload in ([1, 2], {"object_kind": "something else"}, {"object_kind": None}):
        with pytest.raises(PayloadError):
            ignore_reason(event, payload)


def test_webhook_delivery_helper_builds_gitlab_headers(fake_gitlab: FakeGitLab):
    headers, body = fake_gitlab.delivery("Pipeline Hook", {"object_kind": "pipeline"}, idempotency_key="k1")
    assert headers["X-Gitlab-Event"] == "Pipeline Hook"
    assert headers["X-Gitlab-Token"] == fake_gitlab.webhook_secret
    assert headers["Idempotency-Key"] == "k1" and headers["X-Gitlab-Event-UUID"]
    assert json.loads(body) == {"object_kind": "pipeline"}
    unsigned, _ = fake_gitlab.delivery("Note Hook", b"{", token="")
    assert unsigned["X-Gitlab-Token"] == ""


# --- pure helpers of the adapter ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [(50, "admin"), (40, "admin"), (30, "write"), (20, "read"), (15, "read"), (10, "read"), (5, "none")],
)
def test_access_levels_map_to_permissions(level, expected):
    assert access_permission(level) == expected
    assert access_permission(None) == "none"


def test_latest_jobs_keeps_the_newest_of_each_name_and_counts_attempts():
    jobs = [
        {"id": 7, "name": "rspec", "status": "failed", "failure_reason": "script_failure"},
        {"id": 9, "name": "rspec", "status": "failed", "failure_reason": "stuck_or_timeout_failure"},
        {"id": 8, "name": "lint", "status": "success", "failure_reason": None},
    ]
    latest = {job.name: job for job in latest_jobs(jobs)}
    assert (latest["rspec"].id, latest["rspec"].attempt, latest["rspec"].failure_reason) == (
        9,
        2,
        "stuck_or_timeout_failure",
    )
    assert (latest["lint"].id, latest["lint"].attempt) == (8, 1)


def test_a_token_is_needed_and_the_url_is_normalised():
    with pytest.raises(ValueError, match="GITLAB_TOKEN"):
        GitLabForge(token="")
    assert GitLabForge(token="glpat-xxxxxxxxxxxxxxxxxxxx").url == "https://gitlab.com"
    assert GitLabForge(token="t0ken-t0ken", url="https://git.example.org/").url == "https://git.example.org"


# --- reading a run ------------------------------------------------------------------------------


async def test_list_jobs_returns_the_newest_job_per_name_with_attempts(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    pipeline = proj.pipelines[31]
    first = fake_gitlab.add_job(proj, pipeline, "rspec 1/2", failure_reason="script_failure", retried=True)
    second = fake_gitlab.add_job(proj, pipeline, "rspec 1/2", failure_reason="runner_system_failure")

    jobs = {job.name: job for job in await forge.list_jobs(run)}

    assert set(jobs) == {"build-image", "test-image", "test-build", "production", "staging", "rspec 1/2"}
    rspec = jobs["rspec 1/2"]
    assert (rspec.id, rspec.attempt, rspec.failed, rspec.infra_failure) == (second["id"], 2, True, True)
    assert first["id"] != rspec.id
    assert jobs["test-build"].failure_reason == "script_failure" and not jobs["test-build"].infra_failure
    assert jobs["test-build"].html_url == f"{fake_gitlab.url}/gitlab-org/gitlab-test/-/jobs/378"
    assert jobs["test-build"].duration == 17.0
    assert jobs["build-image"].failure_reason is None and not jobs["build-image"].failed
    (request,) = fake_gitlab.calls("GET", JOBS)
    assert request.query["include_retried"][0].lower() == "true"


async def test_list_jobs_follows_pagination(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    for n in range(230):
        fake_gitlab.add_job(proj, proj.pipelines[31], f"shard {n:03}", status="success")
    jobs = await forge.list_jobs(run)
    assert len(jobs) == 235
    assert [r.query.get("page", ["1"])[0] for r in fake_gitlab.calls("GET", JOBS)] == ["1", "2", "3"]


async def test_job_log_streams_bytes_untouched(fake_gitlab, forge, run):
    trace = b"\x1b[0Ksection_start:1:step\r\x1b[0K$ make\n\xff\xfe not utf-8 \x00\n" + b"x" * 200_000
    fake_gitlab.add_job(project(fake_gitlab), project(fake_gitlab).pipelines[31], "bin", trace=trace)
    job = next(j for j in await forge.list_jobs(run) if j.name == "bin")

    chunks = [chunk async for chunk in forge.job_log(job, run.repo, max_bytes=10_000_000)]

    assert b"".join(chunks) == trace
    assert len(chunks) > 1 and all(isinstance(c, bytes) and len(c) <= 64 * 1024 for c in chunks)


async def test_job_log_stops_at_the_byte_cap(fake_gitlab, forge, run):
    trace = bytes(range(256)) * 40_000  # 10 MB
    fake_gitlab.add_job(project(fake_gitlab), project(fake_gitlab).pipelines[31], "big", trace=trace)
    job = next(j for j in await forge.list_jobs(run) if j.name == "big")

    data = b"".join([chunk async for chunk in forge.job_log(job, run.repo, max_bytes=100_001)])

    assert data == trace[:100_001]


async def test_job_log_reports_a_connection_cut_mid_stream(fake_gitlab, forge, run):
    fake_gitlab.add_job(project(fake_gitlab), project(fake_gitlab).pipelines[31], "cut", trace=b"y" * 300_000)
    job = next(j for j in await forge.list_jobs(run) if j.name == "cut")
    fake_gitlab.truncate("GET", rf"/projects/1/jobs/{job.id}/trace", after_bytes=150_000)

    received = bytearray()
    with pytest.raises(ForgeError, match=f"log of job {job.id}"):
        async for chunk in forge.job_log(job, run.repo, max_bytes=1_000_000):
            received += chunk
    assert 0 < len(received) < 300_000


async def test_job_log_of_a_missing_job_is_a_404(fake_gitlab, forge, run):
    ghost = Job(id=424242, name="ghost", conclusion="failed", html_url="")
    with pytest.raises(ForgeError) as caught:
        async for _ in forge.job_log(ghost, run.repo, max_bytes=100):
            pass
    assert caught.value.status == 404


async def test_test_report_is_returned_raw_when_the_pipeline_has_suites(fake_gitlab, forge, run):
    raw = (FIXTURES / "test_report.json").read_bytes()
    fake_gitlab.set_test_report(project(fake_gitlab), 31, raw)
    (report,) = await forge.test_reports(run, max_bytes=1_000_000)
    assert (report.kind, report.name, report.data) == ("gitlab-json", "test_report", raw)
    assert json.loads(report.data)["failed_count"] == 1


async def test_pipeline_without_test_suites_has_no_report(forge, run):
    assert await forge.test_reports(run, max_bytes=1_000_000) == []


async def test_test_report_404_means_none(fake_gitlab, forge, run):
    gone = Run(**{**run.__dict__, "id": 777})
    assert await forge.test_reports(gone, max_bytes=1_000_000) == []
    assert fake_gitlab.calls("GET", r"/projects/1/pipelines/777/test_report")[0].status == 404


async def test_oversized_or_malformed_test_report_is_skipped_with_a_warning(fake_gitlab, forge, run, caplog):
    raw = (FIXTURES / "test_report.json").read_bytes()
    fake_gitlab.set_test_report(project(fake_gitlab), 31, raw)
    with caplog.at_level(logging.WARNING, logger="bot.forge.gitlab"):
        assert await forge.test_reports(run, max_bytes=100) == []
    assert "larger than 100 bytes" in caplog.text
    fake_gitlab.set_test_report(project(fake_gitlab), 31, b"<html>502 Bad Gateway</html>")
    with caplog.at_level(logging.WARNING, logger="bot.forge.gitlab"):
        assert await forge.test_reports(run, max_bytes=1_000_000) == []
    assert "not JSON" in caplog.text


async def test_changes_for_run_uses_the_merge_request_named_by_the_payload(fake_gitlab, forge, run):
    (change,) = await forge.changes_for_run(run)
    assert change == Change(
        number=1,
        html_url=f"{fake_gitlab.url}/gitlab-org/gitlab-test/-/merge_requests/1",
        head_sha=SHA,
        head_ref="test",
        state="open",
    )
    project(fake_gitlab).mrs[1]["state"] = "merged"
    assert await forge.changes_for_run(run) == []
    del project(fake_gitlab).mrs[1]  # deleted since
    assert await forge.changes_for_run(run) == []


async def test_a_merged_results_pipeline_that_is_the_mr_head_pipeline_counts_as_at_its_sha(
    fake_gitlab, forge, run
):
    merged = Run(**{**run.__dict__, "sha": "4" * 40})  # the merge commit of the MR's head into main
    (change,) = await forge.changes_for_run(merged)
    assert change.head_sha == SHA  # not this MR's current pipeline (yet)
    proj = project(fake_gitlab)
    fake_gitlab.set_head_pipeline(proj, 1, proj.pipelines[31])
    (change,) = await forge.changes_for_run(merged)
    assert change.head_sha == merged.sha


async def test_changes_for_run_falls_back_to_branch_and_sha(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    ours = fake_gitlab.add_merge_request(proj, source_branch="master", sha=SHA)
    fake_gitlab.add_merge_request(proj, source_branch="master", sha="0" * 40)  # moved on since
    fake_gitlab.add_merge_request(proj, source_branch="master", sha=SHA, state="closed")
    fake_gitlab.add_merge_request(proj, source_branch="other", sha=SHA)
    branch_run = Run(**{**run.__dict__, "change_numbers": []})

    changes = await forge.changes_for_run(branch_run)

    assert [c.number for c in changes] == [ours["iid"]]
    (request,) = fake_gitlab.calls("GET", r"/projects/1/merge_requests")
    assert request.query["source_branch"] == ["master"] and request.query["state"] == ["opened"]


async def test_read_file(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    fake_gitlab.add_file(proj, ".flakebot.yml", "retry:\n  budget: 2  # ½\n".encode())
    fake_gitlab.add_file(proj, "ci/flakebot.yml", b"on-ref: yes\n", ref="feature")
    fake_gitlab.add_file(proj, "latin1.yml", b"name: caf\xe9\n")

    assert await forge.read_file(run.repo, ".flakebot.yml") == "retry:\n  budget: 2  # ½\n"
    assert await forge.read_file(run.repo, "ci/flakebot.yml", ref="feature") == "on-ref: yes\n"
    assert await forge.read_file(run.repo, "ci/flakebot.yml") is None
    assert await forge.read_file(run.repo, "latin1.yml") == "name: caf\ufffd\n"
    nested = fake_gitlab.calls("GET", r"/projects/1/repository/files/ci%2Fflakebot\.yml/raw")
    assert nested[0].query == {"ref": ["feature"]}


async def test_read_file_refuses_a_huge_file(fake_gitlab, forge, run):
    fake_gitlab.add_file(project(fake_gitlab), ".flakebot.yml", b"#" * (2 * 1024 * 1024))
    with pytest.raises(ForgeError, match="larger than"):
        await forge.read_file(run.repo, ".flakebot.yml")


async def test_repo_without_id_is_addressed_by_its_path(fake_gitlab, forge, run):
    fake_gitlab.add_file(project(fake_gitlab), ".flakebot.yml", b"a: 1\n")
    by_path = Repo(forge="gitlab", full_name="gitlab-org/gitlab-test")
    assert await forge.read_file(by_path, ".flakebot.yml") == "a: 1\n"
    assert fake_gitlab.requests[-1].path.startswith("/projects/gitlab-org%2Fgitlab-test/")


# --- acting -------------------------------------------------------------------------------------


async def test_upsert_note_creates_once_then_edits_in_place(fake_gitlab, forge, run):
    (change,) = await forge.changes_for_run(run)
    first = await forge.upsert_note(run.repo, change, MARKER, f"{MARKER}\n1 flaky failure")
    second = await forge.upsert_note(run.repo, change, MARKER, f"{MARKER}\n2 flaky failures")
    third = await forge.upsert_note(run.repo, change, MARKER, f"{MARKER}\n2 flaky failures")

    notes = project(fake_gitlab).mr_notes[1]
    assert len(notes) == 1 and notes[0]["body"] == f"{MARKER}\n2 flaky failures"
    assert first.id == second.id == third.id == notes[0]["id"]
    assert second.author == fake_gitlab.bot["username"]
    assert second.html_url == f"{change.html_url}#note_{second.id}"
    assert len(fake_gitlab.calls("POST", r"/projects/1/merge_requests/1/notes")) == 1
    assert len(fake_gitlab.calls("PUT", r"/projects/1/merge_requests/1/notes/\d+")) == 1  # unchanged: no PUT


async def test_upsert_note_never_edits_someone_elses_note_and_finds_its_own_on_a_later_page(
    fake_gitlab, forge, run
):
    proj = project(fake_gitlab)
    human = fake_gitlab.add_user("alice")
    quoting = fake_gitlab.add_note(proj, 1, f"> {MARKER} quoted by a human", author=human)
    for n in range(150):
        fake_gitlab.add_note(proj, 1, f"comment {n}", author=human)
    own = fake_gitlab.add_note(proj, 1, f"{MARKER}\nold report", author=fake_gitlab.bot)
    (change,) = await forge.changes_for_run(run)

    note = await forge.upsert_note(run.repo, change, MARKER, f"{MARKER}\nnew report")

    assert note.id == own["id"] and own["body"] == f"{MARKER}\nnew report"
    assert quoting["body"] == f"> {MARKER} quoted by a human"
    assert len(fake_gitlab.calls("GET", r"/projects/1/merge_requests/1/notes")) == 2  # two pages


async def test_outgoing_bodies_are_masked_and_bounded(fake_gitlab, forge, run):
    (change,) = await forge.changes_for_run(run)
    leaked = f"{MARKER}\ncurl -H 'PRIVATE-TOKEN: {fake_gitlab.token}' ...\n" + "z" * 1_200_000
    await forge.upsert_note(run.repo, change, MARKER, leaked)
    body = project(fake_gitlab).mr_notes[1][0]["body"]
    assert fake_gitlab.token not in body and MARKER in body
    assert len(body) <= 1_000_000 and "characters cut" in body


async def test_the_bots_identity_is_the_token_owner_and_asked_once(fake_gitlab, forge, run):
    assert await forge.identity(run.repo) == Identity("flakebot-bot", fake_gitlab.bot["id"])
    assert await forge.identity(run.repo) == Identity("flakebot-bot", fake_gitlab.bot["id"])
    assert len(fake_gitlab.calls("GET", r"/user")) == 1


async def test_reply_and_acknowledge(fake_gitlab, forge, run):
    note = await forge.reply(run.repo, 1, "Retrying the failed jobs.")
    assert project(fake_gitlab).mr_notes[1][-1]["body"] == "Retrying the failed jobs."
    assert note.html_url.endswith(f"/-/merge_requests/1#note_{note.id}")

    await forge.acknowledge(run.repo, 1, note.id)
    await forge.acknowledge(run.repo, 1, note.id)  # already there: fine

    (award,) = project(fake_gitlab).awards[note.id]
    assert (award["name"], award["user"]["id"]) == ("eyes", fake_gitlab.bot["id"])
    posts = fake_gitlab.calls("POST", rf"/projects/1/merge_requests/1/notes/{note.id}/award_emoji")
    assert [p.status for p in posts] == [201, 404]


async def test_acknowledge_a_missing_note_fails(forge, run):
    with pytest.raises(ForgeError) as caught:
        await forge.acknowledge(run.repo, 1, 999_999)
    assert caught.value.status == 404


async def test_retry_jobs_retries_only_failed_jobs_and_counts_attempts(fake_gitlab, forge, run):
    jobs = await forge.list_jobs(run)
    await forge.retry_jobs(run, jobs)

    retried = sorted(
        int(r.path.split("/")[4]) for r in fake_gitlab.calls("POST", r"/projects/1/jobs/\d+/retry")
    )
    assert retried == [377, 378]  # test-image (runner failure) and test-build
    after = {job.name: job for job in await forge.list_jobs(run)}
    assert (after["test-build"].attempt, after["test-build"].conclusion) == (2, "pending")
    assert after["build-image"].attempt == 1


async def test_retry_jobs_tries_every_job_and_reports_the_failures(fake_gitlab, forge, run):
    jobs = [j for j in await forge.list_jobs(run) if j.failed]
    project(fake_gitlab).jobs[377]["status"] = "running"  # not retryable any more
    with pytest.raises(ForgeError) as caught:
        await forge.retry_jobs(run, jobs)
    assert caught.value.status == 403 and "377" in str(caught.value)
    assert project(fake_gitlab).jobs[378]["retried"] is True


async def test_ensure_labels_creates_only_missing_ones_with_a_colour(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    fake_gitlab.add_label(proj, "flaky", color="#00ff00")
    fake_gitlab.add_label(proj, "ci::quarantine", group=True)

    await forge.ensure_labels(run.repo, ["flaky", "ci::quarantine", "flakebot", "flakebot"])

    labels = {label["name"]: label for label in proj.labels}
    assert set(labels) == {"flaky", "ci::quarantine", "flakebot"}
    assert labels["flaky"]["color"] == "#00ff00"
    assert labels["flakebot"]["color"].startswith("#") and labels["flakebot"]["description"]
    assert len(fake_gitlab.calls("POST", r"/projects/1/labels")) == 1


async def test_ensure_labels_tolerates_a_label_created_meanwhile(fake_gitlab, forge, run):
    fake_gitlab.fail("POST", r"/projects/1/labels", status=409, body={"message": "Label already exists"})
    await forge.ensure_labels(run.repo, ["flaky"])
    assert fake_gitlab.calls("POST", r"/projects/1/labels")[0].status == 409


async def test_issues_are_created_found_newest_first_and_updated(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    maintainer = fake_gitlab.add_user("maint")
    fake_gitlab.add_issue(
        proj, "old", labels=["flaky"], state="closed", closed_by=maintainer, created_at="2020-01-01T00:00:00Z"
    )
    fake_gitlab.add_issue(proj, "unrelated", labels=["bug"])

    created = await forge.create_issue(run.repo, "Flaky: test_x", "fails 3 in 10", ["flaky", "flakebot"])
    found = await forge.find_issues(run.repo, "flaky")

    assert [i.title for i in found] == ["Flaky: test_x", "old"]
    assert found[0] == created and created.state == "open" and created.labels == ["flaky", "flakebot"]
    assert (found[1].state, found[1].closed_by) == ("closed", "maint")
    assert {label["name"] for label in proj.labels} >= {"flaky", "flakebot"}

    closed = await forge.update_issue(run.repo, created.number, state="closed", comment="Passed 50 times.")
    assert (closed.state, closed.closed_by) == ("closed", fake_gitlab.bot["username"])
    assert proj.issue_notes[created.number][-1]["body"] == "Passed 50 times."
    comment = fake_gitlab.calls("POST", rf"/projects/1/issues/{created.number}/notes")[0]
    put = fake_gitlab.calls("PUT", rf"/projects/1/issues/{created.number}")[0]
    assert fake_gitlab.requests.index(comment) < fake_gitlab.requests.index(put)
    assert put.body == {"state_event": "close"}

    reopened = await forge.update_issue(run.repo, created.number, state="open", body="fails again")
    assert (reopened.state, reopened.body, reopened.closed_by) == ("open", "fails again", None)
    commented = await forge.update_issue(run.repo, created.number, comment="still flaky")
    assert commented.state == "open" and proj.issue_notes[created.number][-1]["body"] == "still flaky"


async def test_assign_issue_by_user_id_leaving_out_groups_and_strangers(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    alice, stranger = fake_gitlab.add_user("alice"), fake_gitlab.add_user("stranger")
    fake_gitlab.add_member(proj, alice, 30)
    issue = fake_gitlab.add_issue(proj, "Flaky test: t", labels=["flaky-test"])
    # "qa-group" is a CODEOWNERS group: no such user; "stranger" is no member, GitLab leaves them out
    got = await forge.assign_issue(run.repo, issue["iid"], ["alice", "qa-group", "stranger"])
    assert got == ["alice"] and [a["username"] for a in proj.issues[issue["iid"]]["assignees"]] == ["alice"]
    (put,) = fake_gitlab.calls("PUT", rf"/projects/1/issues/{issue['iid']}")
    assert put.body == {"assignee_ids": [alice["id"], stranger["id"]]}


async def test_update_of_a_missing_issue_is_a_404(forge, run):
    with pytest.raises(ForgeError) as caught:
        await forge.update_issue(run.repo, 404, state="closed")
    assert caught.value.status == 404


async def test_permission_follows_the_access_level(fake_gitlab, forge, run):
    proj = project(fake_gitlab)
    levels = {"owner": 50, "maintainer": 40, "developer": 30, "reporter": 20, "guest": 10}
    users = {name: fake_gitlab.add_user(name) for name in levels}
    for name, level in levels.items():
        fake_gitlab.add_member(proj, users[name], level)
    stranger = fake_gitlab.add_user("stranger")

    by_id = {name: await forge.permission(run.repo, users[name]["id"]) for name in levels}
    assert by_id == {
        "owner": "admin",
        "maintainer": "admin",
        "developer": "write",
        "reporter": "read",
        "guest": "read",
    }
    assert await forge.permission(run.repo, stranger["id"]) == "none"
    assert await forge.permission(run.repo, "developer") == "write"
    assert await forge.permission(run.repo, str(users["owner"]["id"])) == "admin"
    assert await forge.permission(run.repo, "nobody-of-that-name") == "none"


# --- faults ----------------------------------------------------------------------------------------


async def test_transient_5xx_is_retried(fake_gitlab, forge, run):
    fake_gitlab.fail("GET", JOBS, status=502, times=2)
    assert len(await forge.list_jobs(run)) == 5
    assert [r.status for r in fake_gitlab.calls("GET", JOBS)] == [502, 502, 200]


async def test_persistent_5xx_gives_up_after_max_attempts(fake_gitlab, forge, run):
    fake_gitlab.fail("GET", JOBS, status=500, times=4)
    with pytest.raises(ForgeError) as caught:
        await forge.list_jobs(run)
    assert caught.value.status == 500 and "jobs of pipeline 31" in str(caught.value)
    assert len(fake_gitlab.calls("GET", JOBS)) == 4


async def test_a_failed_post_is_not_repeated(fake_gitlab, forge, run):
    fake_gitlab.fail("POST", r"/projects/1/merge_requests/1/notes", status=502)
    with pytest.raises(ForgeError) as caught:
        await forge.reply(run.repo, 1, "hello")
    assert caught.value.status == 502
    assert len(fake_gitlab.calls("POST", r"/projects/1/merge_requests/1/notes")) == 1
    assert project(fake_gitlab).mr_notes[1] == []


async def test_definitive_4xx_is_not_retried(fake_gitlab, forge, run):
    fake_gitlab.fail("GET", JOBS, status=403, body={"message": "403 Forbidden"})
    with pytest.raises(ForgeError) as caught:
        await forge.list_jobs(run)
    assert caught.value.status == 403 and "403 Forbidden" in str(caught.value)
    assert len(fake_gitlab.calls("GET", JOBS)) == 1


async def test_rate_limit_waits_for_retry_after(fake_gitlab, forge, run):
    fake_gitlab.rate_limit("GET", JOBS, retry_after="1")
    start = time.monotonic()
    assert len(await forge.list_jobs(run)) == 5
    assert time.monotonic() - start >= 0.9
    assert [r.status for r in fake_gitlab.calls("GET", JOBS)] == [429, 200]


async def test_rate_limit_with_an_http_date_is_understood(fake_gitlab, forge, run):
    fake_gitlab.rate_limit(
        "POST", r"/projects/1/merge_requests/1/notes", retry_after=email.utils.formatdate()
    )
    await forge.reply(run.repo, 1, "hello")  # a 429 on a POST is retried: GitLab did nothing
    assert [r.status for r in fake_gitlab.calls("POST", r"/projects/1/merge_requests/1/notes")] == [429, 201]


async def test_a_long_rate_limit_fails_fast_instead_of_sleeping(fake_gitlab, forge, run):
    fake_gitlab.rate_limit("GET", JOBS, retry_after="3600")
    with pytest.raises(ForgeError) as caught:
        await forge.list_jobs(run)
    assert caught.value.status == 429 and "3600s" in str(caught.value)
    assert len(fake_gitlab.calls("GET", JOBS)) == 1


async def test_slow_answer_beyond_the_timeout_is_retried(fake_gitlab, run):
    forge = GitLabForge(url=fake_gitlab.url, token=fake_gitlab.token, timeout=0.3)
    try:
        fake_gitlab.slow("GET", JOBS, delay=2.0)
        assert len(await forge.list_jobs(run)) == 5
        assert len(fake_gitlab.calls("GET", JOBS)) == 2

        fake_gitlab.slow("GET", JOBS, delay=2.0, times=2)
        short = GitLabForge(url=fake_gitlab.url, token=fake_gitlab.token, timeout=0.3, max_attempts=2)
        with pytest.raises(ForgeError, match="timed out") as caught:
            await short.list_jobs(run)
        assert caught.value.status is None
        await short.aclose()
    finally:
        await forge.aclose()


async def test_dropped_connection_is_retried_for_reads(fake_gitlab, forge, run):
    fake_gitlab.drop("GET", JOBS)
    assert len(await forge.list_jobs(run)) == 5
    assert len(fake_gitlab.calls("GET", JOBS)) == 2


async def test_dropped_connection_on_a_post_fails_without_repeating(fake_gitlab, forge, run):
    fake_gitlab.drop("POST", r"/projects/1/jobs/378/retry")
    job = next(j for j in await forge.list_jobs(run) if j.id == 378)
    with pytest.raises(ForgeError, match="connection failed") as caught:
        await forge.retry_jobs(run, [job])
    assert caught.value.status is None
    assert len(fake_gitlab.calls("POST", r"/projects/1/jobs/378/retry")) == 1


async def test_unreachable_server_is_a_clear_error(run):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    forge = GitLabForge(url=f"http://127.0.0.1:{port}", token="glpat-unreachable-0000", max_attempts=2)
    try:
        with pytest.raises(ForgeError, match="connection failed") as caught:
            await forge.list_jobs(run)
        assert caught.value.status is None
    finally:
        await forge.aclose()


async def test_wrong_token_is_a_401_and_the_token_never_shows(fake_gitlab, run, caplog):
    secret = "glpat-WRONGwrongWRONG0000"
    forge = GitLabForge(url=fake_gitlab.url, token=secret)
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(ForgeError) as caught:
            await forge.list_jobs(run)
        assert caught.value.status == 401
        assert secret not in str(caught.value) and secret not in caplog.text
    finally:
        await forge.aclose()


async def test_token_is_sent_as_private_token_and_never_logged(fake_gitlab, forge, run, caplog):
    with caplog.at_level(logging.DEBUG):
        await forge.list_jobs(run)
        (change,) = await forge.changes_for_run(run)
        await forge.upsert_note(run.repo, change, MARKER, f"{MARKER} hi")
        fake_gitlab.fail("GET", JOBS, status=500, times=4, body={"message": "boom"})
        with pytest.raises(ForgeError) as caught:
            await forge.list_jobs(run)
    assert "urllib3" in caplog.text  # debug logging really was on
    assert fake_gitlab.token not in caplog.text and fake_gitlab.token not in str(caught.value)
    assert all(r.headers["PRIVATE-TOKEN-present"] == "True" for r in fake_gitlab.requests)


# --- never blocking the event loop ---------------------------------------------------------------


async def test_a_slow_gitlab_answer_does_not_block_the_event_loop(fake_gitlab, forge, run):
    fake_gitlab.slow("GET", JOBS, delay=0.6)
    ticks: list[float] = []

    async def heartbeat():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    try:
        jobs = await forge.list_jobs(run)
    finally:
        beat.cancel()
    assert len(jobs) == 5
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) >= 20 and max(gaps) < 0.25


async def test_calls_run_concurrently(fake_gitlab, forge, run):
    fake_gitlab.slow("GET", JOBS, delay=0.5, times=4)
    results = await asyncio.gather(*(forge.list_jobs(run) for _ in range(4)))
    assert [len(r) for r in results] == [5, 5, 5, 5]
    assert len(fake_gitlab.calls("GET", JOBS)) == 4
    assert fake_gitlab.max_in_flight == 4  # all four were waiting on GitLab at once
