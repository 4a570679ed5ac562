"""flakebot end to end on GitHub: real HTTP from a signed webhook to the fake GitHub and back.

The service runs as in production (aiohttp app, SQLite store, queue workers, a trained model on disk);
the fake GitHub checks every request against GitHub's OpenAPI description.
"""

from __future__ import annotations

import asyncio
import io
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from bot.config import Settings
from bot.modelstore import ModelStore
from bot.split import split_log
from bot.training import interleave, train_and_save
from bot.web import CTX, QUEUE, create_app
from tests.ci_logs import actions_pytest_log, cause, real_bug
from tests.fakes.github import delivery

SECRET = "webhook-secret-" + "x" * 20
REPO = "octo-org/octo-repo"
SHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model trained on earlier failures of this shop: recurring flaky causes and one-off bugs."""
    rng = random.Random(3)
    failures = []
    for i in range(24):
        name = ("reset", "timeout", "dns")[i % 3]
        failures.append((f"tests/test_old{i}.py::test_thing_{i}", cause(name, rng), "flake"))
    for i in range(16):
        failures.append((f"tests/test_bug{i}.py::test_case_{i}", real_bug(rng), "real"))
    records = []
    for test, message, label in failures:
        log = actions_pytest_log([(test, message)], seed=len(records))
        (record,) = split_log([log], job="tests")
        records.append({**record, "label": label})
    path = tmp_path_factory.mktemp("model")
    # trialled on its newest failures as `flakebot train` does: the retry threshold comes from that trial
    train_and_save(ModelStore(path), interleave(records), {"trained_on": {"failures": len(records)}})
    return path


@pytest.fixture
def settings(fake_github, github_app_key, model_dir, tmp_path) -> Settings:
    return Settings(
        github_webhook_secret=SECRET,
        github_app_id=str(github_app_key.app_id),
        github_private_key=github_app_key.private_pem,
        github_api_url=fake_github.url,
        data_dir=tmp_path / "data",
        model_dir=model_dir,
        workers=2,
    )


@pytest.fixture
async def bot(aiohttp_client, settings):
    app = create_app(settings)
    client = await aiohttp_client(app)
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


async def send(client, event: str, payload, *, secret: str | None = SECRET, delivery_id: str | None = None):
    headers, body = delivery(event, payload, secret, delivery_id=delivery_id)
    return await client.post("/github", data=body, headers=headers)


def seed_run(
    fake, failures, *, attempt=1, conclusion="failure", run_id=None, passes=(), pull=True, head_owner=None
):
    if REPO not in fake.repos:
        fake.add_repo(REPO)
    if pull and not fake.repo(REPO).pulls:
        fake.add_pull(REPO, head_sha=SHA, head_ref="fix-flaky-test", head_owner=head_owner)
    run_id = fake.add_run(REPO, head_sha=SHA, conclusion=conclusion, attempt=attempt, run_id=run_id)
    fake.add_job(
        REPO,
        run_id,
        "tests (ubuntu)",
        conclusion=conclusion,
        log=actions_pytest_log(failures, passes, seed=attempt),
    )
    fake.add_job(REPO, run_id, "lint", conclusion="success", log=b"ok\n")
    return run_id


def the_comment(fake) -> dict:
    (number,) = fake.repo(REPO).pulls
    comments = fake.comments_on(REPO, number)
    assert len(comments) == 1, [c["body"][:80] for c in comments]
    return comments[0]


async def test_a_run_of_flakes_gets_one_comment_and_one_retry(bot, fake_github):
    rng = random.Random(9)
    run = seed_run(
        fake_github,
        [
            ("tests/test_new.py::test_fetch", cause("reset", rng)),
            ("tests/test_new.py::test_poll", cause("timeout", rng)),
        ],
        passes=["tests/test_new.py::test_ok"],
    )
    response = await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    assert response.status == 202 and (await response.json())["queued"] is True
    await settle(bot)

    body = the_comment(fake_github)["body"]
    assert body.startswith("<!-- flakebot:comment -->")
    assert "| `tests/test_new.py::test_fetch` | :repeat: **flake** |" in body
    assert "| `tests/test_new.py::test_poll` | :repeat: **flake** |" in body
    assert "Re-ran the failed jobs" in body and "attempt 2 of 3" in body
    assert len(fake_github.calls("actions/re-run-workflow-failed-jobs")) == 1
    # everything was recorded: the failures, the pass, and the failures kept for retraining
    store = bot.server.app[CTX].store
    assert (await store.summary(f"github:{REPO}", "tests/test_new.py::test_ok", "tests (ubuntu)")).runs == 1
    assert len([r async for r in _aiter(await store.training_records(f"github:{REPO}"))]) == 2
    metrics = await (await bot.get("/metrics")).text()
    assert 'flakebot_failures_judged_total{forge="github",verdict="flake"} 2.0' in metrics
    assert 'flakebot_retries_total{forge="github"} 1.0' in metrics


async def _aiter(items):
    for item in items:
        yield item


async def test_a_real_failure_is_never_retried(bot, fake_github):
    rng = random.Random(4)
    run = seed_run(
        fake_github,
        [
            ("tests/test_new.py::test_fetch", cause("reset", rng)),
            ("tests/test_cart.py::test_sum", real_bug(rng)),
        ],
    )
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    body = the_comment(fake_github)["body"]
    assert "| `tests/test_cart.py::test_sum` |" in body
    row = next(line for line in body.splitlines() if "test_sum" in line and line.startswith("|"))
    assert "**real**" in row or "**unknown**" in row
    assert "Did not re-run: not every failure is a flake" in body
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []


async def test_a_redelivery_does_nothing_twice(bot, fake_github):
    rng = random.Random(5)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("dns", rng))])
    payload = fake_github.workflow_run_payload(REPO, run)
    first = await send(bot, "workflow_run", payload, delivery_id="d-1")
    await settle(bot)
    again = await send(bot, "workflow_run", payload, delivery_id="d-1")
    await settle(bot)
    assert (await first.json())["queued"] is True and (await again.json())["queued"] is False
    the_comment(fake_github)
    assert len(fake_github.calls("actions/re-run-workflow-failed-jobs")) == 1
    assert (
        len(fake_github.calls("issues/create-comment")) == 1
        and fake_github.calls("issues/update-comment") == []
    )


async def test_a_passing_retry_updates_the_same_comment_and_labels_the_failures(bot, fake_github):
    rng = random.Random(6)
    failures = [("tests/test_new.py::test_fetch", cause("reset", rng))]
    run = seed_run(fake_github, failures)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    first = the_comment(fake_github)

    seed_run(
        fake_github, [], attempt=2, conclusion="success", run_id=run, passes=["tests/test_new.py::test_fetch"]
    )
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    comment = the_comment(fake_github)
    assert comment["id"] == first["id"]
    assert ":white_check_mark: **Passed on attempt 2.**" in comment["body"]
    assert "recorded as flaky" in comment["body"]
    records = list(await bot.server.app[CTX].store.training_records(f"github:{REPO}"))
    assert [r["label"] for r in records] == ["flake"]  # passed on retry of the same commit


async def test_the_retry_budget_and_safe_mode(bot, fake_github):
    rng = random.Random(7)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))], attempt=3)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    assert "attempt 3 of 3: the retry budget is spent" in the_comment(fake_github)["body"]
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []

    fake_github.add_file(REPO, ".github/flakebot.yml", "retry:\n  enabled: flase\n")
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    body = the_comment(fake_github)["body"]
    assert (
        "flakebot settings:** .github/flakebot.yml is not valid" in body
        and "retry.enabled must be true or false" in body
    )
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []


async def test_a_fork_pull_request_is_found_by_branch_and_sha(bot, fake_github):
    rng = random.Random(8)
    run = seed_run(
        fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))], head_owner="contributor"
    )
    payload = fake_github.workflow_run_payload(REPO, run)
    assert payload["workflow_run"]["pull_requests"] == []  # GitHub lists no PR for fork runs
    await send(bot, "workflow_run", payload)
    await settle(bot)
    assert "flake" in the_comment(fake_github)["body"]


async def test_junit_artifacts_name_the_failures(bot, fake_github):
    run = seed_run(fake_github, [], pull=True)
    xml = (Path(__file__).parent / "fixtures" / "logs" / "junit-pytest.xml").read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("junit/results.xml", xml)
    fake_github.add_artifact(REPO, run, "junit-results", archive.getvalue())
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    body = the_comment(fake_github)["body"]
    from bot.split import split_report

    failed = [r["test"] for r in split_report(xml, "junit-xml") if r["status"] in ("failure", "error")]
    assert failed and all(f"`{name}`" in body for name in failed)


async def test_a_junit_test_that_passed_on_its_runners_rerun_is_history_not_a_failure(bot, fake_github):
    """Issue 13: Surefire's <flakyFailure> is a failed run and a pass on one revision (a flip), kept out of
    the run's failures, its comment and its retry decision."""
    rng = random.Random(12)
    run = seed_run(fake_github, [("tests/test_cart.py::test_sum", real_bug(rng))])
    flaky = (
        Path(__file__).parent
        / "fixtures"
        / "surefire"
        / "TEST-com.github.pihme.jenkinstestbed.module1.FlakyTest.xml"
    )
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("surefire-reports/TEST-FlakyTest.xml", flaky.read_bytes())
    fake_github.add_artifact(REPO, run, "surefire-reports", archive.getvalue())
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    body = the_comment(fake_github)["body"]
    test = "com.github.pihme.jenkinstestbed.module1.FlakyTest.flakyTest"
    assert "**1 failed test:**" in body and f"`{test}`" not in body
    assert "1 test(s) failed and then passed when the test runner re-ran them within their job" in body
    store = bot.server.app[CTX].store
    (row,) = [r for r in await store.scores(f"github:{REPO}") if r["test"] == test]
    summary = await store.summary(f"github:{REPO}", test, row["job"])
    assert (summary.runs, summary.failures, summary.flips) == (2, 1, 1)  # failed, then passed: one flip
    assert row["score"]["recommendation"]["action"] != "stable"  # a same-revision flip is never stable
    failures = [r async for r in _aiter(await store.training_records(f"github:{REPO}"))]
    assert [r["test"] for r in failures] == ["tests/test_cart.py::test_sum"]
    # the same run delivered again records nothing twice
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run), delivery_id="again")
    await settle(bot)
    assert (await store.summary(f"github:{REPO}", test, row["job"])).runs == 2


