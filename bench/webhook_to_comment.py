"""From a signed ``workflow_run`` webhook to the posted PR comment: a run with 10 failed tests, 10 MB of logs.

    .venv/bin/python -m bench webhook_to_comment       # or: python bench/webhook_to_comment.py --repeat 5

Starts ``flakebot serve`` (embedded SQLite store in a temporary directory, 2 queue workers, a model
trained with ``flakebot train`` on 1,200 failures of ``bench/ci_corpus.py``) with its GitHub forge
pointed at the fake GitHub of the test suite, in a process of its own. Each repetition opens a new
pull request whose workflow run failed: one job, ``tests (ubuntu)``, whose 10 MB GitHub Actions log is
a real build's output (a Firefox build log of ``../shared/data/treeherder-logs``, its lines re-stamped
the way Actions does) followed by ``pytest -v`` with 1,500 passed and 10 failed tests (6 flaky causes,
4 real bugs), plus a green ``lint`` job. It sends the signed delivery and waits until the comment
is created on the fake GitHub.

Prints one row a repetition and the median and max: the time from sending the webhook to the
comment's creation, the acknowledgement, the queue pick-up (answer to the worker's first GitHub
request), and each step of the data path from the service's ``flakebot_step_seconds`` histogram
(fetch: log download; split; classify: the flake model; score: history, scores, verdicts; act:
retry, quarantine, comment). "other" is the rest (installation token, settings file, job list).
The history grows from one repetition to the next (the same test suite runs again), as in a real
repository.
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._fake_github import APP_ID, RemoteFakeGitHub  # noqa: E402
from bench._service import SECRET, Service, metric, serve, train_model  # noqa: E402
from bench._shared import shared, table  # noqa: E402
from bot.split import split_log  # noqa: E402
from tests.ci_logs import actions_pytest_log, cause, real_bug  # noqa: E402
from tests.fakes.github import app_key_pair, delivery  # noqa: E402

REPO = "octo-org/octo-repo"
LOG_BYTES = 10 * 10**6
FILLER = "win-aarch64-build.txt.gz"  # a real 41 MB Firefox build log
STEPS = ("fetch", "split", "classify", "score", "act")
# build output lines that a log splitter would rightly take for a failure are left out of the filler
NOISY = re.compile(
    r"error|fail|warning|exception|traceback|crash|assert|TEST-|not ok|panic|timed? ?out", re.I
)
TASK_PREFIX = re.compile(r"^\[task [^\]]*\] (\d\d:\d\d:\d\d +[A-Z]+ - +)?")


def failures() -> list[tuple[str, str]]:
    rng = random.Random(42)
    flaky = [
        (f"tests/test_api.py::test_fetch_{i}", cause(("reset", "timeout", "dns")[i % 3], rng))
        for i in range(6)
    ]
    real = [(f"tests/test_cart.py::test_total_{i}", real_bug(rng)) for i in range(4)]
    return flaky + real


def job_log() -> bytes:
    """A 10 MB GitHub Actions log: a real build's output, then pytest with 10 failures among 1,510 tests."""
    source = gzip.decompress(shared("data", "treeherder-logs", FILLER).read_bytes()).decode(
        "utf-8", "replace"
    )
    tests = actions_pytest_log(
        failures(), [f"tests/test_suite_{i // 50}.py::test_case_{i}" for i in range(1500)]
    )
    budget = LOG_BYTES - len(tests)
    out = ["2024-06-01T11:00:00.0000000Z ##[group]Run ./mach build"]
    size, tick = len(out[0]) + 1, 0
    for raw in source.splitlines():
        line = TASK_PREFIX.sub("", raw).rstrip()
        if not line or NOISY.search(line):
            continue
        tick += 1
        stamped = f"2024-06-01T11:{tick // 600000 % 60:02d}:{tick / 10000 % 60:010.7f}Z {line}"
        if size + len(stamped) + 40 > budget:
            break
        out.append(stamped)
        size += len(stamped) + 1
    out.append("2024-06-01T11:59:59.0000000Z ##[endgroup]")
    log = ("\n".join(out) + "\n").encode() + tests
    found = sorted(r["test"] for r in split_log([log], job="tests") if r["status"] in ("failure", "error"))
    if found != sorted(t for t, _ in failures()):
        sys.exit(f"webhook_to_comment: the built log splits into other failures than intended: {found[:12]}")
    return log


