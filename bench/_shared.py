"""Where the benchmarks find ../shared (the project's data), with a clear message when it is missing."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

CANDIDATES = [
    Path(os.environ["FLAKEBOT_SHARED"]) if os.environ.get("FLAKEBOT_SHARED") else None,
    Path(__file__).resolve().parents[2] / "shared",
    Path("/work/shared"),
]


def shared(*parts: str) -> Path:
    """The path of a file under shared/, or exit with a message saying what is missing."""
    for base in CANDIDATES:
        if base is not None and (base / Path(*parts)).exists():
            return base / Path(*parts)
    sys.exit(
        f"benchmark data missing: shared/{'/'.join(parts)} was not found next to the repository "
        "(../shared) nor in /work/shared; set FLAKEBOT_SHARED to the folder that holds it"
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: list[dict], title: str = "") -> str:
    """A plain text table of dicts (same keys), for benchmark output."""
    if title:
        title = title + "\n"
    if not rows:
        return title + "(no rows)\n"
    keys = list(rows[0])
    cells = [[str(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True))  # noqa: E731
    return title + "\n".join([line(keys), line(["-" * w for w in widths]), *map(line, cells)]) + "\n"
