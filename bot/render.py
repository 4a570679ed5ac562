"""Rendering text from the jinja2 templates in ``templates/``.

Everything flakebot writes to a forge or a report is rendered here, and every rendered text goes
through :func:`bot.redact.mask_secrets`: a secret that leaked into a CI log never reaches a comment.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape

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


# Text that a pull request's author or a CI log controls (test, job, workflow and branch names, log
# lines, messages) is rendered by one of the filters below, and never as raw Markdown. The rules hold on
# GitHub (cmark-gfm) and GitLab (GLFM, the same CommonMark and GFM table rules); docs/hardening.md, 10.
#  * one line: line breaks become spaces, so no value starts a block (heading, list, quote, fence);
#  * control and bidirectional-override characters are dropped (they hide or reorder what is shown);
#  * ``text``: every character that opens inline Markdown, HTML or an entity is backslash-escaped,
#    so nothing becomes a tag (``<img>`` loads nothing), a link, an image, emphasis or a math span;
#  * ``code``: an inline code span whose fence outgrows any backtick run inside (no HTML, no mention,
#    no reference is processed in code on either forge);
#  * both: ``|`` is escaped, so a value cannot end its table cell, and ``@`` is followed by a zero-width
#    space outside code, so ``@user``, ``@org/team``, ``@all`` mention no one; so is a URL's scheme
#    or ``www``, so a URL in a log line is not made a link in flakebot's voice.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_LINE_BREAKS = re.compile("[\r\n\x85\u2028\u2029]+")
# ``_`` between two letters or digits (``snake_case``) never opens emphasis, so it is left alone
_MARKDOWN = re.compile(r"[\\`*\[\]<>!|~$&{}]|(?<![^\W_])_|_(?![^\W_])")
_MENTION = re.compile(r"@(?=\w)")
_AUTOLINK = re.compile(r"(?i)\b(www|[a-z][a-z0-9+.-]*:(?=//)|mailto:|xmpp:)")
ZWSP = "\u200b"


def one_line(value: Any) -> str:
    """``value`` as one line of visible characters."""
    return _INVISIBLE.sub("", _LINE_BREAKS.sub(" ", str(value)))


def md_text(value: Any, limit: int | None = None) -> str:
    """Plain text shown as itself in Markdown: in a table cell, a heading, a list item or prose."""
    text = one_line(value)
    if limit is not None:
        text = truncate_middle(text, limit, "…")
    text = _AUTOLINK.sub(lambda m: m.group(1) + ZWSP, _MENTION.sub("@" + ZWSP, text))
    text = _MARKDOWN.sub(r"\\\g<0>", text)
    return "\\" + text if text[:1] in ("-", "+", "=", "#") else text  # never a list item, underline, heading


def md_code(value: Any, limit: int = 300, *, cell: bool = False) -> str:
    """Inline Markdown code that any text stays inside: its backtick run outgrows those in the text
    (a test name from a comment or a CI log cannot close it early). ``cell=True`` (filter
    ``code_cell``) escapes ``|`` for a table cell, where GFM reads ``\\|`` as ``|`` even in code."""
    text = truncate_middle(one_line(value), limit, "…")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    if cell:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def md_prose(value: Any) -> str:
    """A sentence flakebot wrote around names it quotes in single backticks (an action, a note, a
    reason): each quoted part is shown as code, the rest as text. A name that brings its own backticks
    only moves where code starts and ends; every part is still rendered by ``md_code`` or ``md_text``."""
    parts = one_line(value).strip().split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: the last part is text, with its backtick shown
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    return "".join(md_code(p) if i % 2 else md_text(p) for i, p in enumerate(parts))


def md_mention(login: Any) -> str:
    """``@login`` for a forge login (a reply to the person who asked), plain text for anything else."""
    text = str(login)
    return "@" + text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", text) else md_text(text)


def md_cell(value: Any) -> str:
    """A value made safe for one Markdown table cell (the ``cell`` filter: plain text)."""
    return md_text(value)


def safe_url(value: Any) -> str:
    """An http(s) URL with every character that could end a link destination or an HTML attribute
    percent-encoded; "" for anything else (``javascript:``, ``data:``, relative paths)."""
    url = one_line(value or "").strip()
    if not re.match(r"(?i)https?://[^/\s]", url):
        return ""
    return quote(url, safe="/:?#[]@!$&'()*+,;=%~-._")


def md_link(label: str, url: Any) -> str:
    """``[label](<url>)`` when ``url`` is a safe http(s) URL, the bare label otherwise. ``label`` is
    Markdown already (rendered by ``text`` or ``code``)."""
    target = safe_url(url)
    return f"[{label}](<{target}>)" if target else label


_NAME_PARTS = re.compile(r"(::|[/.\[(,])")


def html_breakable(value: Any) -> Markup:
    """A test name as escaped HTML with a line-break opportunity (``<wbr>``) after each separator of its
    parts (``/``, ``::``, ``.``, ``[``, ``(``, ``,``): a long name wraps between its parts, not inside
    an identifier (the page's CSS breaks inside one only when it alone is wider than the column)."""
    return Markup(_NAME_PARTS.sub(r"\1<wbr>", str(escape(str(value)))))  # noqa: S704 - escaped first


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
    env.filters["text"] = md_text
    env.filters["code"] = md_code
    env.filters["code_cell"] = lambda value, limit=300: md_code(value, limit, cell=True)
    env.filters["prose"] = md_prose
    env.filters["mention"] = md_mention
    env.filters["link"] = md_link
    env.filters["url"] = safe_url
    env.filters["breakable"] = html_breakable
    env.filters["fence"] = code_block
    env.filters["truncate_middle"] = truncate_middle
    env.filters["pct"] = lambda x: "–" if x is None else f"{100 * float(x):.0f}%"
    return env


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``; secrets are masked in the result."""
    return mask_secrets(environment().get_template(template).render(**context))
