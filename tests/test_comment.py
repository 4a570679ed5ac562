from bot.comment import LIMIT, MARKER, passed_section, render_comment, run_section
from bot.config import RepoConfig
from bot.decide import decide
from bot.forge.base import Repo, Run
from bot.run.results import Judgement, ModelVerdict
from bot.verdict import Verdict
from tests.markdown_check import render_markdown

REPO = Repo("github", "octo/demo", default_branch="main")


def run(attempt=1, name="CI"):
    return Run(repo=REPO, id=7, sha="abcdef1234567", branch="fix", attempt=attempt, conclusion="failure",
               html_url="https://github.com/octo/demo/actions/runs/7", name=name)  # fmt: skip


def failure(test, verdict="flake", excerpt="E  TimeoutError: timed out", **model):
    model = {"cluster": 3, "cluster_size": 12, "cluster_flake_share": 0.75, "distance": 0.1,
             "nearest": [{"test": "test_other", "label": "flake", "distance": 0.1}], **model}  # fmt: skip
    return Judgement(test=test, job="tests (ubuntu)", job_url="https://github.com/octo/demo/actions/runs/7/job/1",
                         verdict=Verdict(verdict, "looks like a flake (75% of 12 similar failures were flakes)",
                                         "fails 3 of the last 40 runs; score 0.52, investigate", "model"),
                         model=ModelVerdict.from_explain(model), lines=(10, 42), excerpt=excerpt)  # fmt: skip


def section(failures, actions=("Re-ran the failed jobs.",), attempt=1, name="CI"):
    decision = decide(failures, RepoConfig(), attempt)
    return run_section(run(attempt, name), failures, decision, list(actions))


def test_a_table_row_per_failure_with_evidence_links_and_actions():
    body = render_comment({"CI": section([failure("tests/test_a.py::test_x"), failure("test_y", "real")])})
    assert body.startswith(MARKER)
    assert "### CI · `abcdef1` · attempt 1" in body
    assert "**2 failed tests:** 1 flake, 1 real." in body
    assert "| `tests/test_a.py::test_x` | :repeat: **flake** |" in body
    assert "| `test_y` | :x: **real** |" in body
    assert "[`tests (ubuntu)`](<https://github.com/octo/demo/actions/runs/7/job/1>) (lines 10–42)" in body
    assert "cluster 3 (12 past failures, 75% flaky)" in body and "`test_other` (flake, 0.10)" in body
    assert "- Re-ran the failed jobs." in body


def test_the_evidence_shows_both_opinions_the_words_and_the_retry_threshold():
    judged = failure(
        "tests/test_a.py::test_x", flake_probability=0.93, neighbour_probability=0.8, text_probability=0.88,
        retry_threshold=0.9, infra_signs=["network"],
        terms=[{"term": "econnreset", "weight": 1.2}, {"term": "assert`<img src=x>", "weight": -0.4}],
    )  # fmt: skip
    body = render_comment({"CI": section([judged])})
    assert "Flake probability 93% (its nearest past failures: 80%; its words: 88%) · re-run above 90%" in body
    assert "`econnreset` (towards flake)" in body and "(towards real)" in body
    assert "signs of the infrastructure: network" in body
    assert "img" not in render_markdown(body).tags  # the hostile term stays code: rendered, it loads nothing


def test_sections_of_other_workflows_stay_and_a_pass_updates_its_own():
    ci, lint = section([failure("t1")]), section([failure("t2", "real")], name="Lint")
    sections = {"CI": ci, "Lint": lint}
    passed = passed_section(
        ci, run(attempt=2), ["Attempt 2 passed: the 1 earlier failure(s) are recorded as flaky."]
    )
    body = render_comment({**sections, "CI": passed})
    assert body.index("### CI") < body.index("### Lint")
    assert ":white_check_mark: **Passed on attempt 2.**" in body and "`t2`" in body


def test_hostile_text_cannot_break_the_table_or_the_code_block_and_secrets_are_masked():
    excerpt = "```\n</details>\n# heading\ntoken=ghp_" + "a" * 36
    body = render_comment({"CI": section([failure("evil|name\nwith newline", excerpt=excerpt)])})
    row = next(line for line in body.splitlines() if "evil" in line)
    assert row.count("|") - row.count("\\|") == 6  # still six cell borders
    assert "````text" in body  # a fence longer than the one inside the excerpt
    assert "ghp_" not in body and "token=***" in body


def test_stays_under_githubs_limit_by_dropping_detail_first():
    many = [failure(f"tests/test_{i}.py::test_" + "x" * 150, excerpt="E  " + "y" * 1500) for i in range(200)]
    body = render_comment({"CI": section(many)})
    assert len(body) <= LIMIT
    assert body.startswith(MARKER)
    assert "more failure(s)" in body


def test_settings_error_is_shown():
    body = render_comment({}, config_error=".github/flakebot.yml is not valid, so flakebot retries nothing")
    assert "flakebot settings:** .github/flakebot.yml is not valid" in body
