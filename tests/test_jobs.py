"""flakebot's own jobs: the retrain schedule, the retrain child process and malformed jobs."""

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import ConfigError, Settings, parse_duration
from bot.jobs import INTERNAL, due_for_retrain, handle_job, run_retrain_process, schedule_once
from bot.queue import PermanentError
from bot.store import Delivery
from tests.retrain_data import seed_failures

NOW = datetime(2024, 6, 10, 12, tzinfo=UTC)
WEEK = 7 * 86400.0


def iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_repository_is_due_when_labelled_since_a_retrain_that_is_old_enough():
    labelled = {"github:a/never": iso(1), "github:a/old": iso(1), "github:a/recent": iso(0.5),
                "github:a/nothing-new": iso(9), "github:a/garbled": iso(1)}  # fmt: skip
    attempts = {"github:a/old": iso(8), "github:a/recent": iso(2), "github:a/nothing-new": iso(8),
                "github:a/garbled": "last tuesday"}  # fmt: skip
    assert due_for_retrain(labelled, attempts, NOW, WEEK) == [
        "github:a/garbled",
        "github:a/never",
        "github:a/old",
    ]
    assert due_for_retrain(labelled, attempts, NOW, 86400.0) == [
        "github:a/garbled", "github:a/never", "github:a/old", "github:a/recent"
    ]  # fmt: skip


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604800.0), ("12h", 43200.0), ("30m", 1800.0),
                                               ("90", 90.0), ("2w", 1209600.0), ("off", None), ("", None), ("0", None)])  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bad_duration_is_a_clear_error():
    with pytest.raises(ConfigError, match="FLAKEBOT_RETRAIN_EVERY must be a duration"):
        Settings.from_env({"FLAKEBOT_RETRAIN_EVERY": "weekly"})


async def test_the_schedule_queues_each_due_repository_once(ctx):
    seed_failures(ctx.store.store, "github:octo/shop")
    assert await schedule_once(ctx, WEEK) == ["github:octo/shop"]
    (job,) = [d for d in await ctx.store.deliveries() if d["forge"] == INTERNAL]
    assert job["event"] == "retrain"
    assert await schedule_once(ctx, WEEK) == []  # queued already: its lock is held
    # the job ran: its lock is free again and the outcome noted
    owner = json.loads((await ctx.store.claim(10**10, 60, "test", (INTERNAL,))).payload)["owner"]
    await ctx.store.unlock("retrain:github:octo/shop", owner)

    def stamp(seconds_ago: float) -> str:
        return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # (the labels came two minutes ago, the retrain a minute ago)
    ctx.store.store.db.execute("UPDATE failures SET labelled_at = ?", [stamp(120)])
    ctx.store.store.db.conn.commit()
    ctx.models.repo_store("github:octo/shop").note_retrain({"at": stamp(60)})
    assert await schedule_once(ctx, WEEK) == []  # retrained just now: not due
    assert await schedule_once(ctx, WEEK, now=datetime.now(UTC) + timedelta(days=8)) == []  # no new label
    ctx.store.store.label_by_human("github:octo/shop", 1000, "tests/whatever", "real", "x")
    later = datetime.now(UTC) + timedelta(days=8)
    assert await schedule_once(ctx, WEEK, now=later) == []  # that label matched no failure: nothing new
    first = next(iter(ctx.store.store.training_records("github:octo/shop")))
    ctx.store.store.label_by_human("github:octo/shop", first["pull"], first["test"], "flake", "x")
    assert await schedule_once(ctx, WEEK, now=later) == ["github:octo/shop"]


async def test_a_retrain_that_takes_too_long_is_stopped(ctx, monkeypatch):
    monkeypatch.setattr(
        "bot.jobs.retrain_command", lambda *a: [sys.executable, "-c", "import time; time.sleep(30)"]
    )
    result = await run_retrain_process(ctx.settings, "github:octo/shop", "owner")
    assert result["outcome"] == "failed" and result["reason"] == "it took longer than 0 s and was stopped"


async def test_a_retrain_process_without_a_result_failed(ctx, monkeypatch):
    monkeypatch.setattr("bot.jobs.retrain_command", lambda *a: [sys.executable, "-c", "print('hello')"])
    result = await run_retrain_process(ctx.settings, "github:octo/shop", "owner")
    assert result["outcome"] == "failed" and result["reason"] == "the retrain process printed no result"


async def test_both_children_use_the_services_database_and_no_other_secret(ctx, monkeypatch):
    """The retrain and the backfill child write where the service reads: its FLAKEBOT_DATABASE_URL
    (from its settings, whatever this environment holds), and none when the service is on SQLite."""
    from dataclasses import replace

    from bot.jobs import backfill_env

    url = "postgresql://flakebot:pw@db.internal:5432/flakebot"
    monkeypatch.setenv("FLAKEBOT_DATABASE_URL", "postgresql://someone@elsewhere/other")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "s" * 20)
    show = "import json, os; print(json.dumps({'outcome': os.environ.get('FLAKEBOT_DATABASE_URL'), "
    show += "'secret': os.environ.get('GITHUB_WEBHOOK_SECRET')}))"
    monkeypatch.setattr("bot.jobs.retrain_command", lambda *a: [sys.executable, "-c", show])
    service = replace(ctx.settings, database_url=url, retrain_timeout=30, github_token="ghp_" + "t" * 36)
    assert await run_retrain_process(service, "github:octo/shop", "owner") == {"outcome": url, "secret": None}
    env = backfill_env(service)
    assert env["FLAKEBOT_DATABASE_URL"] == url and env["GITHUB_TOKEN"] == "ghp_" + "t" * 36
    assert "GITHUB_WEBHOOK_SECRET" not in env
    on_sqlite = replace(ctx.settings, retrain_timeout=30)
    assert (await run_retrain_process(on_sqlite, "github:octo/shop", "owner"))["outcome"] is None
    assert "FLAKEBOT_DATABASE_URL" not in backfill_env(on_sqlite)


@pytest.mark.parametrize(
    ("event", "payload"), [("retrain", b"{not json"), ("retrain", b"{}"), ("explode", b"{}")]
)
async def test_malformed_jobs_are_given_up_at_once(ctx, event, payload):
    delivery = Delivery(1, INTERNAL, "x", event, payload, 1, "working")
    with pytest.raises(PermanentError):
        await handle_job(ctx, {}, delivery)


async def test_scheduled_work_runs_on_one_instance_at_a_time(ctx):
    """Two instances on one store: the first to ask leads (and keeps leading by asking again); the other
    takes over when the leader gives up or its term runs out."""
    from dataclasses import replace

    from bot.jobs import LEADER, lead

    other = replace(ctx, owner="other-host:1:feedbeef")
    assert await lead(ctx, 60) and not await lead(other, 60)
    assert await lead(ctx, 60)  # renewed
    await ctx.store.unlock(LEADER, ctx.owner)  # the leader stopped
    assert await lead(other, 60) and not await lead(ctx, 60)
    await ctx.store.try_lock(LEADER, other.owner, 0, 1)  # its term ends (renewed long ago)
    assert await lead(ctx, 60)