async def test_dry_run_decides_and_writes_nothing(aiohttp_client, settings, fake_github):
    from dataclasses import replace

    client = await aiohttp_client(create_app(replace(settings, dry_run=True)))
    rng = random.Random(10)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))])
    await send(client, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(client)
    writes = [
        r
        for r in fake_github.requests
        if r.method in ("POST", "PATCH") and r.operation != "apps/create-installation-access-token"
    ]
    assert writes == []
    assert await client.server.app[CTX].store.deliveries("done")


# --- the webhook endpoint ----------------------------------------------------------------------------


async def test_bad_and_unknown_deliveries_are_refused_or_ignored_and_never_queued(bot, fake_github):
    fake_github.add_repo(REPO)
    run = fake_github.add_run(REPO)
    payload = fake_github.workflow_run_payload(REPO, run)
    assert (await send(bot, "workflow_run", payload, secret="wrong-secret-xxxxxxxxxxxx")).status == 401
    assert (await send(bot, "workflow_run", payload, secret=None)).status == 401
    headers, body = delivery("workflow_run", payload, SECRET)
    sha1 = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"} | {
        "X-Hub-Signature": "sha1=" + "0" * 40
    }
    assert (await bot.post("/github", data=body, headers=sha1)).status == 401
    bad_json_headers, _ = delivery("workflow_run", b"{not json", SECRET)
    assert (await bot.post("/github", data=b"{not json", headers=bad_json_headers)).status == 400
    ping = await send(bot, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert ping.status == 200 and (await ping.json())["msg"] == "pong"
    assert (await send(bot, "star", {"action": "created"})).status == 200
    requested = dict(payload, action="requested")
    assert (await (await send(bot, "workflow_run", requested)).json())["ignored"] == "workflow_run.requested"
    huge = b'{"action": "completed", "pad": "' + b"x" * (bot.settings.max_body_bytes + 1) + b'"}'
    big_headers, _ = delivery("workflow_run", huge, SECRET)
    assert (await bot.post("/github", data=huge, headers=big_headers)).status == 413
    assert await bot.server.app[CTX].store.deliveries() == []


async def test_health_and_metrics(bot):
    health = await (await bot.get("/healthz")).json()
    assert health["status"] == "ok" and health["forges"] == ["github"] and health["model"]
    text = await (await bot.get("/metrics")).text()
    assert "flakebot_queue_depth" in text and "flakebot_classification_seconds" in text


# --- faults ------------------------------------------------------------------------------------------


async def test_forge_errors_are_retried_within_bounds(bot, fake_github):
    rng = random.Random(11)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))])
    fake_github.fail("actions/list-jobs-for-workflow-run", 500, times=2)
    fake_github.rate_limit("issues/create-comment", retry_after=1)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    the_comment(fake_github)
    assert len(fake_github.calls("actions/list-jobs-for-workflow-run")) == 3


