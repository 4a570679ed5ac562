"""A labelled corpus of synthetic CI test failures, for measuring the flake model where real labels are
missing or weak.

Why synthetic: the only real failures shipped with the project (Cockpit's 200) carry Cockpit's `merged`
label, which is per revision: the same image-download failure is "merged" 35 times and "not merged" 40
times. This corpus has exact labels and the structure that makes flake detection hard in practice:

* four projects, each with its own runner output (pytest, go test, Jest, Cockpit-style TAP) and noise
  (set-up lines, timestamps, ports, temporary paths, ids, durations, application log lines);
* flaky causes (network resets, timeouts, ports in use, DNS, OOM kills, registry rate limits, races
  whose assertion looks like a real one) that recur over time on many different tests;
* real bugs that appear at one point in time, break one to three tests for a few runs with their own
  messages, and are fixed — so a time-ordered split judges bugs the model has never seen;
* look-alikes both ways: real bugs that time out, flakes that fail an assertion.

It is a test of the method's properties, not a claim about anyone's CI; the README says so.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

WORDS = (  # noqa: SIM905 - a word list reads best as text
    "user account order invoice cart session token cache index search upload download report export "
    "import schedule retry queue worker event stream socket client server proxy auth login logout "
    "profile settings payment refund shipment inventory catalog price discount coupon email notify "
    "webhook metrics health config migrate backup restore archive audit permission role team project"
).split()
VERBS = "create update delete list get fetch sync parse render validate compute merge split apply".split()  # noqa: SIM905


def _test_names(rng: random.Random, style: str, n: int) -> list[str]:
    names = set()
    while len(names) < n:
        a, b, v = rng.choice(WORDS), rng.choice(WORDS), rng.choice(VERBS)
        if style == "pytest":
            names.add(f"tests/test_{a}.py::test_{v}_{b}")
        elif style == "go":
            names.add(f"Test{v.title()}{a.title()}{b.title()}")
        elif style == "jest":
            names.add(f"{a.title()}Service › {v}s the {b}")
        else:
            names.add(f"test{v.title()}{b.title()} (check_{a}.Test{a.title()})")
    return sorted(names)


def _noise(rng: random.Random, style: str, k: int) -> list[str]:
    out = []
    for _ in range(k):
        r = rng.random()
        port, pid = rng.randint(1024, 65000), rng.randint(100, 99999)
        ident = f"{rng.getrandbits(32):08x}"
        if r < 0.25:
            out.append(
                f"{datetime(2024, 5, 1) + timedelta(seconds=rng.randint(0, 9**6))}"
                f" INFO {rng.choice(WORDS)}: listening on 127.0.0.1:{port}"
            )
        elif r < 0.45:
            out.append(
                f"DEBUG [{pid}] {rng.choice(VERBS)} {rng.choice(WORDS)} id={ident} took {rng.random():.3f}s"
            )
        elif r < 0.6:
            out.append(
                f"  /tmp/tmp{ident}/{rng.choice(WORDS)}/{rng.choice(WORDS)}.json written ({rng.randint(1, 9999)} bytes)"
            )
        elif r < 0.75:
            out.append(
                f"WARNING: {rng.choice(WORDS)} deprecated, use {rng.choice(WORDS)}_{rng.choice(VERBS)} instead"
            )
        elif r < 0.9:
            out.append(
                f"{rng.choice(['GET', 'POST', 'PUT'])} /api/v1/{rng.choice(WORDS)}/{rng.randint(1, 999)} -> {rng.choice([200, 201, 204])}"
            )
        else:
            out.append(f"connecting to postgres://test@localhost:{port}/{rng.choice(WORDS)}_test ... ok")
    return out


# ---- failure causes -----------------------------------------------------------------------------
# Each returns the error lines of one failure; `rng` varies values, `test` and `style` shape it.

FLAKY = {
    "conn_reset": lambda rng, s: [
        "requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"
        if s == "pytest"
        else f"read tcp 10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}:{rng.randint(30000, 60000)}->10.1.0.{rng.randint(1, 254)}:443: read: connection reset by peer"
        if s == "go"
        else "FetchError: request to https://api.internal/v1 failed, reason: socket hang up (ECONNRESET)"
    ],
    "timeout": lambda rng, s: [
        f"TimeoutError: timed out after {rng.choice([10, 30, 60])}s waiting for {rng.choice(WORDS)} to become ready"
        if s in ("pytest", "tap")
        else f"context deadline exceeded (Client.Timeout exceeded while awaiting headers) after {rng.randint(5, 60)}s"
        if s == "go"
        else f'thrown: "Exceeded timeout of {rng.choice([5000, 10000])} ms for a test."'
    ],
    "port_in_use": lambda rng, s: [
        f"OSError: [Errno 98] Address already in use: ('127.0.0.1', {rng.randint(1024, 65000)})"
        if s != "go"
        else f"listen tcp 127.0.0.1:{rng.randint(1024, 65000)}: bind: address already in use"
    ],
    "dns": lambda rng, s: [
        f"socket.gaierror: [Errno -3] Temporary failure in name resolution ({rng.choice(WORDS)}.svc.cluster.local)"
        if s != "go"
        else f"dial tcp: lookup {rng.choice(WORDS)}.svc.cluster.local on 10.96.0.10:53: server misbehaving"
    ],
    "oom": lambda rng, s: [
        f"Killed (signal 9): process {rng.randint(100, 99999)} exceeded memory limit of {rng.choice([2, 4, 8])}Gi",
        "ERROR: Job failed: OOMKilled",
    ],
    "registry": lambda rng, s: [
        f"Error response from daemon: toomanyrequests: You have reached your pull rate limit (image {rng.choice(WORDS)}:{rng.randint(1, 20)}.{rng.randint(0, 9)})",
    ],
    "download": lambda rng, s: [
        f"curl: (56) Recv failure: Connection reset by peer while downloading https://mirror.example.org/{rng.choice(WORDS)}-{rng.randint(1, 40)}.qcow2",
        f"Exception: unable to download image (returned: {rng.choice([18, 56, 28])})",
    ],
    "selenium_stale": lambda rng, s: [
        f"selenium.common.exceptions.StaleElementReferenceException: Message: stale element reference: element is not attached to the page document (#{rng.choice(WORDS)}-{rng.randint(1, 9)})"
        if s != "go"
        else f"chromedp: node {rng.randint(1, 300)} not found: could not find node with given id"
    ],
    # races whose message looks like a real assertion: only recurrence tells them apart
    "race_count": lambda rng, s: [
        f"AssertionError: expected {rng.randint(3, 5)} events in queue, got {rng.randint(0, 2)}"
        if s != "go"
        else f"expected {rng.randint(3, 5)} events in queue, got {rng.randint(0, 2)}"
    ],
    "race_order": lambda rng, s: [
        "AssertionError: Lists differ: ['a', 'b', 'c'] != ['b', 'a', 'c'] (order of concurrent callbacks)"
        if s != "jest"
        else 'Expected: ["a", "b", "c"]  Received: ["b", "a", "c"]  (callbacks resolved out of order)'
    ],
    "runner_lost": lambda rng, s: [
        f"ERROR: Job failed (system failure): error during connect: Post http://docker:2375/v1.{rng.randint(24, 44)}/containers/create: EOF",
    ],
    "flaky_clock": lambda rng, s: [
        f"AssertionError: token expired {rng.randint(1, 3)}s early: clock skew on runner {rng.randint(1, 30)}",
    ],
}


def _real_bug(rng: random.Random, style: str, n: int) -> list[str]:
    """A new real bug: its own message, specific values and names."""
    a, b, v = rng.choice(WORDS), rng.choice(WORDS), rng.choice(VERBS)
    x, y = rng.randint(0, 500), rng.randint(0, 500)
    kind = rng.choice(
        ["assert_eq", "attr", "type", "key", "import", "snapshot", "status", "value", "timeout_bug", "null"]
    )
    if kind == "assert_eq":
        msg = {
            "go": f"{a}_test.go:{rng.randint(10, 400)}: {v}{b.title()}() = {x}, want {y}",
            "jest": f"expect(received).toBe(expected) // Object.is equality  Expected: {x}  Received: {y}",
        }.get(style, f"AssertionError: assert {x} == {y}  where {x} = {v}_{b}({a}_id={n})")
    elif kind == "attr":
        msg = f"AttributeError: '{a.title()}' object has no attribute '{v}_{b}'"
    elif kind == "type":
        msg = {
            "go": f"./{a}.go:{rng.randint(10, 400)}:{rng.randint(2, 40)}: cannot use {b} (variable of type {a.title()}) as {b.title()} value",
            "jest": f"TypeError: Cannot read properties of undefined (reading '{b}')",
        }.get(style, f"TypeError: {v}_{b}() missing 1 required positional argument: '{a}'")
    elif kind == "key":
        msg = f"KeyError: '{a}_{b}'" if style != "go" else f"panic: assignment to entry in nil map [{a}.{b}]"
    elif kind == "import":
        msg = {
            "go": f"undefined: {a}.{v.title()}{b.title()}",
            "jest": f"Cannot find module './{a}/{b}' from 'src/{a}.ts'",
        }.get(style, f"ImportError: cannot import name '{v}_{b}' from '{a}.{b}'")
    elif kind == "snapshot":
        msg = f'Snapshot `{a} {v}s {b} {n}` mismatched: - "{b}": {x}  + "{b}": {y}'
    elif kind == "status":
        msg = f"AssertionError: expected status {rng.choice([200, 201])} for POST /api/{a}/{b}, got {rng.choice([400, 422, 500])}: {{'error': '{v} {b} invalid'}}"
    elif kind == "value":
        msg = (
            f"ValueError: invalid literal for {a}.{b}: '{x}{b[:3]}'"
            if style != "go"
            else f'strconv.Atoi: parsing "{b}{x}": invalid syntax'
        )
    elif kind == "timeout_bug":  # a real bug that shows as a timeout: hard case
        msg = f"TimeoutError: {v}_{b} never returned: deadlock between {a}_lock and {b}_lock (after 30s)"
    else:
        msg = f"TypeError: 'NoneType' object is not subscriptable ({a}.{v}_{b} line {rng.randint(10, 300)})"
    return [msg]


def _wrap(rng: random.Random, style: str, test: str, error: list[str], number: int) -> str:
    before = _noise(rng, style, rng.randint(3, 25))
    after = _noise(rng, style, rng.randint(0, 4))
    mod = test.split("::")[0] if "::" in test else f"{test.split()[0]}.py"
    if style == "pytest":
        func = test.split("::")[-1]
        body = [
            f"_{'_' * 20} {func} {'_' * 20}",
            "",
            *[f"    {line}" for line in before[-3:]],
            "",
            f"{mod}:{rng.randint(10, 400)}: in {func}",
            f"    result = client.{rng.choice(VERBS)}_{rng.choice(WORDS)}(payload)",
            *[f"E   {line}" for line in error],
            "----------------------------- Captured log call ------------------------------",
            *before,
            f"FAILED {test} - {error[0][:80]}",
        ]
    elif style == "go":
        body = [
            f"=== RUN   {test}",
            *[f"    {line}" for line in before],
            *[f"    {mod.replace('.py', '_test.go')}:{rng.randint(10, 400)}: {line}" for line in error],
            f"--- FAIL: {test} ({rng.random() * 30:.2f}s)",
        ]
    elif style == "jest":
        body = [
            f"  ● {test}",
            "",
            *[f"    {line}" for line in error],
            "",
            f"      at Object.<anonymous> (src/{rng.choice(WORDS)}.test.ts:{rng.randint(10, 300)}:{rng.randint(1, 40)})",
            "      at processTicksAndRejections (node:internal/process/task_queues:95:5)",
            *[f"    console.log {line}" for line in before],
        ]
    else:
        body = [
            "# " + "-" * 70,
            f"# {test}",
            "#",
            *before,
            "Traceback (most recent call last):",
            f'  File "/build/test/verify/{mod}", line {rng.randint(10, 400)}, in {test.split()[0]}',
            f"    b.wait_visible('#{rng.choice(WORDS)}')",
            *error,
            f"not ok {number} {test} duration: {rng.randint(5, 600)}s",
        ]
    return "\n".join(body + after)


PROJECTS = [("api", "pytest"), ("gateway", "go"), ("web", "jest"), ("cockpit", "tap")]


def generate(
    n: int = 1200, seed: int = 7, flaky_share: float = 0.5, days: int = 60
) -> Iterator[dict[str, Any]]:
    """``n`` labelled failures in time order."""
    rng = random.Random(seed)
    tests = {p: _test_names(rng, style, 60) for p, style in PROJECTS}
    # per project, some tests are prone to some flaky causes (flakes concentrate on some tests)
    causes = list(FLAKY)
    prone = {p: {t: rng.sample(causes, 2) for t in rng.sample(tests[p], 20)} for p, _ in PROJECTS}
    start = datetime(2024, 5, 1)
    bugs: list[dict[str, Any]] = []  # active real bugs
    for i in range(n):
        when = start + timedelta(seconds=int(i * days * 86400 / n))
        project, style = rng.choice(PROJECTS)
        if rng.random() < flaky_share:
            if rng.random() < 0.7:
                test = rng.choice(list(prone[project]))
                cause = rng.choice(prone[project][test])
            else:
                test, cause = rng.choice(tests[project]), rng.choice(causes)
            error, label = FLAKY[cause](rng, style), "flake"
        else:
            bugs = [b for b in bugs if b["until"] > i and b["project"] == project] + [
                b for b in bugs if b["project"] != project and b["until"] > i
            ]
            mine = [b for b in bugs if b["project"] == project]
            if not mine or rng.random() < 0.35:
                bug = {
                    "project": project,
                    "tests": rng.sample(tests[project], rng.randint(1, 3)),
                    "error": _real_bug(rng, style, i),
                    "until": i + rng.randint(5, 60),
                }
                bugs.append(bug)
                mine.append(bug)
            bug = rng.choice(mine)
            test, error, label, cause = rng.choice(bug["tests"]), bug["error"], "real", "bug"
        yield {
            "status": "failure",
            "test": test,
            "log": _wrap(rng, style, test, error, rng.randint(1, 300)),
            "context": f"{project}/{style}",
            "date": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "label": label,
            "cause": cause,
        }


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
    for record in generate(n):
        sys.stdout.write(json.dumps(record) + "\n")
