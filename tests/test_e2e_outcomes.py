"""Labels from outcomes, end to end: what happened after a failure becomes the training data's truth.

* a failure on the head commit of a pull request that was then merged is flake evidence (Cockpit's
  ``merged``); closing without merging says nothing;
* a failure that passed when the same run was retried is strong flake evidence, whether the retried
  run passed as a whole or failed again because of other tests; on GitLab also from the Job Hook of a
  retried job that passed.
"""

from __future__ import annotations

import random

import pytest

from bot.config import Settings
from bot.web import CTX, create_app
from tests.ci_logs import actions_pytest_log, cause, real_bug
from tests.fakes.gitlab import DEFAULT_TOKEN, DEFAULT_WEBHOOK_SECRET, load_webhook
from tests.retrain_data import train_shared_model
from tests.test_e2e_github import REPO, SECRET, seed_run, send, settle

KEY = f"github:{REPO}"


@pytest.fixture(scope="module")
def shared_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("shared-model")
    train_shared_model(path)
    return path


@pytest.fixture
async def bot(aiohttp_client, fake_github, github_app_key, shared_model, tmp_path):
    settings = Settings(github_webhook_secret=SECRET, github_app_id=str(github_app_key.app_id),
                        github_private_key=github_app_key.private_pem, github_api_url=fake_github.url,
                        data_dir=tmp_path / "data", model_dir=shared_model)  # fmt: skip
    return await aiohttp_client(create_app(settings))


async def labels(client, key=KEY) -> dict[str, tuple]:
    records = await client.server.app[CTX].store.training_records(key)
    return {r["test"]: (r["label"], r["merged"]) for r in records}


async def test_failures_of_a_merged_head_commit_are_flake_evidence(bot, fake_github):
    rng = random.Random(1)
    run = seed_run(fake_github, [("tests/test_cart.py::test_sum", real_bug(rng))])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    other = fake_github.add_pull(REPO, head_sha="f" * 40, head_ref="other")
    other_run = fake_github.add_run(REPO, head_sha="f" * 40, head_branch="other")
    fake_github.add_job(REPO, other_run, "tests (ubuntu)",
                        log=actions_pytest_log([("tests/test_other.py::test_x", real_bug(rng))]))  # fmt: skip
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, other_run))
    await settle(bot)
    assert await labels(bot) == {
        "tests/test_cart.py::test_sum": (None, None),
        "tests/test_other.py::test_x": (None, None),
    }

    response = await send(bot, "pull_request", fake_github.pull_request_closed_payload(REPO, 1))
    assert response.status == 202
    await send(
        bot, "pull_request", fake_github.pull_request_closed_payload(REPO, other["number"], merged=False)
    )
    await settle(bot)
    assert await labels(bot) == {
        "tests/test_cart.py::test_sum": (None, True),  # its commit was merged anyway: flake evidence
        "tests/test_other.py::test_x": (None, None),  # closed without merging: no evidence either way
    }
    assert "github:octo-org/octo-repo" in await bot.server.app[CTX].store.last_labelled()


async def test_a_test_that_passed_on_a_retry_is_flaky_even_when_the_retried_run_failed_again(
    bot, fake_github
):
    rng = random.Random(2)
    fetch, total = "tests/test_new.py::test_fetch", "tests/test_cart.py::test_total"
    run = seed_run(fake_github, [(fetch, cause("reset", rng)), (total, real_bug(rng))])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    assert (
        fake_github.calls("actions/re-run-workflow-failed-jobs") == []
    )  # a real failure: no retry by itself
    # someone re-runs the failed jobs: test_fetch passes this time, test_total fails again
    seed_run(fake_github, [(total, real_bug(rng))], attempt=2, run_id=run, passes=[fetch])
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    records = await bot.server.app[CTX].store.training_records(KEY)
    first = {r["test"]: r["label"] for r in records if r["failure_id"] <= 2}
    assert first == {fetch: "flake", total: None}
    comments = [c["body"] for c in fake_github.comments_on(REPO, 1)]
    assert "1 failure(s) of an earlier attempt passed on this one: they are recorded as flaky." in comments[0]


# --- GitLab -------------------------------------------------------------------------------------------


@pytest.fixture
async def gitlab_bot(aiohttp_client, fake_gitlab, shared_model, tmp_path):
    settings = Settings(gitlab_url=fake_gitlab.url, gitlab_token=DEFAULT_TOKEN,
                        gitlab_webhook_secret=DEFAULT_WEBHOOK_SECRET, data_dir=tmp_path / "data",
                        model_dir=shared_model)  # fmt: skip
    return await aiohttp_client(create_app(settings))


async def test_a_gitlab_job_that_passed_on_retry_labels_its_earlier_failures(gitlab_bot, fake_gitlab):
    job_hook = load_webhook("job_retry_success")
    pipeline = load_webhook("pipeline_failed_mr")
    attrs = pipeline["object_attributes"]
    attrs.update(id=job_hook["pipeline_id"], sha=job_hook["sha"], ref=job_hook["ref"])
    pipeline["project"].update(
        id=job_hook["project_id"], path_with_namespace=job_hook["project"]["path_with_namespace"]
    )
    pipeline["merge_request"].update(
        target_project_id=job_hook["project_id"], source_project_id=job_hook["project_id"]
    )
    pipeline["builds"] = [
        dict(pipeline["builds"][2], id=1977, name="test", status="failed", failure_reason="script_failure")
    ]
    rng = random.Random(3)
    trace = actions_pytest_log(
        [("tests/test_net.py::test_poll", cause("timeout", rng)), ("tests/test_x.py::test_y", real_bug(rng))]
    )
    fake_gitlab.seed_from_pipeline_hook(pipeline, traces={"test": trace})
    key = f"gitlab:{job_hook['project']['path_with_namespace']}"

    headers, body = fake_gitlab.delivery("Pipeline Hook", pipeline)
    assert (await gitlab_bot.post("/gitlab", data=body, headers=headers)).status == 202
    await settle(gitlab_bot)
    assert await labels(gitlab_bot, key) == {
        "tests/test_net.py::test_poll": (None, None),
        "tests/test_x.py::test_y": (None, None),
    }

    headers, body = fake_gitlab.delivery("Job Hook", job_hook)
    assert (await gitlab_bot.post("/gitlab", data=body, headers=headers)).status == 202
    await settle(gitlab_bot)
    assert await labels(gitlab_bot, key) == {
        "tests/test_net.py::test_poll": ("flake", None),
        "tests/test_x.py::test_y": ("flake", None),  # the whole job passed on its retry
    }
