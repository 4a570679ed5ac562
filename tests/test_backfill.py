"""Day one, end to end: a backfill reads a repository's CI history from the fake forges (real HTTP), labels
its failures, learns a first model, and the service judges the next failing run with it.

The histories are synthetic (``tests/backfill_data.py``): every failure has a known truth, so the weak
labels can be checked against it.
"""

from __future__ import annotations

import asyncio
import json
import random

import aiohttp
import pytest
from click.testing import CliRunner

from bot.backfill import Progress, StoreCache, backfill
from bot.cli import cli
from bot.config import Settings
from bot.context import Context, ModelProvider
from bot.forge.github import GitHubForge
from bot.forge.gitlab import GitLabForge
from bot.forge.pace import Pace
from bot.store import open_store
from bot.store.adapters import ThreadedStore
from tests.backfill_data import JOB, TESTS, history, seed_github, seed_gitlab, truths
from tests.ci_logs import actions_pytest_log, cause
from tests.fakes.gitlab import DEFAULT_TOKEN
from tests.test_e2e_github import SECRET

REPO = "octo-org/octo-repo"
KEY = f"github:{REPO}"


def expected(runs) -> dict[str, int]:
    return {"runs": len(runs), "jobs": sum(1 + len(r.attempts) for r in runs),
            "failures": sum(len(a.failures) for r in runs for a in r.attempts)}  # fmt: skip


def agreement(store, runs) -> tuple[int, int]:
    """(agreeing, disagreeing) weak labels of the stored failures, against the synthetic truth."""
    truth = truths(runs)
    agree = disagree = 0
    for revision, attempt, test, label in store.db.execute(
        "SELECT revision, attempt, test, weak_label FROM failures WHERE weak_label IS NOT NULL"
    ):
        if truth[(revision, attempt, test)] == label:
            agree += 1
        else:
            disagree += 1
    return agree, disagree


