"""The GitLab adapter over real HTTP against the fake GitLab, its faults, and the payload parsers."""

from __future__ import annotations

import json

import pytest

from bot.forge.base import Repo
from bot.forge.gitlab_payloads import (
    PayloadError,
    delivery_key,
    job_from_job_hook,
    note_from_note_hook,
    run_from_pipeline_hook,
)
from tests.fakes.gitlab import FakeGitLab, load_webhook

SHA = "bcbb5ec396a2c0f828686f14fac9b80b780504f2"


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


def test_webhook_delivery_helper_builds_gitlab_headers(fake_gitlab: FakeGitLab):
    headers, body = fake_gitlab.delivery("Pipeline Hook", {"object_kind": "pipeline"}, idempotency_key="k1")
    assert headers["X-Gitlab-Event"] == "Pipeline Hook"
    assert headers["X-Gitlab-Token"] == fake_gitlab.webhook_secret
    assert headers["Idempotency-Key"] == "k1" and headers["X-Gitlab-Event-UUID"]
    assert json.loads(body) == {"object_kind": "pipeline"}
    unsigned, _ = fake_gitlab.delivery("Note Hook", b"{", token="")
    assert unsigned["X-Gitlab-Token"] == ""
