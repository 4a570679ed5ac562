"""flakebot end to end on GitLab: real HTTP from a GitLab webhook delivery to the fake GitLab and back.

The service runs as in production (aiohttp app, SQLite store, queue workers, a trained model on disk,
python-gitlab in its thread pool); deliveries carry GitLab's headers (``X-Gitlab-Event``,
``X-Gitlab-Token``, ``Idempotency-Key``) and payloads built from GitLab's documented examples; the fake
GitLab answers python-gitlab's real requests and fails the test on any request it does not know.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import Settings
from bot.modelstore import ModelStore
from bot.split import split_log
from bot.training import interleave, train_and_save
from bot.web import CTX, QUEUE, create_app
from tests.ci_logs import cause, gitlab_pytest_log, real_bug
from tests.fakes.gitlab import FakeGitLab, Project, load_webhook

PROJECT_ID = 7
PROJECT = "shop/api"
SHA = "9b1f0c3e4a5d6b7c8d9e0f1a2b3c4d5e6f7a8b9c"
BRANCH = "fix-flaky-test"
FIXTURES = Path(__file__).parent / "fixtures" / "gitlab"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model trained on earlier GitLab failures of this shop: recurring flaky causes and one-off bugs."""
    rng = random.Random(3)
    failures = [
        (f"tests/test_old{i}.py::test_thing_{i}", cause(("reset", "timeout", "dns")[i % 3], rng), "flake")
        for i in range(24)
    ] + [(f"tests/test_bug{i}.py::test_case_{i}", real_bug(rng), "real") for i in range(16)]
    records = []
    for number, (test, message, label) in enumerate(failures):
        (record,) = split_log([gitlab_pytest_log([(test, message)], seed=number)], job="pytest")
        records.append({**record, "label": label})
    path = tmp_path_factory.mktemp("model")
    # trialled on its newest failures as `flakebot train` does: the retry threshold comes from that trial
    train_and_save(ModelStore(path), interleave(records), {"trained_on": {"failures": len(records)}})
    return path


@pytest.fixture
def settings(fake_gitlab: FakeGitLab, model_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        gitlab_url=fake_gitlab.url,
        gitlab_token=fake_gitlab.token,
        gitlab_webhook_secret=fake_gitlab.webhook_secret,
        data_dir=tmp_path / "data",
        model_dir=model_dir,
        workers=2,
    )


@pytest.fixture
async def bot(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings))
    client.settings = settings
    return client


async def settle(client, timeout: float = 30.0) -> None:
    """Wait until the queue is empty and every worker idle."""
    app = client.server.app
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await app[CTX].store.queue_depth() == 0 and app[QUEUE].busy == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("flakebot did not finish its work in time")


async def send(client, fake: FakeGitLab, event: str, payload, **options):
    headers, body = fake.delivery(event, payload, **options)
    return await client.post("/gitlab", data=body, headers=headers)


def seed_pipeline(
    fake: FakeGitLab,
    jobs: dict[str, list[tuple[str, str]]],
    *,
    passes: tuple[str, ...] = (),
    earlier_attempts: dict[str, int] | None = None,
    branch: str = BRANCH,
    sha: str = SHA,
    source: str = "merge_request_event",
    failure_reason: str = "script_failure",
) -> tuple[Project, dict]:
    """A failed pipeline of the project with an open MR on its branch: one failed job per entry of
    ``jobs`` (name → its failing tests), a passing ``lint`` job, and ``earlier_attempts`` retried
    (failed) jobs of a name (``lint`` too) before its latest one."""
    project = fake.projects.get(PROJECT_ID) or fake.add_project(PROJECT, id=PROJECT_ID)
    if not any(mr["source_branch"] == branch for mr in project.mrs.values()):
        fake.add_merge_request(project, source_branch=branch, sha=sha)
    pipeline = fake.add_pipeline(project, sha=sha, ref=branch, status="failed", source=source)
    for name, failures in jobs.items():
        for attempt in range(1, (earlier_attempts or {}).get(name, 0) + 1):
            trace = gitlab_pytest_log(failures, seed=attempt)
            fake.add_job(project, pipeline, name, failure_reason=failure_reason, trace=trace, retried=True)
        trace = gitlab_pytest_log(failures, passes, seed=len(failures))
        fake.add_job(project, pipeline, name, failure_reason=failure_reason, trace=trace)
    for _ in range((earlier_attempts or {}).get("lint", 0)):
        fake.add_job(project, pipeline, "lint", failure_reason=failure_reason, retried=True)
    fake.add_job(project, pipeline, "lint", status="success", trace=b"$ ruff check .\nAll checks passed!\n")
    return project, pipeline


