"""Several instances on one PostgreSQL database against one instance on SQLite (issue 14).

    .venv/bin/python -m bench instances          # or: python bench/instances.py --runs 300 --rate 200 --seconds 10

For each configuration, 1 instance on SQLite and 1, 2 and 4 instances on PostgreSQL (a fresh schema of
``FLAKEBOT_BENCH_DATABASE_URL``, default the test server 127.0.0.1:5432/test), ``flakebot serve``
processes (2 queue workers each, a model trained on ``bench/ci_corpus.py``) work against one fake
GitHub of the test suite in a process of its own, seeded the same way every time: ``--runs`` failed
workflow runs, each on a pull request of its own, one job whose log has 50 passed tests and 2 failed
ones (one flaky cause, one real bug). Measured:

* **runs/s**: every run's delivery is sent (round-robin over the instances), and the clock stops when
  the store has finished them all (judged, commented, re-run where flaky);
* **ack p50/p99**: then the instances get ``--rate`` deliveries a second in all, round-robin, for ``--seconds`` (an open
  model: sent on schedule whatever the answers' latency, each on a new connection), and the time to
  the answer is taken; the workers keep processing meanwhile, so these are busy instances;
* **peak memory**: each instance's peak resident size (``VmHWM``) at the end.

``--web-only 1,2`` adds rows of processes that only answer webhooks (``FLAKEBOT_WORKERS=0``, as the
Procfile's ``web``): their acknowledgements, with no worker of theirs competing for the CPU.

The load generator is one Python process on the same machine (2 cores, shared with whatever else
runs): the figures compare the configurations; they are not a capacity for other hardware. The logs
and pull requests are synthetic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._fake_github import APP_ID, RemoteFakeGitHub  # noqa: E402
from bench._service import SECRET, serve, train_model  # noqa: E402
from bench._shared import table  # noqa: E402
from tests.ci_logs import actions_pytest_log, cause, real_bug  # noqa: E402
from tests.fakes.github import app_key_pair, delivery  # noqa: E402

REPO = "octo-org/octo-repo"
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"


def seed(fake: RemoteFakeGitHub, runs: int) -> list[bytes]:
    """The same pull requests, runs and logs every time; the runs' webhook payloads."""
    rng = random.Random(7)
    fake.add_repo(REPO)
    bodies = []
    for i in range(runs):
        sha = f"{i + 1:040x}"
        fake.add_pull(REPO, head_sha=sha, head_ref=f"feature-{i}")
        run = fake.add_run(REPO, head_sha=sha, head_branch=f"feature-{i}")
        failures = [
            (f"tests/test_m{i}.py::test_fetch", cause("reset", rng)),
            (f"tests/test_m{i}.py::test_sum", real_bug(rng)),
        ]
        log = actions_pytest_log(failures, [f"tests/test_m{i}.py::test_ok_{k}" for k in range(50)], seed=i)
        fake.add_job(REPO, run, "tests (ubuntu)", log=log)
        bodies.append(json.dumps(fake.workflow_run_payload(REPO, run)).encode())
    return bodies


