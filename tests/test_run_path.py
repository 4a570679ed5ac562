"""The run path's typed records and seams (``bot/run/``): the model's verdict kept whole at the boundary,
one score per test for quarantine, nothing fetched or loaded twice for a run, and chat-ops answering
from the store even when the comment's state is gone (real HTTP, SQLite and templates, as end to end)."""

from __future__ import annotations

import random

import pytest

from bot.run.quarantine import per_test
from bot.run.results import NO_MODEL, ModelVerdict, TestResult
from bot.scoring import Run, score_runs
from bot.status import history_status
from bot.web import CTX
from tests.ci_logs import cause, real_bug
from tests.test_e2e_chatops_github import KEY, comment, failed_run, replies, settings, shared_model  # noqa: F401
from tests.test_e2e_github import REPO, seed_run, send, settle

EXPLAINED = {"verdict": "flake", "flake_probability": 0.83, "cluster": 4, "cluster_size": 9,
             "cluster_flake_share": 0.9, "distance": 0.12, "reason": "",
             "nearest": [{"test": "t_old", "label": "flake", "distance": 0.12, "revision": "abc"}]}  # fmt: skip


def test_a_model_verdict_keeps_what_the_model_adds_and_gives_it_back():
    grown = {**EXPLAINED, "terms": [["connection reset", 1.7]], "threshold": 0.4}
    verdict = ModelVerdict.from_explain(grown)
    assert verdict.verdict == "flake" and verdict.cluster == 4 and verdict.nearest[0]["revision"] == "abc"
    assert verdict.extra == {"terms": [["connection reset", 1.7]], "threshold": 0.4}
    assert verdict.as_dict() == grown
    with pytest.raises(ValueError, match="verdict"):
        ModelVerdict.from_explain({**EXPLAINED, "verdict": "maybe"})


def test_a_repository_threshold_decides_the_verdict_and_is_reported():
    verdict = ModelVerdict.from_explain({**EXPLAINED, "threshold": 0.4})
    strict = verdict.with_threshold(0.9)
    assert (strict.verdict, strict.extra["threshold"]) == ("real", 0.9)
    assert verdict.with_threshold(0.5).verdict == "flake"
    assert NO_MODEL.with_threshold(0.1) is NO_MODEL  # no probability: nothing to compare
    assert NO_MODEL.verdict == "unknown" and "no flake model" in NO_MODEL.reason


def test_test_results_speak_the_one_status_vocabulary():
    failed = TestResult.from_record(
        {"status": "error", "test": "t", "log": "boom", "format": "pytest", "lines": [3, 9]},
        job="tests",
        job_url="https://ci/job/1",
        infra="runner_system_failure",
    )
    passed = TestResult.from_record({"status": "success", "test": "t", "log": ""}, job="tests", job_url="",
                                    infra="runner_system_failure")  # fmt: skip
    assert failed.failed and failed.lines == (3, 9) and failed.infra == "runner_system_failure"
    assert not passed.failed and passed.infra is None  # an infrastructure reason is a failure's
    assert [history_status(s) for s in ("failure", "success", "error", "skip")] == [
        "failed", "passed", "error", "skipped"
    ]  # fmt: skip
    with pytest.raises(ValueError):
        history_status("flaky")


def test_one_issue_per_test_with_its_score_in_each_job():
    """The quarantine stage gets each test's scores by job (its scope is a set of jobs, issue 13); the
    issue shows the flakiest job's score."""
    from bot.quarantine import Candidate

    flaky = score_runs([Run("passed" if i % 2 else "failed", revision=f"r{i // 2}") for i in range(40)])
    stable = score_runs([Run("passed")] * 40)
    tests = per_test({("t", "linux"): stable, ("t", "macos"): flaky, ("u", "linux"): stable})
    assert tests == {"t": {"linux": stable, "macos": flaky}, "u": {"linux": stable}}
    candidate = Candidate("t", flaky, jobs=tests["t"])
    assert candidate.shown_score(("linux",)) == stable and candidate.shown_score(("linux", "macos")) == flaky


# --- the service ---------------------------------------------------------------------------------------