async def test_a_forge_that_keeps_failing_leaves_the_delivery_for_later(bot, fake_github):
    rng = random.Random(12)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))])
    fake_github.fail("actions/list-jobs-for-workflow-run", 502, times=50)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    store = bot.server.app[CTX].store
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = await store.deliveries("pending")
        if rows and rows[0]["attempts"] == 1 and rows[0]["error"]:
            break
        await asyncio.sleep(0.05)
    (row,) = await store.deliveries("pending")
    assert "502" in row["error"] or "ForgeError" in row["error"]  # kept, to be tried again after a back-off


async def test_work_left_by_a_killed_process_resumes_at_start(aiohttp_client, settings, fake_github):
    """A delivery claimed by a process that died (kill -9) is processed when flakebot starts again."""
    from bot.store import open_store

    rng = random.Random(13)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))])
    _, body = delivery("workflow_run", fake_github.workflow_run_payload(REPO, run), SECRET)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    import socket

    store = open_store(settings.data_dir)
    store.enqueue("github", "left-behind", "workflow_run", body)
    store.claim(time.time(), 3600, owner=f"{socket.gethostname()}:{dead.stdout.strip()}")
    store.close()

    client = await aiohttp_client(create_app(settings))
    await settle(client)
    the_comment(fake_github)
    assert (await client.server.app[CTX].store.deliveries("done"))[0]["delivery_id"] == "left-behind"


