"""Names a pull request's author controls, rendered through the real templates (hardening 10).

Test names, job names, workflow names, log lines and messages reach the PR comment, the quarantine
issue and the chat-ops replies. Whatever they contain, the rendered Markdown (cmark-gfm, as GitHub
renders it) keeps its table shape, shows no tag flakebot did not write (an ``<img>`` would load),
links nowhere but the forge's own URLs and mentions no one, and still shows the name as it is.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot import scoring
from bot.comment import render_comment, run_section
from bot.config import RepoConfig
from bot.decide import decide
from bot.forge.base import Repo, Run
from bot.quarantine import Candidate, FailureLink, QuarantineConfig, render_body
from bot.render import md_code, md_prose, md_text, one_line, render, safe_url
from bot.run.results import Judgement, ModelVerdict
from bot.verdict import Verdict
from tests.markdown_check import render_markdown

HOSTILE = [
    "tests/t.py::test_x` <img src=https://evil.example/p.png> @alice `y",
    "tests/t.py::test_x[<img src=x onerror=alert(1)>]",
    "test ![pixel](https://evil.example/p.png) [click](https://evil.example)",
    "a | b | c",
    "@octo-org/admins and @all please look",
    "line one\n# heading\n</details><img src=x>\n```\nfence",
    "tail backslash \\",
    "\\| escaped pipe `` ``` ",
    "&lt;img src=x&gt; &#64;alice",
    "math $`\\href{https://evil.example}{x}`$ and $$x$$",
    "bidi \u202egnp.exe\u202c and zero\u200bwidth",
    "<details open><summary>x</summary>",
    "-> starts like a list",
    "*bold* _em_ ~~gone~~ {+added+}",
]
SAFE_LINKS = ("https://github.com/octo/demo/",)

REPO = Repo("github", "octo/demo", default_branch="main")


def judged(test: str, job: str, text: str) -> Judgement:
    return Judgement(
        test=test, job=job, job_url="https://github.com/octo/demo/actions/runs/7/job/1",
        verdict=Verdict("flake", f"looks like a flake (nearest: {text})", f"fails 1 of 3 runs ({text})", "model"),
        model=ModelVerdict.from_explain({"cluster": 1, "cluster_size": 4, "cluster_flake_share": 0.5, "distance": 0.2,
               "nearest": [{"test": text, "label": "flake", "distance": 0.2}]}),
        lines=(1, 2), excerpt=f"E   {text}",
    )  # fmt: skip


def comment_for(name: str) -> str:
    run = Run(repo=REPO, id=7, sha="abcdef1234567", branch=name, attempt=1, conclusion="failure",
              html_url="https://github.com/octo/demo/actions/runs/7", name=name)  # fmt: skip
    failures = [judged(name, name, name), judged("tests/plain.py::test_ok", "tests", "plain")]
    decision = decide(failures, RepoConfig(), 1)
    actions = [f"Opened quarantine issue #3 for `{name}`.", f"Note: the log of {name} was cut at 8 MB."]
    section = run_section(run, failures, decision, actions)
    return render_comment({name: section}, config_error=f"{name} is not a setting")


def assert_harmless(markdown: str, name: str) -> None:
    shown = render_markdown(markdown)
    assert shown.foreign_tags == set(), shown.html
    assert shown.mentions == [], shown.mentions
    assert all(link.startswith(SAFE_LINKS) for link in shown.links), shown.links
    assert all(cells == 5 for cells in shown.rows if cells != 2), shown.rows  # the comment's table
    # and the name is still there to read, in code or as text (one line, nothing invisible)
    wanted = one_line(name).strip()
    assert any(wanted in code for code in shown.codes) or wanted in shown.visible.replace("\u200b", "")


@pytest.mark.parametrize("name", HOSTILE)
def test_the_pr_comment_shows_hostile_names_as_they_are_and_nothing_else(name):
    body = comment_for(name)
    assert_harmless(body, name)
    shown = render_markdown(body)
    assert shown.rows.count(5) == 3  # a header and two failures: no cell was split or merged
    assert one_line(name) in shown.codes  # the test and job name, each in code


@pytest.mark.parametrize("name", HOSTILE)
def test_the_quarantine_issue_shows_hostile_names_as_they_are(name):
    score = scoring.score_runs(
        [scoring.Run("failed", revision="r1"), scoring.Run("passed", revision="r1")] * 5
    )
    link = FailureLink(url="https://github.com/octo/demo/actions/runs/7", created_at=name, revision=name,
                       message=name)  # fmt: skip
    body = render_body(Candidate(test=name, score=score, failures=[link], override="quarantine",
                                 override_by=name), QuarantineConfig())  # fmt: skip
    shown = render_markdown(body)
    assert shown.foreign_tags == set() and shown.mentions == []
    assert all(link.startswith(SAFE_LINKS) for link in shown.links)
    assert shown.rows[0] == 2 and set(shown.rows[1:7]) == {2}  # the summary table keeps two columns
    assert one_line(name) in shown.codes


@pytest.mark.parametrize("name", HOSTILE[:6])
def test_the_explain_reply_shows_hostile_names_as_they_are(name):
    row = {"verdict": "flake", "job": name, "job_url": "javascript:alert(1)", "labelled_by": name, "was": name,
           "log": name, "history": name, "cluster": None, "distance": None, "nearest": [{"test": name, "label": name, "distance": 0.1}],
           "known_issue": {"issue": 3, "slug": name}}  # fmt: skip
    body = render("chatops_explain.md.j2", test=name, rows=[row], labels=[f"flake, labelled by {name}"],
                  scores=[], override={"override": "quarantine", "by": name, "at": name}, change_word="pull request")  # fmt: skip
    shown = render_markdown(body)
    assert shown.foreign_tags == set() and shown.mentions == [] and shown.links == []
    assert one_line(name) in shown.codes


def test_a_reply_to_a_login_mentions_it_and_nothing_else():
    assert render("chatops_denied.md.j2", user="octocat", forge="github").startswith("@octocat thanks!")
    denied = render_markdown(render("chatops_denied.md.j2", user="x @all <img src=y>", forge="gitlab"))
    assert denied.foreign_tags == set() and denied.mentions == []


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("a|b", "a\\|b"),
        ("<img src=x>", "\\<img src=x\\>"),
        ("@alice", "@\u200balice"),
        ("x`y`", "x\\`y\\`"),
        ("two\nlines", "two lines"),
        ("- item", "\\- item"),
    ],
)
def test_text_escapes_what_would_become_markdown(text, markdown):
    assert md_text(text) == markdown


def test_code_in_a_table_cell_escapes_its_pipes_only_there():
    assert md_code("a|b", cell=True) == "`a\\|b`" and md_code("a|b") == "`a|b`"


def test_prose_keeps_the_bots_own_code_spans_and_escapes_the_rest():
    assert md_prose("Opened issue #3 for `tests/a.py::t`.") == "Opened issue #3 for `tests/a.py::t`."
    assert md_prose("for `x` <b>") == "for `x` \\<b\\>"
    assert md_prose("odd ` backtick") == "odd \\` backtick"


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://github.com/o/r/actions/runs/1", "https://github.com/o/r/actions/runs/1"),
        ("https://h/x> [y](z) <b", "https://h/x%3E%20[y](z)%20%3Cb"),
        ("javascript:alert(1)", ""),
        ("data:text/html,x", ""),
        ("/relative", ""),
    ],
)
def test_only_http_urls_are_linked_and_none_can_end_its_link(url, safe):
    assert safe_url(url) == safe


@settings(max_examples=300, deadline=None)
@given(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
    | st.text("`|\\<>@_*[]!&#$~ -:/wx", max_size=30)
)
def test_any_text_in_a_table_cell_stays_in_it_and_reads_as_itself(text):
    row = f"| {md_text(text)} | {md_code(text, cell=True)} |"
    shown = render_markdown(f"| a | b |\n|---|---|\n{row}\n")
    assert shown.rows == [2, 2] and shown.foreign_tags == set() and shown.mentions == []
    assert shown.links == []
    cells = shown.html.split("<td>")[1:]
    assert len(cells) == 2
    wanted = one_line(text)
    assert _cell_text(cells[0]).replace("\u200b", "").strip() == wanted.strip()
    assert shown.codes[-1].strip() == wanted.strip()


def _cell_text(html: str) -> str:
    from html import unescape

    return unescape(re.sub(r"<[^>]+>", "", html.split("</td>")[0]))