def mr_of(project: Project, branch: str = BRANCH) -> int:
    return next(mr["iid"] for mr in project.mrs.values() if mr["source_branch"] == branch)


def hook(fake: FakeGitLab, project: Project, pipeline: dict, branch: str = BRANCH) -> dict:
    return fake.pipeline_hook(project, pipeline["id"], merge_request=mr_of(project, branch))


def the_note(project: Project, branch: str = BRANCH) -> dict:
    notes = project.mr_notes[mr_of(project, branch)]
    assert len(notes) == 1, [n["body"][:80] for n in notes]
    return notes[0]


def retried(fake: FakeGitLab) -> list[int]:
    """The ids of the jobs flakebot retried (``POST /projects/:id/jobs/:job_id/retry``), in order."""
    return [int(r.path.split("/")[-2]) for r in fake.calls("POST", r"/projects/\d+/jobs/\d+/retry")]


def failed_jobs(fake: FakeGitLab, project: Project, pipeline: dict) -> dict[str, int]:
    return {j["name"]: j["id"] for j in fake.jobs_of(project, pipeline["id"]) if j["status"] == "failed"}


def row(body: str, test: str) -> str:
    return next(line for line in body.splitlines() if line.startswith(f"| `{test}`"))


# --- the main path ---------------------------------------------------------------------------------


async def test_a_pipeline_of_flakes_gets_one_note_and_each_failed_job_retried(bot, fake_gitlab):
    rng = random.Random(9)
    project, pipeline = seed_pipeline(
        fake_gitlab,
        {
            "pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))],
            "pytest-integration": [("tests/test_api.py::test_poll", cause("timeout", rng))],
        },
        passes=("tests/test_new.py::test_ok",),
    )
    failed = failed_jobs(fake_gitlab, project, pipeline)
    response = await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    assert response.status == 202 and (await response.json())["queued"] is True
    await settle(bot)

    note = the_note(project)
    body = note["body"]
    assert body.startswith("<!-- flakebot:comment -->") and note["author"]["id"] == fake_gitlab.bot["id"]
    assert ":repeat: **flake**" in row(body, "tests/test_new.py::test_fetch")
    assert ":repeat: **flake**" in row(body, "tests/test_api.py::test_poll")
    assert f"[`pytest`](<{project.data['web_url']}/-/jobs/{failed['pytest']}>)" in body
    assert "Re-ran the failed jobs" in body and "attempt 2 of 3" in body
    assert sorted(retried(fake_gitlab)) == sorted(failed.values())  # job.retry() for each failed job
    (jobs_call,) = fake_gitlab.calls("GET", rf"/projects/{PROJECT_ID}/pipelines/{pipeline['id']}/jobs")
    assert jobs_call.query["include_retried"][0].lower() == "true"  # earlier attempts are counted
    store = bot.server.app[CTX].store
    summary = await store.summary(f"gitlab:{PROJECT}", "tests/test_new.py::test_ok", "pytest")
    assert summary.runs == 1
    assert len(list(await store.training_records(f"gitlab:{PROJECT}"))) == 2
    metrics = await (await bot.get("/metrics")).text()
    assert 'flakebot_failures_judged_total{forge="gitlab",verdict="flake"} 2.0' in metrics
    assert 'flakebot_retries_total{forge="gitlab"} 1.0' in metrics


async def test_a_real_failure_is_never_retried(bot, fake_gitlab):
    rng = random.Random(4)
    project, pipeline = seed_pipeline(
        fake_gitlab,
        {
            "pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))],
            "pytest-cart": [("tests/test_cart.py::test_sum", real_bug(rng))],
        },
    )
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    body = the_note(project)["body"]
    verdict = row(body, "tests/test_cart.py::test_sum")
    assert "**real**" in verdict or "**unknown**" in verdict
    assert "Did not re-run: not every failure is a flake" in body
    assert retried(fake_gitlab) == []