@pytest.fixture
async def bot(aiohttp_client, settings):  # noqa: F811
    from bot.web import create_app

    return await aiohttp_client(create_app(settings))


async def test_a_failed_run_asks_for_its_changes_once_and_loads_the_model_once(bot, fake_github):
    models = bot.server.app[CTX].models
    loads = []
    real_load = models.load
    models.load = lambda repo=None: (loads.append(repo), real_load(repo))[1]
    await failed_run(bot, fake_github)
    assert len(fake_github.calls("pulls/get")) == 1  # the comment's changes and the failures' change
    assert loads == [KEY]  # the verdicts and the training data


async def test_chatops_answers_from_the_store_when_the_comments_state_is_gone(bot, fake_github):
    run = await failed_run(bot, fake_github)
    store = bot.server.app[CTX].store
    await store.save_change_state(KEY, 1, {})  # whatever happens to the comment's state
    fake_github.set_role(REPO, "alice", "write")
    await comment(bot, fake_github, "/flake explain test_fetch\n/flake retry")
    reply = replies(fake_github)[-1]
    assert "- **flake** in `tests (ubuntu)`" in reply and "The log: looks like a flake" in reply
    assert "The history: first run of this test flakebot has seen" in reply
    assert "re-running 1 failed job(s), attempt 2 of 3" in reply
    assert len(fake_github.calls("actions/re-run-workflow-failed-jobs")) == 1

    # a later attempt of the same commit passes: nothing is left to re-run
    seed_run(fake_github, [], attempt=2, conclusion="success", run_id=run)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    await comment(bot, fake_github, "/flake retry")
    assert "recorded no failed run of this pull request's latest commit" in replies(fake_github)[-1]


async def test_explain_shows_a_label_over_flakebots_verdict_and_each_jobs_newest_judgement(bot, fake_github):
    rng = random.Random(8)
    run = await failed_run(bot, fake_github, [("tests/test_cart.py::test_sum", real_bug(rng))])
    seed_run(fake_github, [("tests/test_cart.py::test_sum", cause("reset", rng))], attempt=2, run_id=run)
    await send(bot, "workflow_run", fake_github.workflow_run_payload(REPO, run))
    await settle(bot)
    fake_github.set_role(REPO, "alice", "write")
    await comment(bot, fake_github, "/flake flake test_sum")
    await comment(bot, fake_github, "/flake explain test_sum")
    reply = replies(fake_github)[-1]
    assert reply.count("- **flake** in `tests (ubuntu)`") == 1  # one row: the job's newest judgement,
    assert "The log: looks like a flake" in reply  # attempt 2's (a connection reset; attempt 1: a bug)
    assert ", labelled by alice (flakebot said unknown)" in reply and "has never passed (2 runs" in reply
    assert "flake, labelled by alice" in reply


async def test_a_pull_request_failing_a_test_broken_on_main_is_told_it_is_not_its_fault(bot, fake_github):
    """Issue 13: a test failing every commit of main since r20 fails on a PR too: "broken", no retry."""
    from bot.store import HistoryRun

    test = "tests/test_cart.py::test_sum"
    store = bot.server.app[CTX].store
    await store.record_runs(KEY, [HistoryRun(test=test, status="passed" if i < 20 else "failed", run_id=90_000 + i,
                                             job="tests (ubuntu)", revision=f"{i:02d}".ljust(40, "a"), branch="main",
                                             message=None if i < 20 else "AssertionError: 25 != 24")
                                  for i in range(26)])  # fmt: skip
    await failed_run(bot, fake_github, [(test, real_bug(random.Random(2)))])
    body = comment_of(fake_github)
    assert f"| `{test}` | :no_entry: **broken** |" in body
    assert (
        "already failing on the default branch since revision 20aaaaaaaaaa (6 run(s) in a row there)" in body
    )
    assert (
        "not caused by this change" in body
        and "Did not re-run: not every failure is a flake (1 broken)" in body
    )
    assert not fake_github.calls("actions/re-run-workflow-failed-jobs")


def comment_of(fake) -> str:
    from tests.test_e2e_chatops_github import the_comment

    return the_comment(fake)["body"]
