"""Webhook acknowledgement latency of the real service under a constant 200 deliveries a second.

    .venv/bin/python -m bench webhook_latency          # or: python bench/webhook_latency.py --rate 200 --duration 30

Starts ``flakebot serve`` (embedded SQLite store in a temporary directory, 2 queue workers, a model
trained on ``bench/ci_corpus.py``) with its GitHub forge pointed at the fake GitHub of the test suite,
which runs in a process of its own, seeded with 20 pull requests and their workflow runs (one in four
failed, with two failing tests among 50 in its log). Then ``artillery`` sends ``POST /github`` at a
constant arrival rate (an open model: deliveries keep arriving on schedule whatever the answers'
latency, each on a new connection, as GitHub sends them) for the whole duration. Every request is
pre-generated: a real ``workflow_run`` completed payload with its own ``X-GitHub-Delivery`` and a valid
``X-Hub-Signature-256``, so each one is verified, stored in SQLite and answered ``202``.

Prints the latency (p50, p90, p99, max: artillery's ``http.response_time``, from the request sent to
the answer's first byte), the answers and errors, and what the service did meanwhile: its queue
workers process the deliveries against the fake GitHub in the background (fetch logs, split, classify,
score, comment) on the same 2 cores, so the figures are those of a busy instance.

The load tool is not a project dependency: on first use this installs artillery (a pinned version)
with npm into ``bench/out/tools/`` (needs Node.js and npm: ``apt-get install nodejs npm``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._fake_github import APP_ID, RemoteFakeGitHub  # noqa: E402
from bench._service import SECRET, metric, serve, train_model  # noqa: E402
from bench._shared import table  # noqa: E402
from tests.ci_logs import actions_pytest_log, cause, real_bug  # noqa: E402
from tests.fakes.github import app_key_pair, delivery  # noqa: E402

ARTILLERY = "artillery@2.0.34"
TOOLS = ROOT / "bench" / "out" / "tools"
REPO = "octo-org/octo-repo"
RUNS = 20

PROCESSOR = """\
"use strict";
// Hands each virtual user the next pre-generated delivery (headers and body), in order.
const fs = require("fs");
const bodies = JSON.parse(fs.readFileSync(process.env.FLAKEBOT_BENCH_BODIES, "utf8"));
const deliveries = fs.readFileSync(process.env.FLAKEBOT_BENCH_DELIVERIES, "utf8")
  .trim().split("\\n").map((line) => JSON.parse(line));
