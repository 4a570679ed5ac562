"""Run flakebot's benchmarks: ``python -m bench [--list] [NAME ...] [-- ARGS]`` (``make bench`` runs them all).

A benchmark is a module ``bench/NAME.py`` with a top-level ``main()`` (modules whose name starts with
``_`` are helpers). Each named benchmark, or every one when none is named, runs in a process of its
own (``python -m bench.NAME``, so memory and CPU figures are its alone) and prints its table; ARGS
after ``--`` are passed to each. A summary of the time each took and how it ended comes last; the
exit status is 1 when one of them failed.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    summary: str  # the first line of the module's docstring


def discover(folder: Path = FOLDER) -> list[Benchmark]:
    """The benchmarks in ``folder``, by name: modules with a top-level ``main()``, helpers excluded."""
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "main" for n in tree.body):
            doc = (ast.get_docstring(tree) or "").strip()
            found.append(Benchmark(path.stem, doc.splitlines()[0] if doc else ""))
    return found


def select(benchmarks: list[Benchmark], names: list[str]) -> list[Benchmark]:
    """The named benchmarks in the order given (``.py`` suffixes and ``bench/`` prefixes allowed), or all."""
    if not names:
        return benchmarks
    by_name = {b.name: b for b in benchmarks}
    wanted = [Path(n).name.removesuffix(".py") for n in names]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(
            f"no such benchmark: {', '.join(unknown)} (there are: {', '.join(by_name)}; see python -m bench --list)"
        )
    return [by_name[n] for n in wanted]


def listing(benchmarks: list[Benchmark]) -> str:
    width = max((len(b.name) for b in benchmarks), default=0)
    return "\n".join(f"{b.name.ljust(width)}  {b.summary}" for b in benchmarks)


def run(benchmark: Benchmark, args: list[str]) -> tuple[int, float]:
    """Run one benchmark in its own process, its output straight to ours; (exit status, seconds)."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", f"bench.{benchmark.name}", *args], cwd=FOLDER.parent)
    return done.returncode, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    options = parser.parse_args(argv)
    benchmarks = discover()
    if options.list:
        print(listing(benchmarks))
        return 0
    chosen = select(benchmarks, options.names)
    results = []
    for benchmark in chosen:
        print(f"\n=== {benchmark.name}: {benchmark.summary}\n", flush=True)
        status, seconds = run(benchmark, extra)
        results.append((benchmark.name, status, seconds))
    print("\n=== summary")
    for name, status, seconds in results:
        print(f"{name:<22} {seconds:7.1f} s  {'ok' if status == 0 else f'FAILED (exit status {status})'}")
    return 1 if any(status for _, status, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
