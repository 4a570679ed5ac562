"""Peak memory of ``flakebot split`` on a 1 GB log, and on a 256 MB log that is one endless line.

    python bench/split_memory.py [--size-mb 1024]

Builds the logs in a temporary directory from the real Mozilla logs in
``../shared/data/treeherder-logs/`` (concatenated until the size is reached), runs
``python -m bot split LOG`` on each in a subprocess with its output sent to /dev/null, and reads the
child's peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, measured one child at a time). The goal
is under 200 MB whatever the size.
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._shared import shared  # noqa: E402

MB = 1e6


def build_log(path: Path, sources: list[Path], size: int) -> int:
    written = 0
    with open(path, "wb") as out:
        while written < size:
            for source in sources:
                data = gzip.decompress(source.read_bytes())
                out.write(data)
                written += len(data)
                if written >= size:
                    break
    return written


def build_endless_line(path: Path, size: int) -> int:
    piece = b"x" * (1 << 20)
    with open(path, "wb") as out:
        out.write(b"not ok 1 endless output\n")
        for _ in range(size // len(piece)):
            out.write(piece)
    return path.stat().st_size


def measure(log: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, the command's summary line) of one `flakebot split` run."""
    script = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run([sys.executable, '-m', 'bot', 'split', sys.argv[1]],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
        "elapsed = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(elapsed, peak, done.returncode, (done.stderr.strip().splitlines() or [''])[-1], sep='\\t')\n"
    )
    # a fresh parent per run, so RUSAGE_CHILDREN holds exactly one child
    out = subprocess.run(
        [sys.executable, "-c", script, str(log)], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    elapsed, peak_kb, code, summary = out.rstrip("\n").split("\t", 3)
    if code != "0":
        raise SystemExit(f"flakebot split failed on {log}: {summary}")
    return float(elapsed), int(peak_kb) / 1024, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the log built from real logs")
    args = parser.parse_args()
    sources = sorted(shared("data", "treeherder-logs").glob("*.gz"))
    print(f"{'log':<34} {'MB':>7} {'seconds':>8} {'MB/s':>7} {'peak RSS MB':>12}  summary")
    with tempfile.TemporaryDirectory(prefix="flakebot-bench-") as tmp:
        cases = [
            (f">= {args.size_mb} MiB of Mozilla logs", lambda p: build_log(p, sources, args.size_mb << 20)),
            ("256 MB in one endless line", lambda p: build_endless_line(p, 256 << 20)),
        ]
        for label, build in cases:
            log = Path(tmp) / "job.log"
            size = build(log)
            seconds, peak, summary = measure(log)
            print(
                f"{label:<34} {size / MB:>7.0f} {seconds:>8.1f} {size / MB / seconds:>7.1f} "
                f"{peak:>12.1f}  {summary}"
            )
            log.unlink()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
