"""What the service logs (hardening 16): the verbosity asked for, every refused delivery, one line (not
a chain of tracebacks) for a delivery that failed for a known reason, and a warning at start when
there is no flake model."""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time

import aiohttp

from bot.forge.base import Repo
from bot.forge.github import GitHubForge
from bot.queue import Queue
from tests.fakes.github import delivery
from tests.test_e2e_github import bot, model_dir, settings  # noqa: F401 (fixtures)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_an_unreachable_api_is_one_line_per_attempt_and_a_bug_keeps_its_traceback(ctx, caplog):
    async with aiohttp.ClientSession() as session:
        forge = GitHubForge(
            session, api_url=f"http://127.0.0.1:{closed_port()}", token="t" * 20, max_attempts=1
        )

        async def unreachable(_delivery):
            await forge.read_file(Repo("github", "octo/demo"), ".github/flakebot.yml")

        async def bug(_delivery):
            raise KeyError("workflow_run")

        for handler, delivery_id in ((unreachable, "d-1"), (bug, "d-2")):
            await ctx.store.enqueue("github", delivery_id, "workflow_run", b"{}")
            claimed = await ctx.store.claim(time.time(), 60.0)
            caplog.clear()
            await Queue(ctx, handler).process(claimed)
            (record,) = [r for r in caplog.records if r.name == "bot.queue"]
            if delivery_id == "d-1":
                assert record.levelno == logging.WARNING and not record.exc_info
                assert "failed, retrying in 30s: ForgeError" in record.getMessage()
                assert "Cannot connect to host" in record.getMessage()
                assert "Traceback" not in caplog.text
            else:  # not a known failure: retried (it may be a bug), with its traceback, once
                assert record.levelno == logging.WARNING and record.exc_info is not None
                assert "failed, retrying in 30s: KeyError" in record.getMessage()
                assert caplog.text.count("Traceback") == 1


async def test_a_delivery_without_a_signature_is_logged_like_a_bad_one(bot, caplog):  # noqa: F811
    caplog.set_level(logging.INFO)
    headers, body = delivery("workflow_run", {"action": "completed"}, None, delivery_id="unsigned-1")
    response = await bot.post("/github", data=body, headers=headers)
    assert response.status == 401
    (refused,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refused.levelno == logging.WARNING and "unsigned-1" in refused.getMessage()
    assert "no X-Hub-Signature-256" in refused.getMessage()


def test_serve_honours_vv_and_warns_when_there_is_no_model(tmp_path):
    env = {**os.environ, "GITHUB_WEBHOOK_SECRET": "s" * 20, "GITHUB_TOKEN": "t" * 20,
           "FLAKEBOT_DATA_DIR": str(tmp_path / "data"), "FLAKEBOT_MODEL": str(tmp_path / "model")}  # fmt: skip
    served = subprocess.Popen(
        [sys.executable, "-m", "bot", "-vv", "serve", "--host", "127.0.0.1", "--port", str(closed_port())],
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    seen = ""
    try:
        deadline = time.monotonic() + 60
        while "no flake model in" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([served.stderr], [], [], 1.0)
            if ready:
                chunk = os.read(served.stderr.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk.decode()
    finally:
        served.terminate()
        served.wait(timeout=30)
        served.stderr.close()
    assert f"WARNING bot.web: no flake model in {tmp_path / 'model'}" in seen, seen
    assert " DEBUG " in seen  # -vv: the service's DEBUG lines are shown