@pytest.fixture
async def context(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", model_dir=tmp_path / "model")
    ctx = Context(settings, ThreadedStore(open_store(settings.data_dir)), ModelProvider(settings.model_dir))
    yield ctx
    await ctx.store.aclose()


def github(session, fake, key, store, sleeps: list[float], pace: Pace | None = None) -> GitHubForge:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return GitHubForge(session, api_url=fake.url, app_id=key.app_id, private_key=key.private_pem, max_wait=3900,
                       sleep=sleep, cache=StoreCache(store), pace=pace or Pace())  # fmt: skip


async def test_a_github_backfill_learns_a_model_that_judges_the_next_failing_run(
    fake_github, github_app_key, context, aiohttp_client
):
    fake_github.page_size, fake_github.listing_cap = 25, 60  # pages of 25; a window of 150 runs is split
    runs = history(150, seed=3)
    seed_github(fake_github, REPO, runs)
    # a secondary rate limit while listing jobs, a primary one (spent, resets in 3 s) on a log
    fake_github.rate_limit("actions/list-jobs-for-workflow-run", retry_after=2)
    fake_github.rate_limit("actions/download-job-logs-for-workflow-run", retry_after=None, reset_in=3)
    sleeps: list[float] = []
    pace = Pace()
    async with aiohttp.ClientSession() as session:
        forge = github(session, fake_github, github_app_key, context.store, sleeps, pace)
        forge.max_listed_runs = fake_github.listing_cap
        repo = await forge.find_repo(REPO)
        summary = await backfill(context, forge, repo, days=30)

    want = expected(runs)
    assert summary.as_json() | want == summary.as_json()  # every run, job (each attempt) and failure
    assert summary.flake + summary.real + summary.unlabelled == summary.failures
    store = context.store.store
    agree, disagree = agreement(store, runs)
    assert agree >= 0.5 * summary.failures and disagree <= 0.05 * (agree + disagree)
    assert (agree + disagree) == summary.flake + summary.real
    # the rate limits were waited out, and the reading slowed down after them
    assert pace.limited == 2 and 2 in sleeps  # Retry-After: 2
    assert any(1.5 < s <= 5 and s != 2 for s in sleeps)  # until the reset, a second after it
    assert any(0 < s < 1.5 for s in sleeps)  # the pause after a limit
    # nothing was written to GitHub; the listing was split where GitHub would have cut it at 60 runs
    writes = {r.operation for r in fake_github.requests if r.method != "GET"}
    assert writes == {"apps/create-installation-access-token"}  # the App's token: nothing else
    listings = fake_github.calls("actions/list-workflow-runs-for-repo")
    assert len({r.query["created"][0] for r in listings}) > 3
    # the history holds every attempt: a flaky failure of attempt 1 and the pass of attempt 2
    flaky_run = next(
        r for r in runs if len(r.attempts) == 2 and any(t == "flake" for _, _, t in r.attempts[0].failures)
    )
    flaky_test = next(t for t, _, truth in flaky_run.attempts[0].failures if truth == "flake")
    rows = [
        (r.attempt, r.status) for r in store.test_runs(KEY, flaky_test, JOB) if r.revision == flaky_run.sha
    ]
    assert rows == [(1, "failed"), (2, "passed")]
    scores = {(s["test"], s["job"]): s["score"] for s in store.scores(KEY)}
    assert scores[(flaky_test, JOB)]["score"] > 0  # scored from the real history

    # a first model was trialled and activated through the retrain's gate
    assert summary.outcome == "promoted" and summary.model
    assert context.models.repo_store(KEY).active_version() == summary.model
    assert (await context.store.backfill_state(KEY))["status"] == "done"

    # the service judges the next failing run with it
    settings = Settings(github_webhook_secret="s" * 20, github_app_id=str(github_app_key.app_id),
                        github_private_key=github_app_key.private_pem, github_api_url=fake_github.url,
                        data_dir=context.settings.data_dir, model_dir=context.settings.model_dir)  # fmt: skip
    from bot.web import create_app
    from tests.test_e2e_github import send, settle

    sha = "f" * 40
    fake_github.add_pull(REPO, head_sha=sha, head_ref="fix-cart")
    run_id = fake_github.add_run(REPO, head_sha=sha, head_branch="fix-cart")
    rng = random.Random(5)
    fake_github.add_job(
        REPO, run_id, JOB, log=actions_pytest_log([(TESTS[3], cause("reset", rng))], TESTS[4:], seed=99)
    )
    client = await aiohttp_client(create_app(settings))
    response = await send(
        client, "workflow_run", fake_github.workflow_run_payload(REPO, run_id), secret="s" * 20
    )
    assert response.status == 202
    await settle(client)
    (comment,) = fake_github.comments_on(REPO, next(iter(fake_github.repo(REPO).pulls)))
    assert "**flake**" in comment["body"] and "still reading" not in comment["body"]


class StopAfter(Progress):
    def __init__(self, runs: int):
        self.left, self.stopped = runs, asyncio.Event()

    def read(self, run) -> None:
        self.left -= 1
        if self.left == 0:
            self.stopped.set()


async def test_an_interrupted_backfill_continues_where_it_stopped_and_counts_no_run_twice(
    fake_github, github_app_key, context, tmp_path
):
    fake_github.page_size = 5
    runs = history(14, seed=8)
    seed_github(fake_github, REPO, runs)
    sleeps: list[float] = []
    async with aiohttp.ClientSession() as session:
        forge = github(session, fake_github, github_app_key, context.store, sleeps)
        repo = await forge.find_repo(REPO)
        stop = StopAfter(5)
        task = asyncio.create_task(backfill(context, forge, repo, days=30, train=False, progress=stop))
        await stop.stopped.wait()
        task.cancel()  # as Ctrl-C does
        with pytest.raises(asyncio.CancelledError):
            await task
        state = await context.store.backfill_state(KEY)
        counts = await context.store.backfill_counts(KEY, state["since"], state["until"])
        assert state["status"] == "interrupted" and 5 <= counts["runs"] < 14 and counts["pending"] > 0

        before = len(fake_github.requests)
        summary = await backfill(context, forge, repo, days=30, train=False)
        assert summary.resumed and summary.as_json() | expected(runs) == summary.as_json()
        # the listing was asked again conditionally: unchanged pages cost GitHub nothing (304)
        again = [
            r for r in fake_github.requests[before:] if r.operation == "actions/list-workflow-runs-for-repo"
        ]
        assert again and {r.status for r in again} == {304}

        # the same history as a backfill that was never interrupted
        other = Settings(data_dir=tmp_path / "other", model_dir=tmp_path / "other-model")
        ctx2 = Context(other, ThreadedStore(open_store(other.data_dir)), ModelProvider(other.model_dir))
        try:
            reference = await backfill(ctx2, github(session, fake_github, github_app_key, ctx2.store, []), repo,
                                       days=30, train=False)  # fmt: skip
            query = "SELECT test, job, run_id, attempt, status FROM runs ORDER BY 1, 2, 3, 4"
            assert context.store.store._rows(query) == ctx2.store.store._rows(query)
            query = "SELECT test, run_id, attempt, weak_label FROM failures ORDER BY 1, 2, 3"
            assert context.store.store._rows(query) == ctx2.store.store._rows(query)
        finally:
            await ctx2.store.aclose()
    assert reference.as_json() == summary.as_json()


async def test_a_gitlab_backfill_reads_retried_jobs_page_by_page_through_a_rate_limit(fake_gitlab, context):
    fake_gitlab.max_per_page = 4
    project = fake_gitlab.add_project("group/sub/shop")
    runs = history(24, seed=4, rerun=0.9)
    seed_gitlab(fake_gitlab, project, runs)
    fake_gitlab.rate_limit("GET", r"/projects/[^/]+/jobs/\d+/trace", retry_after="0")
    pace = Pace(first_pause=0.01)
    forge = GitLabForge(url=fake_gitlab.url, token=DEFAULT_TOKEN, max_rate_limit_wait=3900, pace=pace)
    try:
        repo = await forge.find_repo("group/sub/shop")
        summary = await backfill(context, forge, repo, days=30, train=False)
    finally:
        await forge.aclose()
    assert summary.as_json() | expected(runs) == summary.as_json()
    assert pace.limited == 1
    assert all(r.method == "GET" for r in fake_gitlab.requests)
    jobs = fake_gitlab.calls("GET", r"/projects/[^/]+/pipelines/\d+/jobs")
    assert jobs and all(r.query["include_retried"][0].lower() == "true" for r in jobs)
    assert len(fake_gitlab.calls("GET", r"/projects/[^/]+/pipelines")) >= 24 // 4  # paged by 4
    agree, disagree = agreement(context.store.store, runs)
    assert (
        agree + disagree == summary.flake + summary.real and disagree <= 1 and summary.flake and summary.real
    )
    # a retried job's earlier attempt is in the history as attempt 1 of its pipeline
    retried = next(r for r in runs if len(r.attempts) == 2 and r.attempts[0].failures)
    test = retried.attempts[0].failures[0][0]
    rows = {
        r.attempt
        for r in context.store.store.test_runs("gitlab:group/sub/shop", test, JOB)
        if r.revision == retried.sha
    }
    assert rows == {1, 2}


async def test_the_command_prints_one_json_object_and_says_what_is_missing(
    fake_github, tmp_path, monkeypatch
):
    runs = history(10, seed=2)
    seed_github(fake_github, REPO, runs)
    env = {"GITHUB_TOKEN": fake_github.personal_token, "GITHUB_API_URL": fake_github.url,
           "FLAKEBOT_DATA_DIR": str(tmp_path / "data"), "FLAKEBOT_MODEL": str(tmp_path / "model")}  # fmt: skip
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITLAB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, cli, ["backfill", f"github:{REPO}", "--days", "7", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    (first,) = result.stdout.splitlines()  # the JSON object only: the words go to stderr
    printed = json.loads(first)
    assert list(printed) == ["runs", "jobs", "failures", "flake", "real", "unlabelled", "model"]
    assert printed | expected(runs) | {"model": None} == printed
    assert printed["flake"] + printed["real"] + printed["unlabelled"] == printed["failures"]
    assert "No model yet" in result.stderr and "more labelled failure(s) are needed" in result.stderr
    bad = await asyncio.to_thread(runner.invoke, cli, ["backfill", "octo-org/octo-repo"], env=env)
    assert bad.exit_code == 2 and "github:OWNER/NAME" in bad.output


def test_weak_labels_never_win_over_a_maintainer_or_a_pass_on_retry(store):
    from bot.store import Failure, WeakLabel

    store.record_failures(KEY, [Failure(test=t, log="E   boom", run_id=1, attempt=1, job=JOB, revision="a",
                                        change_number=7) for t in ("t1", "t2", "t3")])  # fmt: skip
    weak = [
        WeakLabel(1, 1, JOB, t, "real", "failed again in every later attempt") for t in ("t1", "t2", "t3")
    ]
    assert store.label_weak(KEY, weak) == 3 and store.label_weak(KEY, weak) == 0  # unchanged: not new
    store.label_by_human(KEY, 7, "t1", "flake", "octocat")
    store.label_passed_on_retry(KEY, 1, 2, ["t2"], job=JOB)
    labels = {r["test"]: r["label"] for r in store.training_records(KEY)}
    assert labels == {"t1": "flake", "t2": "flake", "t3": "real"}


# --- in the service ---------------------------------------------------------------------------------


@pytest.fixture
async def service(aiohttp_client, fake_github, github_app_key, tmp_path):
    """The service as in production, with no model at all (a new installation)."""
    from bot.web import create_app

    settings = Settings(github_webhook_secret=SECRET, github_app_id=str(github_app_key.app_id),
                        github_private_key=github_app_key.private_pem, github_api_url=fake_github.url,
                        data_dir=tmp_path / "data", model_dir=tmp_path / "model")  # fmt: skip
    return await aiohttp_client(create_app(settings))


async def test_the_first_run_of_a_repository_without_model_or_history_queues_a_backfill(service, fake_github):
    from bot.web import CTX
    from tests.test_e2e_github import SHA, seed_run, send, settle

    runs = history(6, seed=5)
    seed_github(fake_github, REPO, runs)
    rng = random.Random(1)
    run = seed_run(fake_github, [(TESTS[0], cause("dns", rng))])
    assert (await send(service, "workflow_run", fake_github.workflow_run_payload(REPO, run))).status == 202
    await settle(service)  # the run, then the backfill job (a child process) it queued

    comment = next(
        iter(c["body"] for c in fake_github.comments_on(REPO, next(iter(fake_github.repo(REPO).pulls))))
    )
    assert (
        "still reading the last 30 days of this repository's CI history" in comment
        and "**unknown**" in comment
    )
    store = service.server.app[CTX].store
    state = await store.backfill_state(KEY)
    assert state["status"] == "done" and state["days"] == 30 and state["requested_by"] is None
    # every run of the history, and the live one counted once (the service had recorded it already)
    assert state["result"]["runs"] == len(runs) + 1 and state["result"]["model"] is None
    assert state["result"]["missing"] is not None
    assert any(r.revision == SHA for r in await store.test_runs(KEY, TESTS[0], "tests (ubuntu)"))
    # it is queued once: a repository with a history is never backfilled by itself again
    again = seed_run(fake_github, [(TESTS[1], cause("dns", rng))], run_id=run + 1000)
    await send(service, "workflow_run", fake_github.workflow_run_payload(REPO, again))
    await settle(service)
    assert [d["event"] for d in await store.deliveries() if d["forge"] == "internal"] == ["backfill"]


async def test_on_postgresql_the_backfill_child_fills_the_shared_database_and_its_model_judges_the_next_run(
    aiohttp_client, fake_github, github_app_key, tmp_path, pg_url
):
    """The service on PostgreSQL: the backfill it queues runs in a child process that writes the
    service's database (``FLAKEBOT_DATABASE_URL`` from its settings), the first model is kept in the
    database, and the service judges the next failing run with it."""
    from bot.storedmodels import DatabaseModels
    from bot.web import CTX, create_app
    from tests.test_e2e_github import seed_run, send, settle

    settings = Settings(github_webhook_secret=SECRET, github_app_id=str(github_app_key.app_id),
                        github_private_key=github_app_key.private_pem, github_api_url=fake_github.url,
                        data_dir=tmp_path / "data", model_dir=tmp_path / "model", database_url=pg_url)  # fmt: skip
    service = await aiohttp_client(create_app(settings))
    runs = history(150, seed=3)
    seed_github(fake_github, REPO, runs)
    rng = random.Random(1)
    first = seed_run(fake_github, [(TESTS[0], cause("dns", rng))])
    assert (await send(service, "workflow_run", fake_github.workflow_run_payload(REPO, first))).status == 202
    await settle(service, timeout=60)  # the run, then the backfill job it queued (a child process)

    store = service.server.app[CTX].store
    state = await store.backfill_state(KEY)
    assert state["status"] == "done" and state["result"]["runs"] == len(runs) + 1
    assert state["result"]["outcome"] == "promoted"
    assert not (tmp_path / "data" / "flakebot.db").exists()  # nothing went to SQLite
    version = await asyncio.to_thread(DatabaseModels(store.blocking, KEY).active_version)
    assert version == state["result"]["model"]
    assert await store.cache_get(f"{fake_github.url}/repos/{REPO}/actions/runs") is None  # dropped when done

    sha = "f" * 40
    fake_github.add_pull(REPO, head_sha=sha, head_ref="fix-cart")
    run_id = fake_github.add_run(REPO, head_sha=sha, head_branch="fix-cart")
    fake_github.add_job(
        REPO, run_id, JOB, log=actions_pytest_log([(TESTS[3], cause("reset", rng))], TESTS[4:], seed=99)
    )
    assert (await send(service, "workflow_run", fake_github.workflow_run_payload(REPO, run_id))).status == 202
    await settle(service)
    (comment,) = fake_github.comments_on(REPO, 2)
    assert "**flake**" in comment["body"] and "still reading" not in comment["body"]


async def test_flake_backfill_reads_the_days_asked_and_replies_with_a_report(service, fake_github):
    from tests.test_e2e_chatops_github import BOT, comment

    seed_github(fake_github, REPO, history(8, seed=6))
    fake_github.add_pull(REPO, head_sha="e" * 40, head_ref="fix")
    fake_github.set_role(REPO, "alice", "write")
    await comment(service, fake_github, "/flake backfill 7 please")
    replies = [c["body"] for c in fake_github.comments_on(REPO, 1) if c["user"]["login"] == BOT]
    queued, report = replies
    assert "Reading the last 7 days of this repository's CI history in the background" in queued
    assert f"### flakebot backfill of `{KEY}`: done" in report and "Read **8** runs" in report
    assert "**No model yet:**" in report
    await comment(service, fake_github, "/flake backfill 500")
    assert "takes a number of days from 1 to 400" in [c["body"] for c in fake_github.comments_on(REPO, 1)][-1]


def test_flake_backfill_takes_an_optional_number_of_days():
    from bot.chatops import Command, parse_commands

    assert parse_commands("/flake backfill\n/flake BACKFILL `60`\n/flake backfill 7 days, please") == [
        Command("backfill"),
        Command("backfill", "60"),
        Command("backfill", "7"),
    ]
    (wrong,) = parse_commands("/flake backfill forever")
    assert wrong.error and "from 1 to 400" in wrong.error
    (zero,) = parse_commands("/flake backfill 0")
    assert zero.error


def test_a_run_read_goes_back_to_pending_only_when_it_got_a_new_attempt(store):
    entry = {"run_id": 5, "created_at": "2024-06-01T12:00:00Z", "attempt": 1, "run": {"id": 5}}
    window = ("2024-06-01T00:00:00Z", "2024-06-02T00:00:00Z")
    assert store.add_backfill_runs(KEY, [entry]) == 1
    store.finish_backfill_run(KEY, 5, jobs=3)
    assert store.add_backfill_runs(KEY, [entry]) == 0  # listed again (a resumed backfill): not read again
    assert store.pending_backfill_runs(KEY, *window) == []
    assert store.backfill_counts(KEY, *window) == {"runs": 1, "jobs": 3, "failures": 0, "pending": 0}
    assert store.add_backfill_runs(KEY, [entry | {"attempt": 2}]) == 1  # re-run since it was read
    assert [r["run_id"] for r in store.pending_backfill_runs(KEY, *window)] == [5]
    assert store.pending_backfill_runs(KEY, "2024-06-02T00:00:00Z", "2024-06-03T00:00:00Z") == []