let next = 0;
function nextDelivery(requestParams, context, events, done) {
  if (next >= deliveries.length) return done(new Error("ran out of pre-generated deliveries"));
  const item = deliveries[next++];
  requestParams.headers = item.headers;
  requestParams.body = bodies[item.body];
  return done();
}
module.exports = { nextDelivery };
"""


def artillery() -> Path:
    """The artillery executable, installed with npm into bench/out/tools on first use."""
    binary = TOOLS / "node_modules" / ".bin" / "artillery"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(
            "webhook_latency needs the load tool artillery, installed with npm: Node.js and npm are "
            "missing (apt-get install nodejs npm)"
        )
    print(f"installing {ARTILLERY} into {TOOLS.relative_to(ROOT)} (once, about a minute) ...", flush=True)
    TOOLS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund", "--loglevel=error", ARTILLERY],
        env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},  # artillery's browser engine: unused
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return binary


def seed(fake: RemoteFakeGitHub) -> list[str]:
    """Pull requests with finished workflow runs; returns the ``workflow_run`` payload of each run."""
    rng = random.Random(1)
    fake.add_repo(REPO)
    bodies = []
    for i in range(RUNS):
        sha, branch = f"{i + 1:040x}", f"feature-{i}"
        failed = i % 4 == 0
        fake.add_pull(REPO, head_sha=sha, head_ref=branch)
        run = fake.add_run(
            REPO, head_sha=sha, head_branch=branch, conclusion="failure" if failed else "success"
        )
        failures = [
            (f"tests/test_m{i}.py::test_fetch", cause("reset", rng)),
            (f"tests/test_m{i}.py::test_sum", real_bug(rng)),
        ]
        passes = [f"tests/test_m{i}.py::test_ok_{k}" for k in range(50)]
        log = actions_pytest_log(failures if failed else [], passes, seed=i)
        fake.add_job(REPO, run, "tests (ubuntu)", conclusion="failure" if failed else "success", log=log)
        fake.add_job(REPO, run, "lint", conclusion="success", log=b"ok\n")
        bodies.append(json.dumps(fake.workflow_run_payload(REPO, run)))
    return bodies


def pregenerate(folder: Path, bodies: list[str], count: int) -> None:
    """``count`` signed deliveries cycling over the runs' payloads, each with its own delivery id and its
    own body, as GitHub's are (an event's ``updated_at`` differs): the same signed body twice is a
    replay, which flakebot acknowledges without queueing it (docs/hardening.md, 4)."""
    unique = []
    for i in range(count):
        payload = json.loads(bodies[i % len(bodies)])
        payload["workflow_run"]["updated_at"] = (
            f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        )
        unique.append(json.dumps(payload))
    (folder / "bodies.json").write_text(json.dumps(unique))
    with open(folder / "deliveries.jsonl", "w") as out:
        for i, body in enumerate(unique):
            headers, _ = delivery("workflow_run", body.encode(), SECRET, delivery_id=str(uuid.uuid4()))
            out.write(json.dumps({"body": i, "headers": headers}) + "\n")


def load(tool: Path, folder: Path, url: str, rate: int, duration: int) -> dict:
    """Run artillery at a constant arrival rate; returns its aggregate report."""
    (folder / "processor.js").write_text(PROCESSOR)
    script = {
        "config": {
            "target": url,
            "phases": [{"duration": duration, "arrivalRate": rate, "name": "constant rate"}],
            "processor": "./processor.js",
            "http": {"timeout": 10},
        },
        "scenarios": [
            {"name": "webhook", "flow": [{"post": {"url": "/github", "beforeRequest": "nextDelivery"}}]}
        ],
    }
    (folder / "load.yml").write_text(json.dumps(script, indent=1))  # JSON is YAML
    env = {
        **os.environ,
        "FLAKEBOT_BENCH_BODIES": str(folder / "bodies.json"),
        "FLAKEBOT_BENCH_DELIVERIES": str(folder / "deliveries.jsonl"),
        "WORKERS": "1",  # one load process: the deliveries are handed out in order, each once
        "ARTILLERY_DISABLE_TELEMETRY": "true",
    }
    with open(folder / "artillery.out", "wb") as out:
        done = subprocess.run(
            [str(tool), "run", "--output", str(folder / "report.json"), str(folder / "load.yml")],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = (folder / "artillery.out").read_text(errors="replace")[-2000:]
        sys.exit(f"artillery failed ({done.returncode}):\n{tail}")
    return json.loads((folder / "report.json").read_text())["aggregate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200, help="deliveries a second (default 200)")
    parser.add_argument("--duration", type=int, default=30, help="seconds of load (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="the service's queue workers (default 2)")
    args = parser.parse_args()
    tool = artillery()
    private_pem, public_pem = app_key_pair()
    fake = RemoteFakeGitHub(public_pem)
    try:
        with tempfile.TemporaryDirectory(prefix="flakebot-bench-") as name:
            tmp = Path(name)
            model_dir = train_model(tmp)
            bodies = seed(fake)
            count = args.rate * args.duration + args.rate  # artillery may start one more second's worth
            pregenerate(tmp, bodies, count)
            with serve(
                tmp, api_url=fake.url, app_id=APP_ID, private_pem=private_pem, model_dir=model_dir,
                workers=args.workers,
            ) as service:  # fmt: skip
                before = service.metrics()
                cpu_before, fake_before = service.cpu_seconds(), fake.call("request_count")
                children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.monotonic()
                report = load(tool, tmp, service.url, args.rate, args.duration)
                elapsed = time.monotonic() - start
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                after, health = service.metrics(), service.health()
                cpu = service.cpu_seconds() - cpu_before
                fake_requests = fake.call("request_count") - fake_before
    finally:
        problems = fake.close()

    counters, latency = report["counters"], report["summaries"]["http.response_time"]
    codes = {k.removeprefix("http.codes."): v for k, v in counters.items() if k.startswith("http.codes.")}
    errors = {k.removeprefix("errors."): v for k, v in counters.items() if k.startswith("errors.")}
    sent = counters.get("http.requests", 0)
    print(
        f"POST /github at {args.rate}/s for {args.duration} s: artillery (open model, a new connection per "
        f"delivery), {sent} pre-generated signed workflow_run deliveries\n"
    )
    print(
        table(
            [
                {
                    "sent": sent,
                    "answered": counters.get("http.responses", 0),
                    "202": codes.get("202", 0),
                    "other codes": sum(v for k, v in codes.items() if k != "202"),
                    "errors": sum(errors.values()),
                    "achieved/s": f"{counters.get('http.responses', 0) / args.duration:.0f}",
                    "min ms": latency["min"],
                    "p50 ms": latency["median"],
                    "p90 ms": latency["p90"],
                    "p99 ms": latency["p99"],
                    "max ms": latency["max"],
                }
            ],
            "Acknowledgement latency (request sent to first byte of the answer)",
        )
    )
    if errors:
        print("errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()) + "\n")

    def grown(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    queued = grown("flakebot_webhook_events_total", forge="github", event="workflow_run", outcome="queued")
    processed = grown("flakebot_pipeline_seconds_count")
    failed = metric(after, "flakebot_delivery_errors_total", forge="github")
    comments = metric(after, "flakebot_comments_total", forge="github")
    load_cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    print(
        table(
            [
                {
                    "stored": int(queued),
                    "processed": int(processed),
                    "processed/s": f"{processed / elapsed:.1f}",
                    "in queue after": health["queue"],
                    "processing errors": int(failed),
                    "comments written": int(comments),
                    "fake GitHub requests": fake_requests,
                    "service CPU": f"{cpu:.1f} s ({100 * cpu / elapsed:.0f}% of a core)",
                    "artillery CPU": f"{load_cpu:.1f} s",
                }
            ],
            f"Meanwhile in the service ({args.workers} queue workers processing the deliveries against the "
            f"fake GitHub, {elapsed:.0f} s)",
        )
    )
    print(f"fake GitHub: requests GitHub would refuse: {problems or 'none'}")


if __name__ == "__main__":
    main()
