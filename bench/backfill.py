"""Backfill of a synthetic repository over the fake forges: runs/s, API calls a run, peak memory, label agreement.

    .venv/bin/python -m bench.backfill [--runs 1000] [--forge github|gitlab|both] [--big-logs 3]

The repository is synthetic (``tests/backfill_data.py``): a default branch and pull-request branches, a
pytest job and a lint job a run, flaky causes that a re-run (another attempt) usually clears, real bugs
that fail again when re-run, and bugs on the default branch that last two to four commits. Every
failure has its truth, the label a maintainer would give it, so the labels the backfill infers from the
re-runs can be compared with those "manual" labels (synthetic figures, both of them ours).
``--big-logs`` runs also carry a failed job whose log is padded to 40 MB, to show that memory stays
bounded (logs are streamed and spooled as the service does).

The fake forge runs in a child process (the fake GitHub checks every request and answer against
GitHub's OpenAPI description, which costs it CPU), and each backfill in another, so that the peak
memory is the backfill's alone. Prints one table: per forge, the runs and jobs read, the time to read
them, runs/s, API calls a run, the peak resident memory after reading and after training the first model, the training
time and its outcome, and the agreement of the inferred labels with the truth.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._shared import peak_rss_mb, table  # noqa: E402

REPO = "octo-org/shop"
BIG_LOG_BYTES = 40 * 1024 * 1024


def padded(log: bytes, size: int = BIG_LOG_BYTES) -> bytes:
    """``log`` with ``size`` bytes of build output before it (a long job that failed at its end)."""
    line = b"2024-06-01T12:00:00.0000000Z   Compiling crate v0.1.0 (/builds/shop/crates/crate) ... ok\n"
    return line * (size // len(line)) + log


def serve(conn: Any, forge: str, runs: int, big: int) -> None:
    """Child process: the fake forge, seeded with the synthetic history; counts the requests at the end."""
    from tests.backfill_data import JOB, history, seed_github, seed_gitlab

    async def main() -> None:
        data = history(runs, seed=11)
        if forge == "github":
            from tests.fakes.github import FakeGitHub

            fake: Any = FakeGitHub()
            await fake.start()
            ids = seed_github(fake, REPO, data)
            state = fake.repo(REPO)
            failing = [i for i, r in zip(ids, data, strict=True) if r.attempts[0].failed][:big]
            for job_id, job in state.jobs.items():
                if job["run_id"] in failing and job["name"] == JOB and job["run_attempt"] == 1:
                    state.logs[job_id] = padded(state.logs[job_id])
            conn.send((fake.url, fake.personal_token))
        else:
            from tests.fakes.gitlab import DEFAULT_TOKEN, FakeGitLab

            fake = FakeGitLab()
            await fake.start()
            project = fake.add_project(REPO)
            ids = seed_gitlab(fake, project, data)
            failing = {i for i, r in zip(ids, data, strict=True) if r.attempts[0].failed}
            done = 0
            for job in sorted(project.jobs.values(), key=lambda j: j["id"]):
                if (
                    done < big
                    and job["pipeline"]["id"] in failing
                    and job["name"] == JOB
                    and job["status"] == "failed"
                ):
                    project.traces[job["id"]] = padded(project.traces[job["id"]])
                    failing.discard(job["pipeline"]["id"])
                    done += 1
            conn.send((fake.url, DEFAULT_TOKEN))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)
        if forge == "github":
            statuses = Counter(r.status for r in fake.requests if r.host == "api")
            conn.send((len([r for r in fake.requests if r.host == "api"]), statuses[304], fake.problems()))
            await fake.close()
        else:
            conn.send((len(fake.requests), 0, fake.problems()))
            await fake.stop()

    asyncio.run(main())


def read(conn: Any, forge: str, url: str, token: str, runs: int, workdir: str) -> None:
    """Child process: backfill the repository, then train its first model; figures back on ``conn``."""

    async def main() -> dict[str, Any]:
        import aiohttp

        from bot.backfill import StoreCache, Summary, backfill, first_model
        from bot.config import Settings
        from bot.context import Context, ModelProvider
        from bot.forge.pace import Pace
        from bot.retrain import RetrainOptions
        from bot.store import open_store
        from bot.store.adapters import ThreadedStore
        from tests.backfill_data import history, truths

        settings = Settings(data_dir=Path(workdir) / "data", model_dir=Path(workdir) / "model")
        store = ThreadedStore(open_store(settings.data_dir))
        ctx = Context(settings, store, ModelProvider(settings.model_dir))
        async with aiohttp.ClientSession() as session:
            if forge == "github":
                from bot.forge.github import GitHubForge

                client: Any = GitHubForge(
                    session, api_url=url, token=token, cache=StoreCache(store), pace=Pace()
                )
            else:
                from bot.forge.gitlab import GitLabForge

                client = GitLabForge(url=url, token=token, pace=Pace(), max_workers=4)
            repo = await client.find_repo(REPO)
            start = time.perf_counter()
            summary: Summary = await backfill(ctx, client, repo, days=30, train=False)
            seconds = time.perf_counter() - start
            rss_read = peak_rss_mb()
            start = time.perf_counter()
            await first_model(ctx, repo.key, summary, RetrainOptions())
            train_seconds = time.perf_counter() - start
            await client.aclose()
        truth = truths(history(runs, seed=11))
        pairs = Counter(
            (label, truth[(revision, attempt, test)])
            for revision, attempt, test, label in store.store.db.execute(
                "SELECT revision, attempt, test, weak_label FROM failures"
            )
        )
        await store.aclose()
        return {"summary": summary, "seconds": seconds, "rss_read": rss_read, "rss": peak_rss_mb(),
                "train_seconds": train_seconds, "pairs": pairs}  # fmt: skip

    conn.send(asyncio.run(main()))


def measure(forge: str, runs: int, big: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    server, child = context.Pipe()
    fake = context.Process(target=serve, args=(child, forge, runs, big), daemon=True)
    fake.start()
    url, token = server.recv()
    with tempfile.TemporaryDirectory() as workdir:
        results, child_end = context.Pipe()
        reader = context.Process(target=read, args=(child_end, forge, url, token, runs, workdir))
        reader.start()
        figures = results.recv()
        reader.join()
    server.send(None)
    requests, _not_modified, problems = server.recv()
    fake.join(timeout=30)
    s, pairs = figures["summary"], figures["pairs"]
    labelled = sum(n for (label, _), n in pairs.items() if label is not None)
    agree = sum(n for (label, truth), n in pairs.items() if label == truth)
    kept = sum(pairs.values())
    return {
        "forge": forge,
        "runs": s.runs,
        "jobs": s.jobs,
        "failures": s.failures,
        "read s": f"{figures['seconds']:.1f}",
        "runs/s": f"{s.runs / figures['seconds']:.1f}",
        "API calls/run": f"{requests / max(1, s.runs):.2f}",
        "peak MB (read)": f"{figures['rss_read']:.0f}",
        "train s": f"{figures['train_seconds']:.1f}",
        "peak MB (+train)": f"{figures['rss']:.0f}",
        "model": s.outcome,
        "flake/real/unlabelled": f"{s.flake}/{s.real}/{s.unlabelled}",
        "labelled (kept)": f"{labelled / max(1, kept):.0%}",
        "agree with truth": f"{agree / max(1, labelled):.1%} ({labelled - agree} wrong)",
        "confusion": ", ".join(
            f"{label}←{truth}: {n}"
            for (label, truth), n in sorted(pairs.items(), key=str)
            if label is not None and label != truth
        )
        or "none",
        "fake problems": len(problems),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--forge", choices=("github", "gitlab", "both"), default="both")
    parser.add_argument("--big-logs", type=int, default=3, help="runs whose failed job's log is 40 MB")
    args = parser.parse_args()
    forges = ("github", "gitlab") if args.forge == "both" else (args.forge,)
    rows = [measure(forge, args.runs, args.big_logs) for forge in forges]
    print(table(rows, f"Backfill of a synthetic repository, {args.runs} runs over 14 days, {args.big_logs} "
                      "of them with a 40 MB log (synthetic; 2 CPUs shared with the fake forge)"))  # fmt: skip


if __name__ == "__main__":
    main()
