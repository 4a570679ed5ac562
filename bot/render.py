"""Rendering text from the jinja2 templates in ``templates/``.

Everything flakebot writes to a forge or a report is rendered here, and every rendered text goes
through :func:`bot.redact.mask_secrets`: a secret that leaked into a CI log never reaches a comment.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from bot.redact import mask_secrets


def templates_dir() -> Path:
    """``bot/templates`` in an installed wheel, the repository's ``templates/`` otherwise."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("flakebot's templates/ directory is missing")


def truncate_middle(text: str, limit: int, marker: str = "\n[… {n} characters cut …]\n") -> str:
    """Keep the head and the tail of ``text`` within ``limit`` characters, saying what was cut."""
    if len(text) <= limit:
        return text
    note = marker.format(n=len(text) - limit)
    keep = max(0, limit - len(note))
    head = keep // 3
    return text[:head] + note + text[len(text) - (keep - head) :]


def code_block(text: str) -> str:
    """A Markdown code block that the text cannot close early (its fence outgrows any inside)."""
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def md_code(value: Any, limit: int = 300) -> str:
    """Inline Markdown code that any text stays inside: its backtick run outgrows those in the text
    (a test name from a comment or a CI log cannot close it early). Not for table cells (use ``cell``)."""
    text = truncate_middle(re.sub(r"[\r\n]+", " ", str(value)), limit, "…")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell(value: Any) -> str:
    """A value made safe for one Markdown table cell."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = md_cell
    env.filters["code"] = md_code
    env.filters["fence"] = code_block
    env.filters["truncate_middle"] = truncate_middle
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * float(x):.0f}%"
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``; secrets are masked in the result."""
    return mask_secrets(environment().get_template(template).render(**context))
