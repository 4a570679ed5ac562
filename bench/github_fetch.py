"""How fast the GitHub adapter fetches, how little it holds in memory, and that the loop never stalls.

Runs the real adapter (gidgethub + aiohttp over HTTP) against the fake GitHub of the test suite on
127.0.0.1, with the largest real CI logs of ``../shared/data/treeherder-logs`` as job logs.

    .venv/bin/python bench/github_fetch.py

Prints one table. The fake runs in a child process, so the memory peak (tracemalloc) and the longest
event-loop stall are the client's alone, as in production where GitHub is elsewhere. The fake checks
every request and answer against GitHub's OpenAPI description, so the request rates include that.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
import multiprocessing
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench._shared import shared  # noqa: E402
from bot.forge.base import Job, Repo, Run  # noqa: E402
from bot.forge.github import GitHubForge  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402

REPO = "octo-org/octo-repo"
LOGS = ("win-aarch64-build.txt.gz", "build-fail.log.gz", "timeout-crash.log.gz")


def junit_zip(files: int, cases: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in range(files):
            body = "".join(
                f'<testcase classname="pkg.mod{f}" name="test_{c}" time="0.{c % 97:03d}">'
                + (
                    f"<failure message='boom {c}'>Traceback line {c}\nAssertionError: {c}</failure>"
                    if c % 50 == 0
                    else ""
                )
                + "</testcase>\n"
                for c in range(cases)
            )
            archive.writestr(
                f"reports/junit-{f}.xml",
                f'<?xml version="1.0"?>\n<testsuite name="s{f}">\n{body}</testsuite>\n',
            )
    return buffer.getvalue()


def serve(logs: list[bytes], pipe) -> None:  # the child process
    async def main() -> None:
        fake = FakeGitHub()
        await fake.start()
        fake.add_repo(REPO, installation_id=None)
        run_id = fake.add_run(REPO, run_id=1)
        jobs = [fake.add_job(REPO, run_id, f"job {i}", log=log)["id"] for i, log in enumerate(logs)]
        for i in range(300):
            fake.add_job(REPO, run_id, f"matrix {i}", conclusion="success")
        fake.add_artifact(REPO, run_id, "junit-results", junit_zip(files=40, cases=500))
        for i in range(200):
            fake.add_issue(REPO, f"Flaky: test_{i}", labels=("flaky",))
        pipe.send((fake.url, fake.personal_token, jobs))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # until the parent is done
        pipe.send((len(fake.requests), fake.problems()))
        await fake.close()

    asyncio.run(main())


async def heartbeat(ticks: list[float]) -> None:
    while True:
        ticks.append(time.monotonic())
        await asyncio.sleep(0.005)


def stall(ticks: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(ticks)), default=0.0) * 1000


async def measure(url: str, token: str, jobs: list[int], sizes: list[int]) -> list[dict[str, str]]:
    rows = []
    repo = Repo("github", REPO)
    run = Run(repo, 1, "sha", "main", 1, "failure", "")
    async with aiohttp.ClientSession() as session:
        forge = GitHubForge(session, api_url=url, token=token)

        async def timed(what: str, size_mb: float, work) -> None:
            ticks: list[float] = []
            beat = asyncio.create_task(heartbeat(ticks))
            tracemalloc.start()
            start = time.perf_counter()
            detail = await work()
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            beat.cancel()
            rows.append(
                {
                    "what": what,
                    "MB": f"{size_mb:.1f}" if size_mb else "",
                    "seconds": f"{seconds:.3f}",
                    "MB/s": f"{size_mb / seconds:.0f}" if size_mb else "",
                    "client peak MB": f"{peak / 1e6:.1f}",
                    "longest stall ms": f"{stall(ticks):.1f}",
                    "detail": detail,
                }
            )

        for job_id, size in zip(jobs, sizes, strict=True):

            async def stream(job_id=job_id) -> str:
                job = Job(job_id, "build", "failure", "")
                count = 0
                async for chunk in forge.job_log(job, repo, max_bytes=64 * 1024 * 1024):
                    count += len(chunk)
                return f"{count:,} bytes streamed"

            await timed(f"job_log, log of job {job_id}", size / 1e6, stream)

        async def capped() -> str:
            job = Job(jobs[0], "build", "failure", "")
            count = sum([len(c) async for c in forge.job_log(job, repo, max_bytes=5 * 1024 * 1024)])
            return f"{count:,} bytes (5 MiB cap)"

        await timed("job_log, capped at 5 MiB", 5 * 1024 * 1024 / 1e6, capped)

        async def reports() -> str:
            found = await forge.test_reports(run, max_bytes=64 * 1024 * 1024)
            return f"{len(found)} JUnit files, {sum(len(r.data) for r in found):,} bytes"

        await timed("test_reports, 40 JUnit XML in one zip", 0, reports)

        async def jobs_listing() -> str:
            found = await forge.list_jobs(run)
            return f"{len(found)} jobs in 4 pages"

        await timed("list_jobs, 303 jobs", 0, jobs_listing)

        async def issues() -> str:
            found = await forge.find_issues(repo, "flaky")
            return f"{len(found)} issues in 2 pages"

        await timed("find_issues, 200 issues", 0, issues)
    return rows


def main() -> None:
    logs = [gzip.decompress(shared("data", "treeherder-logs", name).read_bytes()) for name in LOGS]
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(logs, child), daemon=True)
    server.start()
    url, token, jobs = parent.recv()
    rows = asyncio.run(measure(url, token, jobs, [len(log) for log in logs]))
    parent.send("done")
    requests, problems = parent.recv()
    server.join(timeout=10)
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    print("GitHub adapter against the fake GitHub (loopback, fake in a child process)")
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in rows:
        print("  ".join(row[k].ljust(widths[k]) for k in keys))
    print(f"{requests} requests checked against GitHub's OpenAPI description; problems: {problems or 'none'}")


if __name__ == "__main__":
    main()
