"""Hardening probe: replays the hostile inputs of issue 15 against a running ``flakebot serve``.

    .venv/bin/python -m bench probe_hardening             # or: python bench/probe_hardening.py [--only 5,7]

Starts ``python -m bot serve`` as in production (a process of its own, configured through the
environment, SQLite in a temporary directory, a trained model) serving GitHub and GitLab at once,
against the fake GitHub and fake GitLab of the test suite on loopback (real HTTP servers, in this
process). Then it plays the attacker and the misbehaving forge, item by item of docs/hardening.md,
and checks what the service did from the outside: its answers, the requests that reached the fakes,
the comments they received, ``/healthz``, its log, its database file, its memory. One line per check,
then a summary; the exit status is 1 when a check fails.

Replayed here: 1 (form-encoded deliveries), 2 (signed but malformed payloads), 3 (repository names that
are paths), 4 (replays, SHA-1 signatures), 5 (unauthenticated memory: 40 concurrent 25 MB posts,
the service's resident memory measured), 6 (a command in an HTML comment), 7 (rate limits), 8
(cut and trickled logs), 10 (hostile names in the comment), 11 (secrets in the comment and the
database), 12 (a broken model file: a second service), 13 (an empty database: a third start), 14
(unreadable settings), 16 (unsigned deliveries logged). Not here: 9 (its own branch), and 15, 17, 18
(the command line, the package, the page), which need no service: their tests cover them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import random
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.ci_logs import actions_pytest_log, cause, gitlab_pytest_log, real_bug  # noqa: E402
from tests.fakes.github import FakeGitHub, app_key_pair, delivery  # noqa: E402
from tests.fakes.gitlab import FakeGitLab  # noqa: E402
from tests.fakes.gitlab import load_webhook as gitlab_webhook  # noqa: E402
from tests.markdown_check import render_markdown  # noqa: E402

SECRET = "probe-webhook-secret-" + "p" * 24
APP_ID = 4242
MB = 1024 * 1024
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # noqa: S105 - AWS's documented example key


# --- the service ---------------------------------------------------------------------------------------


@dataclass
class Service:
    url: str
    process: asyncio.subprocess.Process
    log: Path
    data: Path

    def rss(self) -> int:
        """Resident memory of the service process, bytes (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def db(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """A query on the service's database, read-only, as an operator would run it."""
        conn = sqlite3.connect(f"file:{self.data / 'flakebot.db'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(tmp: Path, github: FakeGitHub, gitlab: FakeGitLab, private_pem: str, model: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "FLAKEBOT_"))}
    return env | {
        "GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY": private_pem,
        "GITHUB_API_URL": github.url, "GITLAB_URL": gitlab.url, "GITLAB_TOKEN": gitlab.token,
        "GITLAB_WEBHOOK_SECRET": gitlab.webhook_secret, "FLAKEBOT_DATA_DIR": str(tmp / "data"),
        "FLAKEBOT_MODEL": str(model), "FLAKEBOT_LOG_DEADLINE": "3s",
    }  # fmt: skip


@contextlib.asynccontextmanager
async def serve(tmp: Path, env: dict) -> AsyncIterator[Service]:
    port, log = free_port(), tmp / "flakebot.log"
    with open(log, "wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port),
            cwd=ROOT, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    service = Service(f"http://127.0.0.1:{port}", process, log, Path(env["FLAKEBOT_DATA_DIR"]))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                if process.returncode is not None:
                    raise RuntimeError(f"flakebot serve exited: {log.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(service.url + "/healthz") as answer:
                        if answer.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield service
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()


def train_model(folder: Path) -> Path:
    """A small model of this shop's earlier failures (recurring flaky causes, one-off bugs)."""
    from bot.modelstore import ModelStore
    from bot.split import split_log
    from bot.training import interleave, train_and_save

    rng, records = random.Random(3), []
    failures = [(f"tests/test_old{i}.py::test_thing_{i}", cause(("reset", "timeout", "dns")[i % 3], rng), "flake")
                for i in range(24)] + [(f"tests/test_bug{i}.py::test_case_{i}", real_bug(rng), "real") for i in range(16)]  # fmt: skip
    for test, message, label in failures:
        (record,) = split_log([actions_pytest_log([(test, message)], seed=len(records))], job="tests")
        records.append({**record, "label": label})
    train_and_save(ModelStore(folder), interleave(records), {"trained_on": {"failures": len(records)}})
    return folder


# --- checks ----------------------------------------------------------------------------------------------


@dataclass
class Probe:
    service: Service
    github: FakeGitHub
    gitlab: FakeGitLab
    session: aiohttp.ClientSession
    results: list[tuple[str, str, bool, str]] = field(default_factory=list)
    _repos: int = 0

    def check(self, item: str, what: str, ok: bool, seen: Any = "") -> None:
        self.results.append((item, what, bool(ok), str(seen)[:160]))
        print(f"  {'ok  ' if ok else 'FAIL'} {item:>3}  {what}" + ("" if ok else f"  [{seen}]"), flush=True)

    # GitHub side
    def repo(self) -> str:
        self._repos += 1
        name = f"probe-org/repo-{self._repos}"
        self.github.add_repo(name)
        return name

    def failed_run(self, repo: str, failures: list[tuple[str, str]], *, job: str = "tests (ubuntu)") -> int:
        sha = f"{self._repos:040x}"
        if not self.github.repo(repo).pulls:
            self.github.add_pull(repo, head_sha=sha, head_ref=f"topic-{self._repos}")
        run = self.github.add_run(repo, head_sha=sha, head_branch=f"topic-{self._repos}")
        self.github.add_job(repo, run, job, log=actions_pytest_log(failures, seed=self._repos))
        return run

    async def post(
        self, event: str, payload: Any, *, secret: str | None = SECRET, **options: Any
    ) -> tuple[int, Any]:
        headers, body = delivery(event, payload, secret, **options)
        async with self.session.post(self.service.url + "/github", data=body, headers=headers) as answer:
            return answer.status, await answer.json(content_type=None)

    async def settle(self, timeout: float = 60) -> None:
        """Until no delivery is being worked on or due (deferred ones wait for later), and a moment more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = self.service.db("SELECT count(*) FROM deliveries WHERE status = 'working' OR "
                                   "(status = 'pending' AND next_attempt_at <= ?)", (time.time(),))[0][0]  # fmt: skip
            if busy == 0:
                await asyncio.sleep(0.3)
                return
            await asyncio.sleep(0.1)

    def comments(self, repo: str) -> list[str]:
        state = self.github.repo(repo)
        return [c["body"] for number in state.pulls for c in self.github.comments_on(repo, number)]

    def requests_since(self, start: int) -> list[Any]:
        return self.github.requests[start:]


async def raw_post(
    url: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int | None, float]:
    """A request written on a socket of its own (the body may be much shorter than announced): the
    answer's status and how long it took, or None after 5 s."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
    except TimeoutError:
        line = b""
    writer.close()
    return (int(line.split()[1]) if line else None), time.monotonic() - start


# --- the items -----------------------------------------------------------------------------------------------


async def item_1(p: Probe) -> None:
    repo = p.repo()
    run = p.failed_run(repo, [("tests/test_a.py::test_form", cause("reset", random.Random(1)))])
    status, _ = await p.post("workflow_run", p.github.workflow_run_payload(repo, run), form=True)
    await p.settle()
    p.check("1", "a form-encoded workflow_run is accepted (202)", status == 202, status)
    p.check("1", "... and processed to a comment", any("test_form" in c for c in p.comments(repo)))


async def item_2(p: Probe) -> None:
    repo = p.repo()
    run = p.failed_run(repo, [("tests/test_a.py::test_x", "E   boom")])

    def payload(change: Callable[[dict], Any]) -> dict:
        data = p.github.workflow_run_payload(repo, run)
        change(data)
        return data

    cases = {
        '"action": ["completed"]': payload(lambda d: d.update(action=["completed"])),
        "JSON nested 1,000 deep": b'{"action": "completed", "workflow_run": '
        + b"[" * 1000
        + b"]" * 1000
        + b"}",
        'workflow_run.id "x"': payload(lambda d: d["workflow_run"].update(id="x")),
        "no repository": payload(lambda d: d.pop("repository")),
        "workflow_run as a list": payload(lambda d: d.update(workflow_run=[1])),
    }
    for name, body in cases.items():
        status, answer = await p.post("workflow_run", body)
        p.check(
            "2",
            f"GitHub {name}: 400 with the reason",
            status == 400 and answer.get("error"),
            (status, answer),
        )
    merge = gitlab_webhook("pipeline_failed_mr")
    merge.update(object_kind="merge_request")
    merge["object_attributes"].update(action="merge", last_commit=["x"])
    headers, body = p.gitlab.delivery("Merge Request Hook", merge)
    async with p.session.post(p.service.url + "/gitlab", data=body, headers=headers) as answer:
        p.check(
            "2", "GitLab Merge Request Hook with last_commit a list: 400", answer.status == 400, answer.status
        )
    await p.settle()
    dead = p.service.db("SELECT count(*) FROM deliveries WHERE status = 'dead'")[0][0]
    p.check("2", "nothing malformed reached the queue (no dead delivery)", dead == 0, dead)


async def item_3(p: Probe) -> None:
    repo = p.repo()
    payload = p.github.workflow_run_payload(repo, p.failed_run(repo, [("t.py::t", "E   x")]))
    payload["repository"]["full_name"] = "../../etc/passwd"
    before = len(p.github.requests)
    status, answer = await p.post("workflow_run", payload)
    await p.settle()
    p.check("3", "full_name ../../etc/passwd: 400", status == 400, (status, answer))
    p.check(
        "3", "... and no request reached the API", p.requests_since(before) == [], p.requests_since(before)
    )
    project = gitlab_webhook("pipeline_failed_mr")
    project["project"]["path_with_namespace"] = "group/../../x"
    headers, body = p.gitlab.delivery("Pipeline Hook", project)
    async with p.session.post(p.service.url + "/gitlab", data=body, headers=headers) as answer:
        p.check("3", "GitLab path_with_namespace group/../../x: 400", answer.status == 400, answer.status)


async def item_4(p: Probe) -> None:
    repo = p.repo()
    p.failed_run(repo, [("t.py::t", "E   x")])
    number = next(iter(p.github.repo(repo).pulls))
    p.github.set_role(repo, "mallory-with-a-capture", "write")
    headers, body = delivery(
        "issue_comment",
        p.github.issue_comment_payload(repo, number, "/flake help", user="mallory-with-a-capture"),
        SECRET,
    )
    queued = []
    for i in range(3):
        async with p.session.post(p.service.url + "/github", data=body,
                                  headers={**headers, "X-GitHub-Delivery": f"replay-{i}-{time.time()}"}) as answer:  # fmt: skip
            queued.append((answer.status, (await answer.json()).get("queued")))
        await p.settle()
    replies = [c for c in p.comments(repo) if c != "/flake help"]  # the captured comment itself aside
    p.check("4", "one signed body posted under 3 delivery ids: queued once", queued == [(202, True), (202, False), (202, False)], queued)  # fmt: skip
    p.check("4", "... answered once", len(replies) == 1, len(replies))
    import hashlib
    import hmac

    sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    async with p.session.post(p.service.url + "/github", data=body,
                              headers={**headers, "X-Hub-Signature-256": sha1}) as answer:  # fmt: skip
        p.check(
            "4", "a valid SHA-1 signature in X-Hub-Signature-256: 401", answer.status == 401, answer.status
        )


async def item_5(p: Probe) -> None:
    url, cap = p.service.url, 25 * MB
    fake_sig = {"X-GitHub-Event": "workflow_run", "X-Hub-Signature-256": "sha256=" + "0" * 64,
                "Content-Type": "application/json"}  # fmt: skip
    status, took = await raw_post(url, "/github", {**fake_sig, "Content-Length": str(cap + 1)})
    p.check(
        "5",
        f"Content-Length over 25 MB: 413 before the body is sent ({took * 1000:.0f} ms)",
        status == 413,
        status,
    )
    unsigned = {k: v for k, v in fake_sig.items() if k != "X-Hub-Signature-256"} | {
        "Content-Length": str(cap)
    }
    status, took = await raw_post(url, "/github", unsigned)
    p.check("5", f"unsigned 25 MB: 401 before the body is sent ({took * 1000:.0f} ms)", status == 401, status)
    status, took = await raw_post(url, "/gitlab", {"X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Token": "guess",
                                                   "Content-Length": str(cap)})  # fmt: skip
    p.check(
        "5",
        f"GitLab, wrong token, 25 MB: 401 before the body is sent ({took * 1000:.0f} ms)",
        status == 401,
        status,
    )

    before, peak, flooding = p.service.rss(), 0, True

    async def sample() -> None:
        nonlocal peak
        while flooding:
            peak = max(peak, p.service.rss())
            await asyncio.sleep(0.05)

    body = b'{"pad": "' + b"x" * (cap - 20) + b'"}'  # one buffer, sent by all 40

    async def one() -> int | None:
        try:
            async with (
                aiohttp.ClientSession() as own,
                own.post(url + "/github", data=body, headers=fake_sig) as answer,
            ):
                return answer.status
        except aiohttp.ClientError:
            return None  # the service answered and closed while this was still sending

    sampler = asyncio.create_task(sample())
    start = time.monotonic()
    statuses = await asyncio.gather(*(one() for _ in range(40)))
    flooding = False
    await sampler
    growth = (peak - before) / MB
    counts = {s: statuses.count(s) for s in set(statuses)}
    p.check("5", f"40 concurrent 25 MB posts, made-up signature ({time.monotonic() - start:.1f} s, answers {counts}): "
                 f"service memory {before / MB:.0f} MB → peak {peak / MB:.0f} MB (+{growth:.0f} MB; budget 64 MB)",
            growth < 200, f"+{growth:.0f} MB")  # fmt: skip


async def item_6(p: Probe) -> None:
    repo = p.repo()
    p.failed_run(repo, [("tests/t.py::test_hidden", "E   x")])
    number = next(iter(p.github.repo(repo).pulls))
    p.github.set_role(repo, "maintainer", "write")
    before = len(p.github.requests)
    body = "LGTM\n<!--\n/flake quarantine tests/t.py::test_hidden\n-->"
    await p.post("issue_comment", p.github.issue_comment_payload(repo, number, body, user="maintainer"))
    await p.settle()
    p.check("6", "a command inside an HTML comment: nothing done, not even a reaction", p.requests_since(before) == [],
            [r.operation for r in p.requests_since(before)])  # fmt: skip


async def item_7(p: Probe) -> None:
    for limit, asked, what in (({"retry_after": 120}, 120, "403 secondary limit, Retry-After: 120"),
                               ({"retry_after": None, "reset_in": 900}, 900, "primary limit, reset in 15 min"),
                               ({"retry_after": 300, "status": 429}, 300, "429 asking for 300 s")):  # fmt: skip
        repo = p.repo()
        run = p.failed_run(repo, [("t.py::t", "E   x")])
        p.github.rate_limit("actions/list-jobs-for-workflow-run", **limit)
        sent = time.time()
        _, answer = await p.post("workflow_run", p.github.workflow_run_payload(repo, run))
        row = None
        for _ in range(100):
            rows = p.service.db("SELECT status, attempts, next_attempt_at, error FROM deliveries WHERE delivery_id = ?",
                                (answer["delivery"],))  # fmt: skip
            if rows and rows[0]["status"] != "working" and rows[0]["error"]:
                row = rows[0]
                break
            await asyncio.sleep(0.05)
        waits = (
            row is not None and row["status"] == "pending" and abs(row["next_attempt_at"] - sent - asked) < 10
        )
        p.check("7", f"{what}: deferred {asked} s in the queue, not dead, attempt not counted",
                waits and row["attempts"] == 0, dict(row) if row else None)  # fmt: skip
    project, pipeline = seed_gitlab(p, "probe/rate-limited")
    p.gitlab.rate_limit("GET", f"/projects/{project.id}/pipelines/{pipeline['id']}/jobs", retry_after="300")
    headers, body = p.gitlab.delivery("Pipeline Hook", p.gitlab.pipeline_hook(project, pipeline["id"]))
    sent = time.time()
    async with p.session.post(p.service.url + "/gitlab", data=body, headers=headers) as answer:
        key = (await answer.json())["delivery"]
    await asyncio.sleep(1.5)
    rows = p.service.db("SELECT status, next_attempt_at FROM deliveries WHERE delivery_id = ?", (key,))
    p.check("7", "GitLab 429 asking for 300 s: deferred 300 s",
            rows and rows[0]["status"] == "pending" and abs(rows[0]["next_attempt_at"] - sent - 300) < 10,
            dict(rows[0]) if rows else None)  # fmt: skip


def seed_gitlab(p: Probe, path: str) -> tuple[Any, dict]:
    project = p.gitlab.add_project(path)
    p.gitlab.add_merge_request(project, source_branch="topic", sha="9" * 40)
    pipeline = p.gitlab.add_pipeline(
        project, sha="9" * 40, ref="topic", status="failed", source="merge_request_event"
    )
    p.gitlab.add_job(
        project, pipeline, "pytest", trace=gitlab_pytest_log([("tests/a.py::test_b", "E   boom")])
    )
    return project, pipeline


async def item_8(p: Probe) -> None:
    repo = p.repo()
    run = p.failed_run(repo, [("tests/a.py::test_slow", "E   x"), ("tests/a.py::test_late", "E   y")])
    p.github.trickle("blob:logs", chunk_bytes=100, every=0.3)  # about 9 s for the whole log
    start = time.monotonic()
    await p.post("workflow_run", p.github.workflow_run_payload(repo, run))
    await p.settle()
    took = time.monotonic() - start
    body = "".join(p.comments(repo))
    p.check("8", f"a log trickled over 9 s: given up at the 3 s deadline, judged ({took:.1f} s in all)",
            "did not finish downloading within 3 s" in body and took < 8, took)  # fmt: skip
    repo = p.repo()
    run = p.failed_run(repo, [("tests/a.py::test_cut", "E   x")])
    p.github.cut("blob:logs", after_bytes=1200, times=2)
    before = len(p.github.calls("blob:logs"))
    await p.post("workflow_run", p.github.workflow_run_payload(repo, run))
    await p.settle()
    body = "".join(p.comments(repo))
    p.check(
        "8",
        "a log cut short twice: fetched twice, judged on what arrived, the comment says so",
        len(p.github.calls("blob:logs")) - before == 2
        and "cut short by the connection (fetched twice)" in body,
    )


async def item_10_11(p: Probe) -> None:
    repo = p.repo()
    hostile = "tests/t.py::test_x` <img src=https://evil.example/p.png> @octo-org/admins `y"
    leaky = f"tests/t.py::test_leak[{SECRET}]"
    run = p.failed_run(repo, [(hostile, "E   boom"), (leaky, f"E   aws secret {AWS_SECRET} rejected")],
                       job="build ![x](https://evil.example/j.png)")  # fmt: skip
    await p.post("workflow_run", p.github.workflow_run_payload(repo, run))
    await p.settle()
    body = "".join(c for c in p.comments(repo) if "flakebot:comment" in c)
    shown = render_markdown(body)
    p.check("10", "hostile test and job names: no foreign tag, no mention, no foreign link",
            body and not shown.foreign_tags and not shown.mentions
            and all(link.startswith("https://github.com/") for link in shown.links),
            (shown.foreign_tags, shown.mentions, shown.links))  # fmt: skip
    files = b"".join(f.read_bytes() for f in p.service.data.glob("flakebot.db*"))
    p.check("11", "the webhook secret and an AWS secret key: not in the comment, not in the database files",
            body and SECRET not in body and AWS_SECRET not in body
            and SECRET.encode() not in files and AWS_SECRET.encode() not in files)  # fmt: skip


async def item_14(p: Probe) -> None:
    repo = p.repo()
    p.github.add_file(repo, ".github/flakebot.yml", "retry:\n  enabled: false\n")
    await p.post("workflow_run", p.github.workflow_run_payload(repo, p.failed_run(repo, [("t.py::t", cause("reset", random.Random(2)))])))  # fmt: skip
    await p.settle()
    p.github.fail("repos/get-content", 403, times=50)
    run = p.github.add_run(repo, head_sha=f"{p._repos:040x}", head_branch=f"topic-{p._repos}")
    p.github.add_job(
        repo, run, "tests (ubuntu)", log=actions_pytest_log([("t.py::t", cause("reset", random.Random(3)))])
    )
    await p.post("workflow_run", p.github.workflow_run_payload(repo, run))
    await p.settle()
    p.github.clear_faults()
    body = "".join(c for c in p.comments(repo) if "flakebot:comment" in c)
    reruns = [c for c in p.github.calls("actions/re-run-workflow-failed-jobs") if f"/{repo}/" in c.path]
    p.check("14", "settings unreadable: the last ones read apply (retries stay off), not the defaults",
            "automatic retries are turned off" in body and not reruns, (body[-300:], len(reruns)))  # fmt: skip


async def item_16(p: Probe) -> None:
    status, _ = await p.post(
        "workflow_run", {"action": "completed"}, secret=None, delivery_id="probe-unsigned"
    )
    await asyncio.sleep(0.3)
    logged = "probe-unsigned refused: no X-Hub-Signature-256" in p.service.log.read_text(errors="replace")
    p.check("16", "an unsigned delivery: 401 and a log line naming it", status == 401 and logged, status)


ITEMS: dict[str, Callable[[Probe], Awaitable[None]]] = {
    "1": item_1, "2": item_2, "3": item_3, "4": item_4, "6": item_6, "7": item_7, "8": item_8,
    "10": item_10_11, "14": item_14, "16": item_16, "5": item_5,  # the flood last
}  # fmt: skip


async def broken_model_and_empty_database(tmp: Path, env: dict, github: FakeGitHub, results: list) -> None:
    """12 and 13: each needs a service of its own."""
    from bot.modelstore import ModelStore

    model = tmp / "broken-model"
    shutil.copytree(env["FLAKEBOT_MODEL"], model)
    store = ModelStore(model)
    good = store.active_version()
    broken = good + "-broken"
    shutil.copytree(store.versions_dir / good, store.versions_dir / broken)
    (store.versions_dir / broken / "model.pkl.gz").write_bytes(gzip.compress(b"not a pickle")[:12])
    store.activate(broken)
    (tmp / "twelve").mkdir()
    async with serve(tmp / "twelve", env | {"FLAKEBOT_MODEL": str(model), "FLAKEBOT_DATA_DIR": str(tmp / "twelve" / "data")}) as service, aiohttp.ClientSession() as session:  # fmt: skip
        probe = Probe(service, github, FakeGitLab(), session)
        probe._repos = 100
        async with session.get(service.url + "/healthz") as answer:
            health = await answer.json()
        probe.check("12", "a corrupt active model: /healthz degraded, names the version in use and the error",
                    health.get("status") == "degraded" and health.get("model") == good and health.get("model_errors"),
                    health)  # fmt: skip
        repo = probe.repo()
        await probe.post("workflow_run", github.workflow_run_payload(repo, probe.failed_run(repo, [("t.py::t", cause("reset", random.Random(4)))])))  # fmt: skip
        await probe.settle()
        body = "".join(probe.comments(repo))
        probe.check(
            "12",
            "... the comment says so and the previous version judged",
            f"{broken} could not be loaded" in body and "no flake model trained yet" not in body,
        )
        logged = f"cannot load model {broken}" in service.log.read_text(errors="replace")
        probe.check("12", "... and the log has the error", logged)
        results += probe.results
    empty = tmp / "thirteen" / "data"
    empty.mkdir(parents=True)
    (empty / "flakebot.db").touch()
    done = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", "--port", str(free_port()), cwd=ROOT,
                                                env=env | {"FLAKEBOT_DATA_DIR": str(empty)}, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    _, err = await asyncio.wait_for(done.communicate(), 60)
    ok = done.returncode == 1 and b"is empty (0 bytes)" in err and b"Traceback" not in err
    print(
        f"  {'ok  ' if ok else 'FAIL'}  13  an empty flakebot.db: serve exits 1 with the message, no traceback",
        flush=True,
    )
    results.append(("13", "an empty flakebot.db: serve refuses to start", ok, err[-200:]))


async def run(only: set[str] | None) -> int:
    private_pem, public_pem = app_key_pair()
    github, gitlab = FakeGitHub(app_id=APP_ID, app_public_key=public_pem), FakeGitLab()
    await github.start()
    await gitlab.start()
    results: list[tuple[str, str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix="flakebot-probe-") as folder:
        tmp = Path(folder)
        print("training a small model and starting flakebot serve (GitHub and GitLab) ...", flush=True)
        env = service_env(
            tmp, github, gitlab, private_pem, await asyncio.to_thread(train_model, tmp / "model")
        )
        async with serve(tmp, env) as service, aiohttp.ClientSession() as session:
            probe = Probe(service, github, gitlab, session)
            for name, item in ITEMS.items():
                if only is None or name in only or (name == "10" and "11" in only):
                    await item(probe)
            results += probe.results
        if only is None or only & {"12", "13"}:
            await broken_model_and_empty_database(tmp, env, github, results)
    await github.close()
    await gitlab.stop()
    failed = [r for r in results if not r[2]]
    print(f"\n{len(results) - len(failed)} of {len(results)} checks hold"
          + ("" if not failed else f"; failed: {', '.join(f'{r[0]} ({r[1]})' for r in failed)}"))  # fmt: skip
    problems = github.problems() + gitlab.problems()
    if problems:
        print("the fake forges saw requests the real ones would refuse:\n  " + "\n  ".join(problems[:10]))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated item numbers (default: all)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    return asyncio.run(run(only))


if __name__ == "__main__":
    sys.exit(main())