@pytest.mark.parametrize("with_key", [True, False], ids=["idempotency-key", "event-ids"])
async def test_a_redelivery_does_nothing_twice(bot, fake_gitlab, with_key):
    rng = random.Random(5)
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("dns", rng))]}
    )
    payload = hook(fake_gitlab, project, pipeline)
    key = "f7c8e3b2-1d4a-4e6f-9a0b-3c5d7e9f1a2b" if with_key else None
    first = await send(
        bot, fake_gitlab, "Pipeline Hook", payload, idempotency_key=key, with_idempotency_key=with_key
    )
    await settle(bot)
    again = await send(
        bot, fake_gitlab, "Pipeline Hook", payload, idempotency_key=key, with_idempotency_key=with_key
    )
    await settle(bot)
    assert (await first.json())["queued"] is True and (await again.json())["queued"] is False
    the_note(project)
    assert len(retried(fake_gitlab)) == 1
    notes_path = rf"/projects/{PROJECT_ID}/merge_requests/\d+/notes(/\d+)?"
    assert len(fake_gitlab.calls("POST", notes_path)) == 1 and fake_gitlab.calls("PUT", notes_path) == []


async def test_a_passing_retry_edits_the_same_note_and_labels_the_failures_as_flaky(bot, fake_gitlab):
    rng = random.Random(6)
    failures = [("tests/test_new.py::test_fetch", cause("reset", rng))]
    project, pipeline = seed_pipeline(fake_gitlab, {"pytest": failures})
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    first = the_note(project)
    assert "· attempt 1 ·" in first["body"]

    (new_job,) = retried_jobs(fake_gitlab, project, pipeline)  # the retry flakebot asked for ran and passed
    fake_gitlab.finish_job(
        project, new_job, "success", trace=gitlab_pytest_log([], ["tests/test_new.py::test_fetch"])
    )
    pipeline["status"] = "success"
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)

    note = the_note(project)
    assert note["id"] == first["id"]  # edited in place
    assert ":white_check_mark: **Passed on attempt 2.**" in note["body"] and "· attempt 2 ·" in note["body"]
    assert "recorded as flaky" in note["body"]
    records = list(await bot.server.app[CTX].store.training_records(f"gitlab:{PROJECT}"))
    assert [r["label"] for r in records] == ["flake"]  # passed on a retry of the same commit
    assert len(retried(fake_gitlab)) == 1


def retried_jobs(fake: FakeGitLab, project: Project, pipeline: dict) -> list[int]:
    """The jobs the fake made for flakebot's retries (newest of their name, not yet finished)."""
    return [j["id"] for j in fake.jobs_of(project, pipeline["id"]) if j["status"] == "pending"]


async def test_a_job_hook_of_a_passing_retry_labels_that_jobs_failures_and_the_note_follows(bot, fake_gitlab):
    rng = random.Random(14)
    project, pipeline = seed_pipeline(
        fake_gitlab,
        {
            "pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))],
            "pytest-integration": [("tests/test_api.py::test_poll", cause("timeout", rng))],
        },
    )
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    first = the_note(project)
    assert len(retried(fake_gitlab)) == 2

    # the retried pytest job passes (its Job Hook comes first); the integration job fails again
    new = {project.jobs[j]["name"]: j for j in retried_jobs(fake_gitlab, project, pipeline)}
    fake_gitlab.finish_job(
        project, new["pytest"], "success", trace=gitlab_pytest_log([], ["tests/test_new.py::test_fetch"])
    )
    job_hook = fake_gitlab.job_hook(project, new["pytest"])
    assert job_hook["retries_count"] == 1
    response = await send(bot, fake_gitlab, "Job Hook", job_hook)
    assert (await response.json())["queued"] is True
    await settle(bot)
    labels = {
        r["test"]: r["label"] for r in await bot.server.app[CTX].store.training_records(f"gitlab:{PROJECT}")
    }
    assert labels == {"tests/test_new.py::test_fetch": "flake", "tests/test_api.py::test_poll": None}

    again = gitlab_pytest_log([("tests/test_api.py::test_poll", cause("timeout", rng))], seed=2)
    fake_gitlab.finish_job(
        project, new["pytest-integration"], "failed", trace=again, failure_reason="script_failure"
    )
    failed_hook = fake_gitlab.job_hook(project, new["pytest-integration"])
    ignored = await send(bot, fake_gitlab, "Job Hook", failed_hook)
    assert ignored.status == 200 and "ignored" in await ignored.json()  # the Pipeline Hook covers it
    pipeline["status"] = "failed"
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    note = the_note(project)
    assert note["id"] == first["id"]
    assert "· attempt 2 ·" in note["body"] and "tests/test_new.py::test_fetch" not in note["body"]
    # the same test failed on both attempts and never passed: no longer judged a flake, not retried
    assert "**unknown**" in row(note["body"], "tests/test_api.py::test_poll")
    assert "has never passed (2 runs so far)" in note["body"] and len(retried(fake_gitlab)) == 2


