"""How fast the GitLab adapter fetches, how little it holds in memory, and that the loop never stalls.

Runs the real adapter (python-gitlab over HTTP) against the fake GitLab of the test suite on
127.0.0.1, with the largest real CI log of ``../shared/data/treeherder-logs`` as a job trace.

    .venv/bin/python bench/gitlab_fetch.py

Prints one table. The fake runs in a child process, so the memory peak (tracemalloc) and the
longest event-loop stall are the client's alone, as in production where GitLab is elsewhere.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import multiprocessing
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.forge.gitlab import GitLabForge  # noqa: E402
from bot.forge.gitlab_payloads import run_from_pipeline_hook  # noqa: E402
from tests.fakes.gitlab import FakeGitLab, load_webhook  # noqa: E402


def shared_dir() -> Path | None:
    for candidate in (ROOT.parent / "shared", Path("/work/shared")):
        if (candidate / "data" / "treeherder-logs").is_dir():
            return candidate
    return None


async def heartbeat(ticks: list[float]) -> None:
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.005)


async def timed(coro, ticks: list[float]):
    """Run ``coro`` with a 5 ms heartbeat; returns (result, seconds, longest loop stall)."""
    ticks.clear()
    beat = asyncio.create_task(heartbeat(ticks))
    start = time.perf_counter()
    try:
        result = await coro
    finally:
        seconds = time.perf_counter() - start
        beat.cancel()
    stall = max((b - a for a, b in itertools.pairwise(ticks)), default=0.0)
    return result, seconds, stall


def serve(conn, trace: bytes) -> None:
    """Child process: the fake GitLab seeded with one pipeline, a big log and 2,000 jobs."""

    async def run() -> None:
        fake = FakeGitLab()
        await fake.start()
        project = fake.seed_from_pipeline_hook(load_webhook("pipeline_failed_mr"))
        pipeline = project.pipelines[31]
        big = fake.add_job(project, pipeline, "big-log", trace=trace)
        for n in range(1000):
            fake.add_job(project, pipeline, f"shard {n:04}", status="failed", retried=True)
            fake.add_job(project, pipeline, f"shard {n:04}", status="success")
        conn.send((fake.url, fake.token, big["id"]))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await fake.stop()

    asyncio.run(run())


async def main() -> int:
    shared = shared_dir()
    if shared is None:
        print("bench/gitlab_fetch.py: ../shared/data/treeherder-logs is missing (also tried /work/shared).")
        return 1
    log_path = max((shared / "data" / "treeherder-logs").glob("*.gz"), key=lambda p: p.stat().st_size)
    trace = gzip.decompress(log_path.read_bytes())

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(target=serve, args=(child, trace), daemon=True)
    server.start()
    url, token, big_id = parent.recv()
    payload = load_webhook("pipeline_failed_mr")
    run = run_from_pipeline_hook(payload)
    assert run is not None
    forge = GitLabForge(url=url, token=token)
    ticks: list[float] = []
    rows = []

    async def stream(cap: int) -> int:
        job = next(j for j in jobs if j.id == big_id)
        total = 0
        async for chunk in forge.job_log(job, run.repo, cap):
            total += len(chunk)
        return total

    try:
        jobs, seconds, stall = await timed(forge.list_jobs(run), ticks)
        pages = -(-(len(jobs) + 1000) // 100)
        rows.append(
            ("list_jobs, 2,006 jobs (1,000 retried)", f"{seconds * 1000:.0f} ms", f"{pages} pages", stall)
        )

        tracemalloc.start()
        tracemalloc.reset_peak()
        got, seconds, stall = await timed(stream(len(trace) + 1), ticks)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert got == len(trace)
        rows.append(
            (
                f"job_log, whole {log_path.name} ({len(trace) / 1e6:.1f} MB)",
                f"{len(trace) / 1e6 / seconds:.0f} MB/s",
                f"{seconds:.2f} s",
                stall,
            )
        )
        rows.append(
            (
                "  memory while streaming the whole log",
                f"{peak / 1e6:.2f} MB peak",
                "Python allocations, client side",
                None,
            )
        )
        got, seconds, stall = await timed(stream(1_000_000), ticks)
        rows.append(("job_log, capped at 1 MB", f"{seconds * 1000:.0f} ms", f"{got:,} bytes", stall))
    finally:
        await forge.aclose()
        parent.send("stop")
        server.join(5)

    print(f"{'measure':52} {'figure':28} {'detail':32} longest loop stall")
    for name, figure, detail, stall in rows:
        stall_text = "" if stall is None else f"{stall * 1000:.0f} ms"
        print(f"{name:52} {figure:28} {detail:32} {stall_text}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
