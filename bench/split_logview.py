"""How many of the error lines Treeherder found in a log end up in the splitter's records.

    python bench/split_logview.py

For each ``../shared/data/treeherder-logs/*.logview.json`` (Treeherder's error lines for its log), split
the log (``--format auto``) and count, per log and in total, the error lines whose text is inside a
record's ``log`` ("in a record"), and those whose line lies within a record's ``lines`` range ("in a
range": the record covers the line even if its middle was cut). Treeherder strips the ``[task …]``
prefix and numbers lines from 0 with one extra leading line, so each error line is located by its text
next to the given number before it is compared.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._shared import shared  # noqa: E402
from bot.split import split_log  # noqa: E402


def locate(lines: list[str], number: int, text: str) -> int | None:
    """1-based line number of ``text`` near Treeherder's ``number``."""
    for guess in (number - 1, number, number + 1, number - 2, number + 2):
        if 1 <= guess <= len(lines) and text in lines[guess - 1]:
            return guess
    return None


def main() -> int:
    logging.getLogger("bot").setLevel(logging.ERROR)
    views = sorted(shared("data", "treeherder-logs").glob("*.logview.json"))
    print(f"{'log':<28} {'errors':>6} {'in a record':>11} {'in a range':>10} {'records':>7}  missed (first)")
    totals = [0, 0, 0, 0]
    for view in views:
        log = view.with_name(view.name.removesuffix(".logview.json") + ".log.gz")
        errors = json.loads(view.read_text())["errors"]
        data = gzip.decompress(log.read_bytes())
        lines = data.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
        records = list(split_log([data]))
        in_text = in_range = 0
        missed = []
        for error in errors:
            # Treeherder shows the line without its '[task …] ' prefix
            text = error["line"].strip()
            located = locate(lines, error["linenumber"], text)
            if any(text in r["log"] for r in records):
                in_text += 1
            else:
                missed.append(text[:60])
            if located and any(r.get("lines") and r["lines"][0] <= located <= r["lines"][1] for r in records):
                in_range += 1
        for i, value in enumerate((len(errors), in_text, in_range, len(records))):
            totals[i] += value
        name = view.name.removesuffix(".logview.json")
        print(
            f"{name:<28} {len(errors):>6} {in_text:>11} {in_range:>10} {len(records):>7}  "
            f"{missed[0] if missed else ''}"
        )
    errors, in_text, in_range, records = totals
    print(
        f"{'total':<28} {errors:>6} {in_text:>11} {in_range:>10} {records:>7}  "
        f"({100 * in_text / errors:.0f}% in a record, {100 * in_range / errors:.0f}% in a range)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
