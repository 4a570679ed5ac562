"""flakebot on GitLab end to end: how long a pipeline takes from webhook to note, and that the webhook
is answered at once while the workers chew on a big trace.

The service runs as in production (aiohttp app on 127.0.0.1, SQLite store, 2 queue workers, a trained
model, python-gitlab in its thread pool); the fake GitLab of the test suite runs in a child process,
so the memory peak and the event-loop stalls are the service's alone. The big trace is the largest
real CI log of ``../shared/data/treeherder-logs``.

    .venv/bin/python bench/gitlab_e2e.py

Prints one table:

* one pipeline whose failed job's trace is the big log: webhook → queue drained (fetch, split,
  classify, score, decide, note, retry), and the longest event-loop stall meanwhile;
* 20 small flaky pipelines (one MR each) at once: webhook → all 20 notes written;
* webhook answers while a big pipeline is processed: 200 deliveries GitLab sends and flakebot
  drops (running pipelines) and 20 it queues, answer times;
* the service process's peak resident memory.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench._shared import peak_rss_mb, shared, table  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.modelstore import ModelStore  # noqa: E402
from bot.split import split_log  # noqa: E402
from bot.training import interleave, train_and_save  # noqa: E402
from bot.web import CTX, QUEUE, create_app  # noqa: E402
from tests.ci_logs import cause, gitlab_pytest_log, real_bug  # noqa: E402
from tests.fakes.gitlab import FakeGitLab  # noqa: E402

SMALL = 20
DROPPED = 200


def serve(conn, trace: bytes) -> None:
    """Child process: the fake GitLab with two big-trace pipelines and SMALL small ones, each on an MR."""

    async def run() -> None:
        fake = FakeGitLab()
        await fake.start()
        project = fake.add_project("shop/api", id=7)
        rng = random.Random(1)
        hooks: dict[str, list] = {"big": [], "small": []}
        for n in range(2 + SMALL):
            kind = "big" if n < 2 else "small"
            sha, branch = f"{n:040x}", f"branch-{n}"
            mr = fake.add_merge_request(project, source_branch=branch, sha=sha)
            pipeline = fake.add_pipeline(project, sha=sha, ref=branch, source="merge_request_event")
            test = f"tests/test_{kind}{n}.py::test_fetch"
            log = trace if kind == "big" else gitlab_pytest_log([(test, cause("reset", rng))], seed=n)
            fake.add_job(project, pipeline, "tests", failure_reason="script_failure", trace=log)
            fake.add_job(project, pipeline, "lint", status="success")
            hooks[kind].append(fake.pipeline_hook(project, pipeline["id"], merge_request=mr["iid"]))
        running = dict(
            hooks["small"][0],
            object_attributes={**hooks["small"][0]["object_attributes"], "status": "running"},
        )
        conn.send((fake.url, fake.token, fake.webhook_secret, hooks, running))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send(sum(len(notes) for notes in project.mr_notes.values()))
        await fake.stop()

    asyncio.run(run())


def train(path: Path) -> None:
    """A small model like the end-to-end tests' (recurring flaky causes, one-off bugs)."""
    rng = random.Random(3)
    failures = [
        (f"tests/test_old{i}.py::test_{i}", cause(("reset", "timeout", "dns")[i % 3], rng), "flake")
        for i in range(24)
    ]
    failures += [(f"tests/test_bug{i}.py::test_{i}", real_bug(rng), "real") for i in range(16)]
    records = []
    for n, (test, message, label) in enumerate(failures):
        (record,) = split_log([gitlab_pytest_log([(test, message)], seed=n)], job="tests")
        records.append({**record, "label": label})
    # trialled on its newest failures as `flakebot train` does: the retry threshold comes from that trial
    train_and_save(ModelStore(path), interleave(records), {"trained_on": {"failures": len(records)}})


async def heartbeat(ticks: list[float]) -> None:
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.005)


async def main() -> int:
    logs = shared("data", "treeherder-logs")
    log_path = max(logs.glob("*.gz"), key=lambda p: p.stat().st_size)
    trace = gzip.decompress(log_path.read_bytes())
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(child, trace), daemon=True)
    server.start()
    url, token, secret, hooks, running = parent.recv()

    with tempfile.TemporaryDirectory() as tmp:
        train(Path(tmp) / "model")
        settings = Settings(gitlab_url=url, gitlab_token=token, gitlab_webhook_secret=secret,
                            data_dir=Path(tmp) / "data", model_dir=Path(tmp) / "model", workers=2)  # fmt: skip
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        endpoint = f"http://127.0.0.1:{runner.addresses[0][1]}/gitlab"
        ids = itertools.count()
        ticks: list[float] = []
        beat = asyncio.create_task(heartbeat(ticks))
        rows = []

        async def post(session: aiohttp.ClientSession, payload: dict) -> float:
            headers = {"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": secret,
                       "Idempotency-Key": f"bench-{next(ids)}"}  # fmt: skip
            start = time.perf_counter()
            async with session.post(endpoint, json=payload, headers=headers) as response:
                assert response.status in (200, 202), response.status
            return time.perf_counter() - start

        async def drained() -> float:
            start = time.perf_counter()
            while await app[CTX].store.queue_depth() or app[QUEUE].busy:
                await asyncio.sleep(0.01)
            return time.perf_counter() - start

        def stall() -> float:
            return max((b - a for a, b in itertools.pairwise(ticks)), default=0.0)

        try:
            async with aiohttp.ClientSession() as session:
                ticks.clear()
                start = time.perf_counter()
                await post(session, hooks["big"][0])
                await drained()
                rows.append({"measure": f"1 pipeline, {log_path.name} ({len(trace) / 1e6:.1f} MB) as trace",
                             "figure": f"{time.perf_counter() - start:.2f} s webhook to note",
                             "longest loop stall": f"{stall() * 1000:.0f} ms"})  # fmt: skip

                ticks.clear()
                start = time.perf_counter()
                await asyncio.gather(*(post(session, h) for h in hooks["small"]))
                await drained()
                seconds = time.perf_counter() - start
                rows.append({"measure": f"{SMALL} small flaky pipelines at once (2 workers)",
                             "figure": f"{seconds:.2f} s, {SMALL / seconds:.1f} pipelines/s",
                             "longest loop stall": f"{stall() * 1000:.0f} ms"})  # fmt: skip

                ticks.clear()
                await post(session, hooks["big"][1])  # the workers are busy with a big trace meanwhile
                answers = []
                for n in range(DROPPED + SMALL):
                    answers.append(await post(session, running if n % 11 else hooks["small"][n % SMALL]))
                await drained()
                answers.sort()
                p99 = answers[int(len(answers) * 0.99) - 1]
                rows.append({"measure": f"{len(answers)} webhook answers while a big trace is processed",
                             "figure": f"median {statistics.median(answers) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                                       f"max {answers[-1] * 1000:.1f} ms",
                             "longest loop stall": f"{stall() * 1000:.0f} ms"})  # fmt: skip
            done = await app[CTX].store.deliveries("done")
            rows.append({"measure": "service peak resident memory", "figure": f"{peak_rss_mb():.0f} MB",
                         "longest loop stall": ""})  # fmt: skip
        finally:
            beat.cancel()
            await runner.cleanup()
            parent.send("stop")
            notes = parent.recv()
            server.join(5)
    print(table(rows, f"GitLab end to end ({len(done)} deliveries processed, {notes} MR notes written)"))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