async def test_a_crash_between_the_rerun_and_the_comment_resumes_at_once_and_reruns_nothing(
    aiohttp_client, settings, fake_github
):
    """Hardening 9: a process killed after GitHub accepted its re-run, before the comment, left the
    delivery claimed, the change's comment lock held and the re-run's intent recorded. The restarted
    service takes the lock at once (it died with its holder), recognises the re-run by the run's
    attempt, does not send it again and says in the comment that it was made."""
    import socket

    from bot.store import open_store

    rng = random.Random(14)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng)),
                                 ("tests/test_new.py::test_poll", cause("timeout", rng))])  # fmt: skip
    (number,) = fake_github.repo(REPO).pulls
    _, body = delivery("workflow_run", fake_github.workflow_run_payload(REPO, run), SECRET)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}:0badc0de"
    store = open_store(settings.data_dir)
    store.enqueue("github", "crashed", "workflow_run", body)
    store.claim(time.time(), 3600, owner=owner)
    assert store.try_lock(f"change:github:{REPO}:{number}", f"{owner}/comment", time.time(), 120)
    assert store.begin_rerun(f"github:{REPO}", run, 1) is None  # recorded before the call...
    store.close()
    fake_github.rerun_failed_jobs(REPO, run)  # ...which went through: attempt 2 and its jobs are queued

    started = time.monotonic()
    client = await aiohttp_client(create_app(settings))
    await settle(client, timeout=30)
    assert time.monotonic() - started < 20  # no wait on the dead process's lock
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []  # not sent twice
    comment = the_comment(fake_github)["body"]
    assert "Re-ran the failed jobs" in comment and "Could not re-run" not in comment
    # judged on attempt 1's jobs, not on the queued jobs GitHub now lists as the run's latest
    assert "`tests/test_new.py::test_fetch`" in comment and "`tests/test_new.py::test_poll`" in comment
    assert (await client.server.app[CTX].store.deliveries("done"))[0]["delivery_id"] == "crashed"


