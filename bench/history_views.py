"""What the history views cost on a big store: ``flakebot scores``, ``GET /``, ``GET /quarantine.json``.

Builds a SQLite store (in a temporary directory) with ``--tests`` tests in each of ``--jobs`` jobs,
``--runs`` runs each (a flaky minority, the rest passing), scored as the pipeline scores them; then
times, best of ``--repeat``:

* ``Store.scores()``: every scored test with its newest runs (what both views read);
* the table of ``flakebot scores`` (rows + text) and the JSON lines of ``--json``;
* ``GET /`` and ``GET /quarantine.json`` over real HTTP on loopback (the aiohttp service), the page
  at its default limit of 200 rows;
* peak memory of the process.

Synthetic data (no ../shared needed): the cost depends on the number of tests and runs, not on what
they say. Run: ``python bench/history_views.py [--tests 2000 --jobs 2 --runs 50]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._shared import peak_rss_mb, table
from bot.scoreboard import select, text_table
from bot.scoring import score_runs
from bot.store import HistoryRun, open_store

REPO = "github:bench/big"


def build(data_dir: Path, tests: int, jobs: int, runs: int, seed: int = 1) -> float:
    """Fill the store; returns the seconds it took."""
    rng = random.Random(seed)
    start = time.perf_counter()
    store = open_store(data_dir)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    run_id = 0
    for j in range(jobs):
        job = f"tests (platform-{j})"
        for t in range(tests):
            test = f"tests/pkg{t % 50}/test_mod{t % 400}.py::test_case_{t}"
            flaky = t % 20 == 0  # 5% flaky: half of them alternate (quarantine), half fail at random
            rows = []
            for r in range(runs):
                run_id += 1
                failed = flaky and (r % 2 == 1 if t % 40 == 0 else rng.random() < 0.3)
                rows.append(
                    HistoryRun(test=test, status="failed" if failed else "passed", run_id=run_id, job=job,
                               revision=f"{r:040x}", branch="main", duration=1.0,
                               message="TimeoutError: timed out" if failed else None,
                               url=f"https://github.com/bench/big/actions/runs/{run_id}",
                               created_at=(t0 + timedelta(hours=8 * r)).isoformat())
                )  # fmt: skip
            store.record_runs(REPO, rows)
            window = store.window(REPO, test, job, 50, branch="main")
            score = score_runs([w.as_scoring_run() for w in window], summary=store.summary(REPO, test, job))
            store.save_score(REPO, test, job, score.to_dict())
            if score.recommendation.action == "quarantine" and len(store.quarantined(REPO)) < 7:
                store.set_quarantine(
                    REPO, test, number=t, url=f"https://github.com/bench/big/issues/{t}", state="open"
                )
    store.close()
    return time.perf_counter() - start


def best(repeat: int, call) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return min(times), result


async def http_times(data_dir: Path, repeat: int) -> dict[str, float]:
    import aiohttp
    from aiohttp import web

    from bot.config import Settings
    from bot.web import create_app

    settings = Settings(github_webhook_secret="bench-secret-" + "x" * 20, github_token="ghp_" + "B" * 36,
                        github_api_url="http://127.0.0.1:9", data_dir=data_dir, model_dir=data_dir / "model")  # fmt: skip
    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    out = {}
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for name, path in (("GET / (200 rows)", "/"), ("GET /quarantine.json", "/quarantine.json")):
                times, sizes = [], {}
                for encoding in ("identity", "gzip, deflate") * repeat:
                    start = time.perf_counter()
                    async with session.get(base + path, headers={"Accept-Encoding": encoding}) as response:
                        body = await response.read()
                        assert response.status == 200, body[:200]
                    times.append(time.perf_counter() - start)
                    sizes[encoding] = len(body)
                out[name] = (min(times), sizes["identity"], sizes["gzip, deflate"])
    finally:
        await runner.cleanup()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=2000, help="tests per job (default 2000)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs (default 2)")
    parser.add_argument("--runs", type=int, default=50, help="runs per test and job (default 50)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        built = build(data_dir, args.tests, args.jobs, args.runs)
        db_mb = (data_dir / "flakebot.db").stat().st_size / 2**20
        store = open_store(data_dir)
        rows_timed, items = best(args.repeat, lambda: store.scores(REPO))
        table_timed, text = best(args.repeat, lambda: text_table(select(store.scores(REPO))))
        json_timed, _ = best(
            args.repeat, lambda: "\n".join(json.dumps(r.to_dict()) for r in select(store.scores(REPO)))
        )
        store.close()
        http = asyncio.run(http_times(data_dir, args.repeat))

    pairs = args.tests * args.jobs
    print(
        f"store: {pairs:,} tests x jobs, {pairs * args.runs:,} runs, {db_mb:.1f} MB, built in {built:.1f} s\n"
    )
    rows = [
        {"what": "Store.scores()", "ms": f"{1e3 * rows_timed:.1f}", "per test": f"{1e6 * rows_timed / pairs:.0f} µs", "output": f"{len(items):,} rows"},  # type: ignore[arg-type]
        {"what": "flakebot scores (table)", "ms": f"{1e3 * table_timed:.1f}", "per test": f"{1e6 * table_timed / pairs:.0f} µs", "output": f"{len(text) / 1024:.0f} KB"},  # type: ignore[arg-type]
        {"what": "flakebot scores --json", "ms": f"{1e3 * json_timed:.1f}", "per test": f"{1e6 * json_timed / pairs:.0f} µs", "output": ""},
    ]  # fmt: skip
    for name, (seconds, size, compressed) in http.items():
        rows.append({"what": name, "ms": f"{1e3 * seconds:.1f}", "per test": f"{1e6 * seconds / pairs:.0f} µs",
                     "output": f"{size:,} B ({compressed:,} B compressed)"})  # fmt: skip
    print(table(rows, f"best of {args.repeat}"))
    print(f"peak memory: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