async def test_the_retry_budget_counts_earlier_attempts_of_the_same_job_name(bot, fake_gitlab):
    rng = random.Random(7)
    project, pipeline = seed_pipeline(
        fake_gitlab,
        {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]},
        earlier_attempts={"pytest": 2},
    )
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    body = the_note(project)["body"]
    assert "attempt 3 of 3: the retry budget is spent" in body and "· attempt 3 ·" in body
    assert retried(fake_gitlab) == []

    # attempts of another job name do not count: a branch pipeline (no MR in the payload, found by
    # branch and SHA) whose lint job needed two retries still retries its first pytest failure
    other_sha = "1" * 40
    project, pipeline = seed_pipeline(
        fake_gitlab,
        {"pytest": [("tests/test_other.py::test_upload", cause("reset", rng))]},
        earlier_attempts={"lint": 2},
        branch="other",
        sha=other_sha,
        source="push",
    )
    pytest_job = failed_jobs(fake_gitlab, project, pipeline)["pytest"]
    await send(bot, fake_gitlab, "Pipeline Hook", fake_gitlab.pipeline_hook(project, pipeline["id"]))
    await settle(bot)
    assert "attempt 2 of 3" in the_note(project, "other")["body"]
    assert retried(fake_gitlab) == [pytest_job]


async def test_an_infrastructure_failure_is_shown_as_such_and_retried(bot, fake_gitlab):
    """GitLab's documented failed Pipeline Hook: ``test-image`` failed with ``runner_system_failure``
    (its trace has binary garbage), ``test-build`` with a flaky test."""
    payload = load_webhook("pipeline_failed_mr")
    rng = random.Random(15)
    system_failure = (
        b"\x1b[0KRunning with gitlab-runner 17.5.3 (12030cf4)\x1b[0K\n\x00\xff\xfe\x89PNG\r\n\x1a\n\x00\x00"
        b"\nERROR: Job failed (system failure): Error response from daemon: no such container\n"
    )
    project = fake_gitlab.seed_from_pipeline_hook(
        payload,
        traces={
            "test-image": system_failure,
            "test-build": gitlab_pytest_log([("tests/test_build.py::test_image_size", cause("dns", rng))]),
        },
    )
    await send(bot, fake_gitlab, "Pipeline Hook", payload)
    await settle(bot)
    body = the_note(project, "test")["body"]
    infra = row(body, "test-image")
    assert ":construction: **infra**" in infra and "runner_system_failure" in infra
    assert ":repeat: **flake**" in row(body, "tests/test_build.py::test_image_size")
    assert sorted(retried(fake_gitlab)) == [377, 378]
    assert "Re-ran the failed jobs" in body


