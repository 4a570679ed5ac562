"""Three ``flakebot serve`` processes on one PostgreSQL database and the fake GitHub (issue 14).

300 failed runs, each on a pull request of its own, are delivered round-robin to the three
instances; once a third of the comments are written, one instance is killed with ``kill -9``. The
others take over what it held (its deliveries when their lease runs out, its locks at once: they
were advisory locks on its connections), and in the end every run has exactly one comment, was
re-run once where the comment says so and never twice, and the queue is drained: nothing pending,
working or dead. The third instance answers webhooks only (``FLAKEBOT_WORKERS=0``) and a ``flakebot
worker`` process works beside them, as the Procfile splits web and worker processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.modelstore import ModelStore
from bot.split import split_log
from bot.store import open_store
from bot.training import interleave, train_and_save
from tests.ci_logs import actions_pytest_log, cause, real_bug
from tests.fakes.github import delivery

ROOT = Path(__file__).resolve().parent.parent
SECRET = "webhook-secret-" + "m" * 20
REPO = "octo-org/octo-repo"
RUNS = 300
INSTANCES = 3

pytestmark = pytest.mark.slow


def train_small_model(path: Path) -> Path:
    """As ``test_e2e_github.py``'s: recurring flaky causes and one-off bugs."""
    rng = random.Random(3)
    failures = [(f"tests/test_old{i}.py::test_thing_{i}", cause(("reset", "timeout", "dns")[i % 3], rng), "flake")
                for i in range(24)]  # fmt: skip
    failures += [(f"tests/test_bug{i}.py::test_case_{i}", real_bug(rng), "real") for i in range(16)]
    records = []
    for test, message, label in failures:
        (record,) = split_log([actions_pytest_log([(test, message)], seed=len(records))], job="tests")
        records.append({**record, "label": label})
    train_and_save(ModelStore(path), interleave(records), {"trained_on": {"failures": len(records)}})
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_three_instances_on_one_database_comment_each_run_once_through_a_kill_9(
    fake_github, github_app_key, pg_url, tmp_path
):
    model = train_small_model(tmp_path / "model")
    fake_github.add_repo(REPO)
    rng = random.Random(5)
    runs = []
    for i in range(RUNS):
        sha = f"{i:040x}"
        fake_github.add_pull(REPO, head_sha=sha, head_ref=f"branch-{i}")
        run = fake_github.add_run(REPO, head_sha=sha, head_branch=f"branch-{i}")
        log = actions_pytest_log([(f"tests/test_new_{i}.py::test_fetch", cause("reset", rng)),
                                  (f"tests/test_new_{i}.py::test_poll", cause("timeout", rng))],
                                 [f"tests/test_new_{i}.py::test_ok"], seed=i)  # fmt: skip
        fake_github.add_job(REPO, run, "tests (ubuntu)", log=log)
        runs.append(run)

    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_APP_ID": str(github_app_key.app_id),
           "GITHUB_PRIVATE_KEY": github_app_key.private_pem, "GITHUB_API_URL": fake_github.url,
           "FLAKEBOT_DATABASE_URL": pg_url, "FLAKEBOT_MODEL": str(model), "FLAKEBOT_LEASE": "3s",
           "FLAKEBOT_WORKERS": "3"}  # fmt: skip
    for name in ("GITHUB_TOKEN", "GITLAB_TOKEN", "GITLAB_WEBHOOK_SECRET", "FLAKEBOT_DRY_RUN"):
        env.pop(name, None)
    instances: list[tuple[str, subprocess.Popen[bytes]]] = []
    logs = []
    roles = [("serve", {}), ("serve", {}), ("serve", {"FLAKEBOT_WORKERS": "0"}), ("worker", {})]
    try:
        for n, (command, own) in enumerate(roles):
            port = free_port()
            logs.append(tmp_path / f"instance-{n}.log")
            with open(logs[-1], "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "bot", command, "--host", "127.0.0.1", "--port", str(port)],
                    cwd=ROOT, env={**env, **own, "FLAKEBOT_DATA_DIR": str(tmp_path / f"data-{n}")},
                    stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            instances.append((f"http://127.0.0.1:{port}", proc))
        async with aiohttp.ClientSession() as http:
            for url, proc in instances:
                await _healthy(http, url, proc)
            for i, run in enumerate(runs):  # round-robin over the serve processes, as a load balancer
                headers, body = delivery("workflow_run", fake_github.workflow_run_payload(REPO, run), SECRET)
                async with http.post(
                    instances[i % INSTANCES][0] + "/github", data=body, headers=headers
                ) as answer:
                    assert answer.status == 202, await answer.text()

            victim = instances[0][1]
            await _until(lambda: _commented(fake_github) >= RUNS // 3, 120, "a third of the comments")
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            await _until(lambda: _commented(fake_github) >= RUNS, 180, "every comment")
            store = open_store("", pg_url)
            try:
                await _until(lambda: store.queue_depth() == 0, 60, "the queue to drain")
                statuses = {d["status"] for d in store.deliveries()}
            finally:
                store.close()
    finally:
        for _, proc in instances:
            if proc.poll() is None:
                proc.terminate()
        for _, proc in instances:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    state = fake_github.repo(REPO)
    counts = [len(fake_github.comments_on(REPO, number)) for number in state.pulls]
    assert counts == [1] * RUNS, f"pull requests without exactly one comment: {sum(c != 1 for c in counts)}"
    said = {}
    for number, pull in state.pulls.items():
        (comment,) = fake_github.comments_on(REPO, number)
        assert "Could not re-run" not in comment["body"]
        said[pull["head"]["sha"]] = "Re-ran the failed jobs" in comment["body"]
    reruns = {state.runs[run]["head_sha"]: state.runs[run]["reruns"] for run in runs}
    assert reruns == {sha: int(rerun) for sha, rerun in said.items()}  # once where it said so, else never
    assert sum(reruns.values()) > RUNS // 2  # most were flaky: the retries were exercised
    assert statuses == {"done"}
    handled = [_handled(log) for log in logs]
    assert handled[1] and handled[3] and not handled[2], f"runs each process judged: {handled}"


def _commented(fake) -> int:
    return sum(1 for c in fake.repo(REPO).comments.values() if c["body"].startswith("<!-- flakebot:comment"))


def _handled(log: Path) -> int:
    return log.read_text(errors="replace").count("attempt 1:")


async def _healthy(http: aiohttp.ClientSession, url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"flakebot serve exited with {proc.returncode}")
        try:
            async with http.get(url + "/healthz") as answer:
                if answer.status == 200 and json.loads(await answer.text())["status"] == "ok":
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not answer /healthz within 60 s")


async def _until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)
