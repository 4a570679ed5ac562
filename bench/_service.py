"""The real flakebot service for the service benchmarks: ``flakebot serve`` in a subprocess.

:func:`serve` starts ``python -m bot serve`` on 127.0.0.1 with the embedded SQLite store in a
temporary directory and the GitHub forge pointed at a (fake) GitHub, waits until ``/healthz``
answers, and stops it afterwards. Configuration goes through the environment, as in production;
the service's log (access log included) goes to a file, never to the benchmark's output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-" + "s" * 24


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:  # noqa: S310 - loopback
            return answer.read()

    def health(self) -> dict:
        return json.loads(self.get("/healthz"))

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``GET /metrics``: (name, sorted labels) -> value."""
        text = self.get("/metrics").decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_model(tmp: Path, failures: int = 1200) -> Path:
    """``flakebot train``, as an operator runs it, on ``failures`` of ``bench/ci_corpus.py``; returns
    the model directory (in ``tmp``)."""
    from bench.ci_corpus import generate

    corpus, model_dir = tmp / "corpus.jsonl", tmp / "model"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in generate(failures)))
    done = subprocess.run(
        [sys.executable, "-m", "bot", "train", str(corpus), "--model", str(model_dir), "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"flakebot train failed: {done.stderr[-2000:]}")
    return model_dir


def metric(snapshot: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """One sample of a :meth:`Service.metrics` snapshot (0 when the service has not counted it yet)."""
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


@contextmanager
def serve(
    tmp: Path,
    *,
    api_url: str,
    app_id: int,
    private_pem: str,
    model_dir: Path,
    workers: int = 2,
    env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """``env``: more settings (``FLAKEBOT_DATABASE_URL`` for the PostgreSQL store)."""
    port = free_port()
    extra = env or {}
    env = {
        **os.environ,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITHUB_APP_ID": str(app_id),
        "GITHUB_PRIVATE_KEY": private_pem,
        "GITHUB_API_URL": api_url,
        "FLAKEBOT_DATA_DIR": str(tmp / "data"),
        "FLAKEBOT_MODEL": str(model_dir),
        "FLAKEBOT_WORKERS": str(workers),
        **extra,
    }
    for name in ("GITHUB_TOKEN", "GITLAB_TOKEN", "GITLAB_WEBHOOK_SECRET", "FLAKEBOT_DRY_RUN"):
        env.pop(name, None)
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"flakebot-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"flakebot serve exited with {process.returncode}:\n{tail}")
            try:
                service.health()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("flakebot serve did not answer /healthz within 60 s") from None
                time.sleep(0.1)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