@pytest.mark.parametrize("reason", ["script_failure", "stuck_or_timeout_failure"])
async def test_the_pipeline_test_report_names_the_failures(bot, fake_gitlab, reason):
    """The rspec job's trace is not split into tests; the pipeline's JUnit test report names them
    (and when the job timed out, its reported failures are the infrastructure's)."""
    project, pipeline = seed_pipeline(fake_gitlab, {})
    trace = b"$ bundle exec rspec\n....F.E\nFinished in 7.5 seconds\n3 examples, 2 failures\nERROR: Job failed: exit code 1\n"
    rspec = fake_gitlab.add_job(project, pipeline, "rspec", failure_reason=reason, trace=trace)
    fake_gitlab.add_job(project, pipeline, "Secure", status="success")
    fake_gitlab.set_test_report(project, pipeline["id"], (FIXTURES / "test_report.json").read_bytes())
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    body = the_note(project)["body"]
    report = json.loads((FIXTURES / "test_report.json").read_text())
    failed = [
        f"{case['classname']}.{case['name']}"
        for suite in report["test_suites"]
        for case in suite["test_cases"]
        if case["status"] in ("failed", "error")
    ]
    assert len(failed) == 2 and all(row(body, name) for name in failed)
    assert "| `rspec` |" not in body  # the report named the failures: no job-level row besides them
    if reason == "script_failure":
        # not the infrastructure's: whether they are re-run is the log model's verdict alone
        assert "**infra**" not in body
        flakes = all(":repeat: **flake**" in row(body, name) for name in failed)
        assert bool(retried(fake_gitlab)) == (flakes and "Re-ran the failed jobs" in body)
    else:
        assert all(":construction: **infra**" in row(body, name) for name in failed)
        assert retried(fake_gitlab) == [rspec["id"]]
    store = bot.server.app[CTX].store
    passed = "spec.controllers.projects.pipelines_controller_spec.Projects::PipelinesController#show renders the pipeline"
    assert (await store.summary(f"gitlab:{PROJECT}", passed, "rspec")).runs == 1


async def test_a_merged_results_pipeline_gets_its_note_and_an_outdated_one_does_not(bot, fake_gitlab):
    """A merged-results pipeline runs on a merge commit, not the MR's head; it is the MR's head pipeline."""
    rng = random.Random(19)
    project = fake_gitlab.add_project(PROJECT, id=PROJECT_ID)
    mr = fake_gitlab.add_merge_request(project, source_branch=BRANCH, sha=SHA)
    failures = {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    _, pipeline = seed_pipeline(fake_gitlab, failures, sha="4" * 40)
    fake_gitlab.set_head_pipeline(project, mr["iid"], pipeline)
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    note = the_note(project)
    assert ":repeat: **flake**" in row(note["body"], "tests/test_new.py::test_fetch")

    # a pipeline the MR has moved on from (a newer push has its own head pipeline) changes nothing
    _, old = seed_pipeline(fake_gitlab, failures, sha="5" * 40)
    mr["sha"] = "6" * 40
    fake_gitlab.set_head_pipeline(
        project, mr["iid"], fake_gitlab.add_pipeline(project, sha=mr["sha"], ref=BRANCH)
    )
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, old))
    await settle(bot)
    assert the_note(project) == note