def post(service: Service, headers: dict[str, str], body: bytes) -> int:
    request = urllib.request.Request(service.url + "/github", data=body, headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
        return answer.status


def step_sums(metrics: dict) -> dict[str, float]:
    sums = {step: metric(metrics, "flakebot_step_seconds_sum", step=step) for step in STEPS}
    sums["pipeline"] = metric(metrics, "flakebot_pipeline_seconds_sum")
    sums["processed"] = metric(metrics, "flakebot_pipeline_seconds_count")
    return sums


def one_run(fake: RemoteFakeGitHub, service: Service, log: bytes, number: int) -> dict[str, float]:
    sha, branch = f"{number + 1:040x}", f"fix-{number}"
    pull = fake.add_pull(REPO, head_sha=sha, head_ref=branch)["number"]
    run = fake.add_run(REPO, head_sha=sha, head_branch=branch, conclusion="failure")
    fake.add_job(REPO, run, "tests (ubuntu)", conclusion="failure", log=log)
    fake.add_job(REPO, run, "lint", conclusion="success", log=b"ok\n")
    headers, body = delivery("workflow_run", fake.workflow_run_payload(REPO, run), SECRET)
    before = step_sums(service.metrics())
    since = len(fake.timeline())

    start = time.monotonic()
    status = post(service, headers, body)
    acked = time.monotonic()
    if status != 202:
        sys.exit(f"webhook_to_comment: the service answered {status}, not 202")
    deadline = acked + 300
    posted = None
    while posted is None:
        if time.monotonic() > deadline:
            sys.exit("webhook_to_comment: no comment after 300 s; see the service log")
        time.sleep(0.02)
        timeline = fake.timeline(since)
        posted = next(
            (end for op, _, end, code in timeline if op == "issues/create-comment" and code == 201), None
        )
    while step_sums(service.metrics())["processed"] == before["processed"]:  # the delivery is finished
        time.sleep(0.02)
    after = step_sums(service.metrics())
    comments = fake.comments_on(REPO, pull)
    if len(comments) != 1 or "test_total_0" not in comments[0]["body"]:
        sys.exit("webhook_to_comment: the comment does not list the failures")
    first_request = min(s for _, s, _, _ in timeline)
    row = {"total": posted - start, "ack": acked - start, "pick-up": first_request - acked}
    row |= {step: after[step] - before[step] for step in STEPS}
    row["other"] = row["total"] - row["ack"] - row["pick-up"] - sum(row[s] for s in STEPS)
    row["pipeline"] = after["pipeline"] - before["pipeline"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs to time (default 5)")
    args = parser.parse_args()
    log = job_log()
    private_pem, public_pem = app_key_pair()
    fake = RemoteFakeGitHub(public_pem)
    rows = []
    try:
        fake.add_repo(REPO)
        with tempfile.TemporaryDirectory(prefix="flakebot-bench-") as name:
            tmp = Path(name)
            model_dir = train_model(tmp)
            with serve(
                tmp, api_url=fake.url, app_id=APP_ID, private_pem=private_pem, model_dir=model_dir
            ) as service:
                for number in range(args.repeat):
                    rows.append(one_run(fake, service, log, number))
    finally:
        problems = fake.close()

    def fmt(row: dict[str, float]) -> dict[str, str]:
        out = {k: f"{v:.3f}" if k in ("ack", "pick-up") else f"{v:.2f}" for k, v in row.items()}
        return out

    shown = [{"run": str(i + 1), **fmt(r)} for i, r in enumerate(rows)]
    keys = list(rows[0])
    shown.append({"run": "median", **fmt({k: statistics.median(r[k] for r in rows) for k in keys})})
    shown.append({"run": "max", **fmt({k: max(r[k] for r in rows) for k in keys})})
    print(
        f"Webhook to posted comment: 1 failed job, {len(log) / 1e6:.1f} MB log, 10 failed tests of 1,510 "
        f"(fake GitHub in its own process, 2 queue workers), seconds\n"
    )
    print(table(shown))
    print(f"fake GitHub: requests GitHub would refuse: {problems or 'none'}")


if __name__ == "__main__":
    main()