def schema_url(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{name}"


def drop_schema(base: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def send_all(urls: list[str], bodies: list[bytes]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:

        async def one(i: int, body: bytes) -> None:
            headers, _ = delivery("workflow_run", body, SECRET, delivery_id=f"run-{i}")
            async with http.post(urls[i % len(urls)] + "/github", data=body, headers=headers) as answer:
                assert answer.status == 202, await answer.text()

        for start in range(0, len(bodies), 50):
            await asyncio.gather(*(one(start + k, b) for k, b in enumerate(bodies[start : start + 50])))


async def open_load(urls: list[str], bodies: list[bytes], rate: int, seconds: float) -> list[float]:
    """``rate`` deliveries a second in all, spread round-robin over ``urls``, for ``seconds``: the
    answers' latencies (s). One client session (a new connection each) keeps the sender light."""
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def one(http: aiohttp.ClientSession, url: str, body: bytes) -> None:
        nonlocal errors
        headers, _ = delivery("workflow_run", body, SECRET, delivery_id=str(uuid.uuid4()))
        start = time.perf_counter()
        try:
            async with http.post(
                url + "/github", data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as answer:
                await answer.read()
                if answer.status != 202:
                    errors += 1
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
            return
        latencies.append(time.perf_counter() - start)

    tasks = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as http:
        begin = time.perf_counter()
        for n in range(int(rate * seconds)):
            due = begin + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(http, urls[n % len(urls)], bodies[n % len(bodies)])))
        await asyncio.gather(*tasks)
    if errors:
        print(f"  ({errors} deliveries were not answered 202 within 10 s)", file=sys.stderr)
    return latencies


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(name: str, instances: int, database: str | None, args: argparse.Namespace, private_pem: str,
            public_pem: bytes, model: Path, web_only: bool = False) -> dict[str, str]:  # fmt: skip
    from bot.store import open_store

    fake = RemoteFakeGitHub(public_pem)
    schema = f"bench_instances_{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="flakebot-bench-"))
    url = schema_url(database, schema) if database else None
    try:
        bodies = seed(fake, args.runs)
        env = {"FLAKEBOT_DATABASE_URL": url} if url else {}
        if web_only:
            env["FLAKEBOT_WORKERS"] = "0"
        with ExitStack() as stack:
            services = [
                stack.enter_context(serve(tmp / f"i{n}", api_url=fake.url, app_id=APP_ID, private_pem=private_pem,
                                          model_dir=model, env=env))
                for n in range(instances)
            ]  # fmt: skip
            urls = [s.url for s in services]
            store = open_store(tmp / "i0" / "data", url)
            try:
                start = time.perf_counter()
                elapsed, dead = float("nan"), 0
                if not web_only:
                    asyncio.run(send_all(urls, bodies))
                    while len(store.deliveries("done")) + len(store.deliveries("dead")) < args.runs:
                        time.sleep(0.1)
                    elapsed = time.perf_counter() - start
                    dead = len(store.deliveries("dead"))
            finally:
                store.close()
            latencies = sorted(asyncio.run(open_load(urls, bodies, args.rate, args.seconds)))
            peaks = [peak_rss_mb(s.process.pid) for s in services]
    finally:
        problems = fake.close()
        if url:
            drop_schema(database, schema)
    if problems:
        print(f"  the fake GitHub saw requests GitHub would refuse: {problems[:3]}", file=sys.stderr)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "store": name,
        "instances": f"{instances} web-only" if web_only else str(instances),
        "runs/s": "-" if web_only else f"{args.runs / elapsed:.1f}",
        "dead": str(dead),
        "ack p50 ms": f"{q[49] * 1000:.1f}",
        "ack p99 ms": f"{q[98] * 1000:.1f}",
        "acks": str(len(latencies)),
        "peak MB (max)": f"{max(peaks):.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="failed runs to process (default 300)")
    parser.add_argument(
        "--rate",
        type=int,
        default=200,
        help="deliveries a second in all, spread over the instances (default 200)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the acknowledgement load lasts")
    parser.add_argument("--instances", default="1,2,4", help="PostgreSQL configurations (default 1,2,4)")
    parser.add_argument(
        "--web-only", default="", help="web-only PostgreSQL configurations, e.g. 1,2 (default none)"
    )
    parser.add_argument("--no-sqlite", action="store_true", help="leave out the SQLite row")
    args = parser.parse_args()
    database = os.environ.get("FLAKEBOT_BENCH_DATABASE_URL") or DEFAULT_DATABASE
    try:
        import psycopg

        psycopg.connect(database, connect_timeout=3).close()
    except Exception as exc:
        sys.exit(
            f"instances needs a PostgreSQL server (FLAKEBOT_BENCH_DATABASE_URL, default {DEFAULT_DATABASE}): {exc}"
        )
    private_pem, public_pem = app_key_pair()
    with tempfile.TemporaryDirectory() as tmp:
        model = train_model(Path(tmp))
        rows = [] if args.no_sqlite else [measure("SQLite", 1, None, args, private_pem, public_pem, model)]
        configurations = [(int(n), False) for n in args.instances.split(",") if n]
        configurations += [(int(n), True) for n in args.web_only.split(",") if n]
        for count, web_only in configurations:
            rows.append(
                measure("PostgreSQL", count, database, args, private_pem, public_pem, model, web_only)
            )
            print(table([rows[-1]]), flush=True)
    print(f"\n{args.runs} synthetic failed runs; acknowledgements at {args.rate} deliveries/s in all, round-robin over the instances "
          f"for {args.seconds:.0f} s (while the workers process them)")  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