async def test_a_merged_pull_request_makes_its_head_failures_flake_evidence(bot, fake_github):
    from tests.fakes.github import load_webhook

    rng = random.Random(14)
    run = seed_run(fake_github, [("tests/test_new.py::test_fetch", cause("reset", rng))])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    (number,) = fake_github.repo(REPO).pulls
    closed = load_webhook("pull_request.closed.merged")
    closed["repository"] = fake_github.repo(REPO).data
    closed["pull_request"].update(number=number)
    closed["pull_request"]["head"]["sha"] = SHA
    assert (await send(bot, "pull_request", closed)).status == 202
    await settle(bot)
    (record,) = await bot.server.app[CTX].store.training_records(f"github:{REPO}")
    assert record["merged"] is True and record["pull"] == number

    unmerged = load_webhook("pull_request.closed")
    unmerged["repository"] = fake_github.repo(REPO).data
    assert (await send(bot, "pull_request", unmerged)).status == 202  # queued, and changes nothing


async def test_a_third_party_check_suite_is_judged_from_its_check_runs(bot, fake_github):
    from tests.fakes.github import load_webhook

    rng = random.Random(15)
    fake_github.add_repo(REPO)
    fake_github.add_pull(REPO, head_sha=SHA, head_ref="fix-flaky-test")
    payload = load_webhook("check_suite.completed")
    suite = payload["check_suite"]
    suite.update(head_sha=SHA, head_branch="fix-flaky-test", conclusion="failure", pull_requests=[])
    payload["repository"] = fake_github.repo(REPO).data
    output = actions_pytest_log([("tests/test_new.py::test_fetch", cause("reset", rng))]).decode()
    fake_github.add_check_run(REPO, suite["id"], "external-ci", output_text=output)
    assert (await send(bot, "check_suite", payload)).status == 202
    await settle(bot)
    body = the_comment(fake_github)["body"]
    assert "`tests/test_new.py::test_fetch` | :repeat: **flake**" in body
    assert "Could not re-run the failed jobs" in body and "third-party check suite" in body
    assert fake_github.calls("actions/re-run-workflow-failed-jobs") == []

    actions = load_webhook("check_suite.completed.actions")
    actions["repository"] = fake_github.repo(REPO).data
    assert (await send(bot, "check_suite", actions)).status == 202
    await settle(bot)  # GitHub Actions' own suites are covered by workflow_run: nothing more happens
    the_comment(fake_github)


async def test_hostile_test_job_and_workflow_names_reach_the_comment_harmless(bot, fake_github):
    """Hardening 10 through the real service: names from the PR's own workflow file and test ids."""
    from tests.markdown_check import render_markdown

    test = "tests/test_x.py::test_p[`<img src=https://evil.example/p.png>`@alice]"
    job = "tests <img src=https://evil.example/j.png> @octo-org/admins | x"
    fake_github.add_repo(REPO)
    fake_github.add_pull(REPO, head_sha=SHA, head_ref="fix-flaky-test")
    run = fake_github.add_run(REPO, head_sha=SHA)
    log = actions_pytest_log([(test, cause("reset", random.Random(1)))])
    fake_github.add_job(REPO, run, job, log=log)
    payload = fake_github.workflow_run_payload(REPO, run)
    payload["workflow_run"]["name"] = "CI <img src=https://evil.example/w.png> @alice"
    await send(bot, "workflow_run", payload)
    await settle(bot)
    shown = render_markdown(the_comment(fake_github)["body"])
    assert shown.foreign_tags == set() and shown.mentions == []
    assert not any("evil.example" in link for link in shown.links)
    assert test in shown.codes and job in shown.codes
    assert shown.rows == [5, 5]  # the header and the one failure


async def test_no_secret_from_a_run_reaches_the_database_or_the_comment(
    aiohttp_client, settings, fake_github, monkeypatch
):
    """Hardening 11 through the real service: a test id holding the webhook secret (in the
    environment, as in production) and a log with AWS keys; the store is read back as bytes on disk."""
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", SECRET)
    bot = await aiohttp_client(create_app(settings))
    aws_id, aws_secret = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    test = f"tests/test_hook.py::test_sig[{SECRET}-{aws_id}]"
    run = seed_run(fake_github, [(test, f"botocore.exceptions.ClientError: secret {aws_secret} invalid")])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    body = the_comment(fake_github)["body"]
    assert "tests/test_hook.py::test_sig[***-***]" in body
    store = bot.server.app[CTX].store
    assert len(list(await store.training_records(f"github:{REPO}"))) == 1
    kept = b"".join(p.read_bytes() for p in settings.data_dir.glob("flakebot.db*"))
    for secret in (SECRET, aws_id, aws_secret):
        assert secret not in body and secret.encode() not in kept, secret
