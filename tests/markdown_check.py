"""What a forge would show of a Markdown text: rendered by cmark-gfm, the engine GitHub renders comments
with (GitLab's GLFM follows the same CommonMark and GFM table rules), with raw HTML let through as the
forges let ``<img>``, ``<a>``, ``<details>`` through. Used by the tests of hostile names (hardening 10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

# what flakebot's own templates produce; any other tag came from a name, a log line or a message
OWN_TAGS = {"h2", "h3", "p", "strong", "em", "code", "pre", "table", "thead", "tbody", "tr", "th", "td",
            "a", "ul", "li", "details", "summary", "sub", "blockquote", "br"}  # fmt: skip
MENTION = re.compile(r"(?<![\w/`])[@＠]\w")  # @user, @org/team, @all (GitLab)


@dataclass
class Rendered:
    html: str
    tags: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # cells in each table row
    codes: list[str] = field(default_factory=list)  # text of each inline code span
    text: list[str] = field(default_factory=list)  # text outside code, where mentions are made

    @property
    def foreign_tags(self) -> set[str]:
        return set(self.tags) - OWN_TAGS

    @property
    def mentions(self) -> list[str]:
        return [t for t in self.text if MENTION.search(t)]

    @property
    def visible(self) -> str:
        return "".join(self.text)


class _Reader(HTMLParser):
    def __init__(self, out: Rendered) -> None:
        super().__init__(convert_charrefs=True)
        self.out, self.code, self.cells = out, 0, 0

    def handle_starttag(self, tag, attrs):
        self.out.tags.append(tag)
        if tag == "a":
            self.out.links.append(dict(attrs).get("href") or "")
        elif tag in ("code", "pre"):
            self.code += 1
            if tag == "code":
                self.out.codes.append("")
        elif tag == "tr":
            self.cells = 0
        elif tag in ("td", "th"):
            self.cells += 1

    def handle_endtag(self, tag):
        if tag in ("code", "pre"):
            self.code -= 1
        elif tag == "tr":
            self.out.rows.append(self.cells)

    def handle_data(self, data):
        if self.code and self.out.codes:
            self.out.codes[-1] += data
        elif not self.code:
            self.out.text.append(data)


def render_markdown(markdown: str) -> Rendered:
    out = Rendered(cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE))
    _Reader(out).feed(out.html)
    return out
