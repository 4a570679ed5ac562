"""The fake GitHub of the test suite (``tests/fakes/github.py``) in a process of its own, for benchmarks.

The service benchmarks need the fake's CPU time (it checks every request and answer against GitHub's
OpenAPI description) out of the process being measured, as GitHub is elsewhere in production.
:class:`RemoteFakeGitHub` starts the fake in a child process and calls its methods through a pipe
(``fake.add_repo(...)``, ``fake.workflow_run_payload(...)``: arguments and results are pickled). The
child also keeps a timeline of every HTTP request it served: ``(operation, start, end, status)`` with
``time.monotonic()`` times, which on Linux is one clock for every process of the machine, so the
benchmark can tell when a comment was posted.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


APP_ID = 4242


def _child(pipe: Any, public_pem: bytes) -> None:
    from aiohttp import web

    from tests.fakes.github import FakeGitHub

    async def main() -> None:
        fake = FakeGitHub(app_id=APP_ID, app_public_key=public_pem)
        timeline: list[tuple[str, float, float, int]] = []

        def timed(handler: Any, host: str) -> Any:
            async def wrapper(request: web.Request) -> web.StreamResponse:
                start = time.monotonic()
                before = len(fake.requests)
                response = await handler(request)
                new = fake.requests[before:]
                operation = next((r.operation for r in new if r.operation), None) or f"{host} {request.path}"
                timeline.append((operation, start, time.monotonic(), response.status))
                return response

            return wrapper

        # the fake serves its bound methods: instance attributes set before start() take their place
        fake._api = timed(fake._api, "api")  # type: ignore[method-assign]
        fake._blob = timed(fake._blob, "blob")  # type: ignore[method-assign]
        await fake.start()
        pipe.send((fake.url, fake.blob_url))
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, pipe.recv)
            if message is None:
                break
            name, args, kwargs = message
            try:
                if name == "timeline":
                    result: Any = timeline[kwargs.get("since", 0) :]
                elif name == "request_count":
                    result = len(fake.requests)
                else:
                    result = getattr(fake, name)(*args, **kwargs)
                pipe.send(("ok", result))
            except Exception as exc:  # the caller raises it
                pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        pipe.send(fake.problems())
        await fake.close()

    asyncio.run(main())


class RemoteFakeGitHub:
    """A :class:`tests.fakes.github.FakeGitHub` in a child process; call its methods as usual."""

    def __init__(self, public_pem: bytes):
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_child, args=(child, public_pem), daemon=True)
        self._process.start()
        deadline = time.monotonic() + 60
        while not self._pipe.poll(0.1):
            if not self._process.is_alive() or time.monotonic() > deadline:
                self._process.kill()
                raise RuntimeError("the fake GitHub did not start (see the error above)")
        self.url, self.blob_url = self._pipe.recv()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._pipe.send((name, args, kwargs))
        status, result = self._pipe.recv()
        if status == "error":
            raise RuntimeError(f"fake GitHub: {name}: {result}")
        return result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call(name, *args, **kwargs)

    def timeline(self, since: int = 0) -> list[tuple[str, float, float, int]]:
        """The requests served so far (from index ``since``): (operation, start, end, HTTP status)."""
        return self.call("timeline", since=since)

    def close(self) -> list[str]:
        """Stop the fake; returns the requests it saw that GitHub would refuse (should be none)."""
        problems: list[str] = []
        try:
            self._pipe.send(None)
            if self._pipe.poll(30):
                problems = self._pipe.recv()
        except (BrokenPipeError, EOFError, OSError):
            problems = ["the fake GitHub process ended early"]
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        return problems