async def test_a_test_flaky_for_weeks_gets_one_labelled_quarantine_issue(
    aiohttp_client, settings, fake_gitlab
):
    from datetime import UTC, datetime, timedelta

    from bot.store import HistoryRun, open_store

    test = "tests/test_new.py::test_fetch"
    start = datetime.now(UTC) - timedelta(days=20)
    store = open_store(settings.data_dir)  # three weeks of history: fails, then passes on a retry
    store.record_runs(
        f"gitlab:{PROJECT}",
        [
            HistoryRun(test=test, status="failed" if i % 2 == 0 else "passed", run_id=100 + i // 2, attempt=1 + i % 2,
                       job="pytest", revision=f"{i // 2:040x}", branch="main", duration=3.0 + i % 5,
                       message="ConnectionResetError: [Errno 104] Connection reset by peer" if i % 2 == 0 else None,
                       url=f"{fake_gitlab.url}/{PROJECT}/-/jobs/{100 + i}",
                       created_at=(start + timedelta(hours=12 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"))
            for i in range(40)
        ],
    )  # fmt: skip
    store.close()
    client = await aiohttp_client(create_app(settings))
    project = fake_gitlab.add_project(PROJECT, id=PROJECT_ID)
    fake_gitlab.add_file(project, ".flakebot.yml", b"quarantine:\n  label: flaky\n")
    rng = random.Random(20)
    for _ in range(2):
        _, pipeline = seed_pipeline(fake_gitlab, {"pytest": [(test, cause("reset", rng))]})
        await send(client, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
        await settle(client)

    (issue,) = project.issues.values()  # the second pipeline updated it: no duplicate
    assert (
        issue["title"] == f"Flaky test: {test}"
        and issue["labels"] == ["flaky"]
        and issue["state"] == "opened"
    )
    (label,) = fake_gitlab.calls("POST", rf"/projects/{PROJECT_ID}/labels")  # made up front, once
    assert label.body["name"] == "flaky" and label.body["color"].startswith("#")
    assert fake_gitlab.calls("PUT", rf"/projects/{PROJECT_ID}/issues/{issue['iid']}")
    assert (
        f"Updated quarantine issue #{issue['iid']} for `{test}` (in `pytest`)." in the_note(project)["body"]
    )


async def test_flakebot_yml_settings_and_safe_mode(bot, fake_gitlab):
    rng = random.Random(16)
    project = fake_gitlab.add_project(PROJECT, id=PROJECT_ID)
    fake_gitlab.add_file(project, ".flakebot.yml", b"retry:\n  max_attempts: 1\n")
    _, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    assert "attempt 1 of 1: the retry budget is spent" in the_note(project)["body"]
    assert fake_gitlab.calls("GET", rf"/projects/{PROJECT_ID}/repository/files/\.flakebot\.yml/raw")

    fake_gitlab.add_file(project, ".flakebot.yml", b"retry:\n  enabled: flase\n")
    _, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    body = the_note(project)["body"]
    assert (
        "flakebot settings:** .flakebot.yml is not valid" in body
        and "retry.enabled must be true or false" in body
    )
    assert "Did not re-run: the repository's flakebot settings are not valid" in body
    assert retried(fake_gitlab) == []


async def test_secrets_never_reach_the_note_or_the_logs(bot, fake_gitlab, caplog):
    """A trace that prints the bot's own token; every logger at DEBUG (python-gitlab, urllib3 too)."""
    caplog.set_level(logging.DEBUG)
    leak = f"AssertionError: login refused for PRIVATE-TOKEN {fake_gitlab.token}"
    project, pipeline = seed_pipeline(fake_gitlab, {"pytest": [("tests/test_auth.py::test_login", leak)]})
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await send(
        bot, fake_gitlab, "Pipeline Hook", {"object_kind": "pipeline"}, token="wrong-secret-0123456789"
    )
    await settle(bot)
    body = the_note(project)["body"]
    assert "tests/test_auth.py::test_login" in body and "login refused for PRIVATE-TOKEN ***" in body
    for secret in (fake_gitlab.token, fake_gitlab.webhook_secret, "wrong-secret-0123456789"):
        assert secret not in body and secret not in caplog.text
    assert "GitLab delivery refused: wrong or missing X-Gitlab-Token" in caplog.text


async def test_a_huge_trace_is_cut_at_the_cap_and_what_was_read_is_used(
    aiohttp_client, settings, fake_gitlab
):
    client = await aiohttp_client(create_app(replace(settings, max_log_bytes=2**20)))
    rng = random.Random(21)
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    job = fake_gitlab.jobs_of(project, pipeline["id"])[0]
    noise = b"".join(b"DEBUG teardown: container %06d removed\n" % n for n in range(100_000))  # 3.8 MB
    project.traces[job["id"]] += noise
    await send(client, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(client)
    body = the_note(project)["body"]
    assert ":repeat: **flake**" in row(body, "tests/test_new.py::test_fetch")
    assert "Note: the log of pytest was cut at 1 MB." in body


async def test_dry_run_decides_and_writes_nothing(aiohttp_client, settings, fake_gitlab):
    client = await aiohttp_client(create_app(replace(settings, dry_run=True)))
    rng = random.Random(10)
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    await send(client, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(client)
    assert [r for r in fake_gitlab.requests if r.method != "GET"] == []
    assert fake_gitlab.calls("GET", rf"/projects/{PROJECT_ID}/pipelines/\d+/jobs")  # it did decide
    assert await client.server.app[CTX].store.deliveries("done")


# --- the webhook endpoint ----------------------------------------------------------------------------


async def test_bad_and_unwanted_deliveries_are_refused_or_ignored_and_never_queued(bot, fake_gitlab):
    project, pipeline = seed_pipeline(fake_gitlab, {"pytest": []})
    payload = hook(fake_gitlab, project, pipeline)

    async def post(event: str, body, **options):
        return await send(bot, fake_gitlab, event, body, **options)

    assert (await post("Pipeline Hook", payload, token="wrong-secret-0123456789")).status == 401
    headers, body = fake_gitlab.delivery("Pipeline Hook", payload)
    del headers["X-Gitlab-Token"]
    assert (await bot.post("/gitlab", data=body, headers=headers)).status == 401
    for malformed in (
        b"[" * 100_000,  # deeper than any JSON parser recurses
        b"{not json",
        b"\xff\xfe\x00binary",
        b"[1, 2]",
        json.dumps({**payload, "project": None}).encode(),
    ):
        response = await post("Pipeline Hook", malformed)
        assert response.status == 400 and "malformed delivery" in (await response.json())["error"], malformed
    no_key = await post("Pipeline Hook", b"{}", with_idempotency_key=False)
    assert no_key.status == 400
    unknown = await post("Push Hook", {"object_kind": "push"})
    assert unknown.status == 200 and (await unknown.json())["ignored"] == "Push Hook"
    running = await post(
        "Pipeline Hook",
        {**payload, "object_attributes": {**payload["object_attributes"], "status": "running"}},
    )
    assert running.status == 200 and "running" in (await running.json())["ignored"]
    edited = await post("Note Hook", load_webhook("note_mr_update"))
    assert edited.status == 200 and "ignored" in await edited.json()
    huge = b'{"object_kind": "pipeline", "pad": "' + b"x" * (bot.settings.max_body_bytes + 1) + b'"}'
    assert (await post("Pipeline Hook", huge)).status == 413
    assert (await bot.post("/github", data=b"{}", headers={"X-GitHub-Event": "ping"})).status == 404
    assert await bot.server.app[CTX].store.deliveries() == []
    assert fake_gitlab.requests == []

    created = await post("Note Hook", load_webhook("note_mr_create"))
    assert created.status == 202  # a new MR comment goes to chat-ops


async def test_the_webhook_is_answered_before_gitlab_is_done(bot, fake_gitlab):
    rng = random.Random(17)
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    fake_gitlab.slow("GET", rf"/projects/{PROJECT_ID}/pipelines/\d+/jobs", delay=1.0)
    response = await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    assert response.status == 202
    assert project.mr_notes[mr_of(project)] == []  # answered from the durable queue, work still going on
    await settle(bot)
    the_note(project)


async def test_health_lists_gitlab(bot):
    health = await (await bot.get("/healthz")).json()
    assert health["status"] == "ok" and health["forges"] == ["gitlab"]


# --- faults ------------------------------------------------------------------------------------------


async def test_gitlab_errors_are_retried_within_bounds(bot, fake_gitlab):
    rng = random.Random(11)
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    jobs = rf"/projects/{PROJECT_ID}/pipelines/{pipeline['id']}/jobs"
    fake_gitlab.fail("GET", jobs, status=500, times=2)
    fake_gitlab.rate_limit("POST", rf"/projects/{PROJECT_ID}/merge_requests/\d+/notes", retry_after="1")
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    the_note(project)
    assert len(fake_gitlab.calls("GET", jobs)) == 3
    assert [
        r.status for r in fake_gitlab.calls("POST", rf"/projects/{PROJECT_ID}/merge_requests/\d+/notes")
    ] == [429, 201]


async def test_a_gitlab_that_keeps_failing_leaves_the_delivery_for_later(bot, fake_gitlab):
    rng = random.Random(12)
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    jobs = rf"/projects/{PROJECT_ID}/pipelines/{pipeline['id']}/jobs"
    fake_gitlab.fail("GET", jobs, status=502, times=4)  # every attempt python-gitlab makes
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    store = bot.server.app[CTX].store
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = await store.deliveries("pending")
        if rows and rows[0]["attempts"] == 1 and rows[0]["error"]:
            break
        await asyncio.sleep(0.05)
    (pending,) = await store.deliveries("pending")
    assert "502" in pending["error"]  # kept, to be tried again after a back-off
    assert len(fake_gitlab.calls("GET", jobs)) == 4 and project.mr_notes[mr_of(project)] == []


async def test_work_left_by_a_killed_process_resumes_at_start(aiohttp_client, settings, fake_gitlab):
    """A delivery claimed by a process that died (kill -9) is processed when flakebot starts again."""
    from bot.store import open_store

    rng = random.Random(13)
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )
    _, body = fake_gitlab.delivery("Pipeline Hook", hook(fake_gitlab, project, pipeline))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    store = open_store(settings.data_dir)
    store.enqueue("gitlab", "gitlab:left-behind", "Pipeline Hook", body)
    store.claim(time.time(), 3600, owner=f"{socket.gethostname()}:{dead.stdout.strip()}")
    store.close()

    client = await aiohttp_client(create_app(settings))
    await settle(client)
    the_note(project)
    assert (await client.server.app[CTX].store.deliveries("done"))[0]["delivery_id"] == "gitlab:left-behind"


# --- GitHub and GitLab from one service --------------------------------------------------------------


async def test_one_service_serves_github_and_gitlab_at_once(
    aiohttp_client, settings, fake_gitlab, fake_github, github_app_key
):
    from tests.ci_logs import actions_pytest_log
    from tests.fakes.github import delivery as github_delivery

    github_secret = "github-secret-" + "y" * 20
    both = replace(
        settings,
        github_webhook_secret=github_secret,
        github_app_id=str(github_app_key.app_id),
        github_private_key=github_app_key.private_pem,
        github_api_url=fake_github.url,
    )
    client = await aiohttp_client(create_app(both))
    rng = random.Random(18)
    repo = "octo-org/octo-repo"
    fake_github.add_repo(repo)
    fake_github.add_pull(repo, head_sha=SHA, head_ref=BRANCH)
    run = fake_github.add_run(repo, head_sha=SHA, conclusion="failure")
    fake_github.add_job(
        repo,
        run,
        "tests",
        conclusion="failure",
        log=actions_pytest_log([("tests/test_new.py::test_fetch", cause("reset", rng))]),
    )
    project, pipeline = seed_pipeline(
        fake_gitlab, {"pytest": [("tests/test_new.py::test_fetch", cause("reset", rng))]}
    )

    headers, body = github_delivery(
        "workflow_run", fake_github.workflow_run_payload(repo, run), github_secret
    )
    assert (await client.post("/github", data=body, headers=headers)).status == 202
    assert (
        await send(client, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    ).status == 202
    await settle(client)

    (pull,) = fake_github.repo(repo).pulls
    (comment,) = fake_github.comments_on(repo, pull)
    assert ":repeat: **flake**" in comment["body"] and ":repeat: **flake**" in the_note(project)["body"]
    assert (
        len(fake_github.calls("actions/re-run-workflow-failed-jobs")) == 1 and len(retried(fake_gitlab)) == 1
    )
    store = client.server.app[CTX].store
    assert sorted(await store.repos()) == [f"github:{repo}", f"gitlab:{PROJECT}"]
    assert (await (await client.get("/healthz")).json())["forges"] == ["github", "gitlab"]


async def test_hostile_test_and_job_names_reach_the_note_harmless(bot, fake_gitlab):
    """Hardening 10 through the real service: GitLab's mentions (``@all``) and references too."""
    from tests.markdown_check import render_markdown

    test = "tests/test_x.py::test_p[`<img src=https://evil.example/p.png>`@all]"
    job = "pytest <img src=https://evil.example/j.png> @all | ~label !1"
    project, pipeline = seed_pipeline(fake_gitlab, {job: [(test, cause("reset", random.Random(1)))]})
    await send(bot, fake_gitlab, "Pipeline Hook", hook(fake_gitlab, project, pipeline))
    await settle(bot)
    shown = render_markdown(the_note(project)["body"])
    assert shown.foreign_tags == set() and shown.mentions == []
    assert not any("evil.example" in link for link in shown.links)
    assert test in shown.codes and job in shown.codes
    assert shown.rows == [5, 5]
