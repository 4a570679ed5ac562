"""The README's examples hold together (hardening 18): a command never reads a file that no earlier
line of its example wrote under that name."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def shell_blocks(text: str) -> list[list[str]]:
    return [
        [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]
        for block in re.findall(r"```sh\n(.*?)```", text, re.S)
    ]


def test_training_reads_what_the_example_wrote():
    (block,) = [
        b for b in shell_blocks(README.read_text()) if any(line.startswith("flakebot split") for line in b)
    ]
    written: set[str] = set()
    for line in block:
        words = shlex.split(line)
        if words[:2] == ["flakebot", "train"]:
            inputs = [w for w in words[2:] if w.endswith((".jsonl", ".jsonl.gz"))]
            assert inputs and set(inputs) <= written, f"{line!r} reads {inputs}, the example wrote {written}"
        if ">" in words:
            written.add(words[words.index(">") + 1])
    assert written  # the example does write its records first
