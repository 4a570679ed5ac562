"""Job logs for end-to-end tests, in the shape of real CI output.

``actions_pytest_log`` writes what a GitHub Actions job running ``pytest -v`` prints (compare
``tests/fixtures/logs/github-actions-pytest.log``, real output): timestamped lines, ``##[group]``
markers, ANSI colours, the FAILURES section with ``E`` lines and the short test summary.
``gitlab_pytest_log`` wraps the same pytest output in a GitLab job trace (compare
``tests/fixtures/logs/gitlab-gotest.log``, a real trace's shape).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

FLAKY_CAUSES = {
    "reset": "ConnectionResetError: [Errno 104] Connection reset by peer",
    "timeout": "TimeoutError: timed out waiting for http://127.0.0.1:{port}/health after 30s",
    "dns": "socket.gaierror: [Errno -3] Temporary failure in name resolution",
}


def real_bug(rng: random.Random) -> str:
    """A real bug's message: its own values and names, unlike any other."""
    a, b = rng.sample(["cart", "order", "invoice", "price", "user", "token", "stock", "refund", "coupon"], 2)
    x, y = rng.randint(0, 999), rng.randint(0, 999)
    return rng.choice(
        [
            f"AssertionError: assert {x} == {y}\n +  where {x} = compute_{a}_{b}(quantity={y % 7})",
            f"KeyError: '{a}_{b}_{x}'",
            f"AttributeError: '{a.title()}' object has no attribute '{b}_{x}'",
        ]
    )


def cause(name: str, rng: random.Random) -> str:
    return FLAKY_CAUSES[name].format(port=rng.randint(20000, 60000))


def pytest_session(
    failures: Sequence[tuple[str, str]], passes: Sequence[str], rng: random.Random
) -> list[str]:
    """The lines ``pytest -v --color=yes`` prints for these failures and passes (no CI wrapping)."""
    out: list[str] = []
    emit = out.append
    emit("\x1b[1m============================= test session starts ==============================\x1b[0m")
    emit("platform linux -- Python 3.11.7, pytest-8.3.2, pluggy-1.5.0")
    emit(f"collected {len(failures) + len(passes)} items")
    emit("")
    for test in passes:
        emit(f"{test} \x1b[32mPASSED\x1b[0m")
    for test, _ in failures:
        emit(f"{test} \x1b[31mFAILED\x1b[0m")
    emit("")
    emit("=================================== FAILURES ===================================")
    for test, message in failures:
        name = test.split("::")[-1]
        path = test.split("::")[0]
        emit(f"\x1b[31m\x1b[1m{'_' * 20} {name} {'_' * 20}\x1b[0m")
        emit("")
        emit(f"    def {name}():")
        emit(f"        client = make_client(port={rng.randint(20000, 60000)})")
        emit(">       response = client.get('/api/v1/items')")
        emit("")
        for line in message.splitlines():
            emit(f"\x1b[1m\x1b[31mE       {line}\x1b[0m")
        emit("")
        emit(f"\x1b[1m\x1b[31m{path}\x1b[0m:{rng.randint(10, 300)}: {message.split(':')[0]}")
        emit("----------------------------- Captured log call ------------------------------")
        emit(
            f"INFO     app:server.py:{rng.randint(10, 90)} listening on 127.0.0.1:{rng.randint(20000, 60000)}"
        )
    emit("=========================== short test summary info ============================")
    for test, message in failures:
        emit(f"FAILED {test} - {message.splitlines()[0][:80]}")
    emit(
        f"\x1b[31m========================= {len(failures)} failed, {len(passes)} passed in {rng.random() * 9:.2f}s =========================\x1b[0m"
    )
    return out


def actions_pytest_log(
    failures: Sequence[tuple[str, str]], passes: Sequence[str] = (), *, seed: int = 0
) -> bytes:
    """A GitHub Actions log of a pytest run: ``failures`` are (node id, error message) pairs."""
    rng = random.Random(seed)
    ms = iter(range(0, 10**9, 137))
    out: list[str] = []

    def emit(line: str = "") -> None:
        out.append(f"2024-06-01T12:00:{next(ms) / 10000:010.7f}Z {line}")

    emit("##[group]Run actions/checkout@v4")
    emit("Syncing repository: example/shop")
    emit("##[endgroup]")
    emit("##[group]Run python -m pytest -v --color=yes")
    emit("##[endgroup]")
    for line in pytest_session(failures, passes, rng):
        emit(line)
    emit("##[error]Process completed with exit code 1.")
    return ("\n".join(out) + "\n").encode()


def gitlab_pytest_log(
    failures: Sequence[tuple[str, str]], passes: Sequence[str] = (), *, seed: int = 0
) -> bytes:
    """A GitLab job trace of a pytest run (compare ``tests/fixtures/logs/gitlab-gotest.log``): the
    runner's banner, ``section_start``/``section_end`` markers with ``\\r\\e[0K``, ANSI colours, and
    the ``ERROR: Job failed`` line when a test failed."""
    rng = random.Random(seed)
    clock = 1717243200
    out = [
        "\x1b[0KRunning with gitlab-runner 17.5.3 (12030cf4)\x1b[0K",
        "\x1b[0K  on shared-runner-7 t3_xZy12, system ID: s_8f1c2d3e4a5b\x1b[0K",
        f'section_start:{clock}:prepare_executor\r\x1b[0K\x1b[0K\x1b[36;1mPreparing the "docker" executor\x1b[0;m\x1b[0K',
        "\x1b[0KUsing Docker executor with image python:3.11 ...\x1b[0K",
        f"section_end:{clock + 4}:prepare_executor\r\x1b[0Ksection_start:{clock + 4}:get_sources\r\x1b[0K"
        "\x1b[0K\x1b[36;1mGetting source from Git repository\x1b[0;m\x1b[0K",
        "Receiving objects:  12% (5/41)\rReceiving objects: 100% (41/41), done.",
        f"section_end:{clock + 6}:get_sources\r\x1b[0Ksection_start:{clock + 6}:step_script\r\x1b[0K"
        '\x1b[0K\x1b[36;1mExecuting "step_script" stage of the job script\x1b[0;m\x1b[0K',
        "\x1b[32;1m$ python -m pytest -v --color=yes\x1b[0;m",
        *pytest_session(failures, passes, rng),
        f"section_end:{clock + 60}:step_script\r\x1b[0K",
    ]
    if failures:
        out.append("\x1b[31;1mERROR: Job failed: exit code 1\n\x1b[0;m")
    else:
        out.append("\x1b[32;1mJob succeeded\x1b[0;m")
    return ("\n".join(out) + "\n").encode()
