"""The history views' pure parts: repository names, rows, sparklines, terminal-safe names."""

import pytest

from bot.scoreboard import UnknownRepo, printable, resolve_repo, select, spark_paths, sparkline

KNOWN = ["github:octo/shop", "gitlab:octo/shop", "github:octo/api"]


def test_repositories_are_found_by_key_or_by_a_unique_name():
    assert resolve_repo("gitlab:octo/shop", KNOWN) == "gitlab:octo/shop"
    assert resolve_repo(" octo/api ", KNOWN) == "github:octo/api"
    with pytest.raises(
        UnknownRepo,
        match="octo/shop is on several forges: say which, one of github:octo/shop, gitlab:octo/shop",
    ):
        resolve_repo("octo/shop", KNOWN)
    with pytest.raises(
        UnknownRepo, match="no test history for github:octo/web; known repositories: github:octo/shop"
    ):
        resolve_repo("github:octo/web", KNOWN)
    with pytest.raises(UnknownRepo, match="known repositories: none yet"):
        resolve_repo("octo/web", [])
    with pytest.raises(UnknownRepo) as error:
        resolve_repo("x" * 100_000 + "\x1b[2J", KNOWN)
    assert len(str(error.value)) < 300 and "\x1b" not in str(error.value)


def test_rows_from_the_store_unscored_ones_included():
    items = [
        {"repo": "github:o/r", "test": "t1", "job": "j", "score": {"score": 0.7, "confidence": 0.9, "runs": 10,
         "failures": 5, "recommendation": {"action": "quarantine", "reason": "r"}}, "recent": ["passed", "failed"],
         "issue": 3, "issue_url": "javascript:alert(1)", "quarantine": "open"},
        {"repo": "github:o/r", "test": "t2", "job": "j", "score": None, "recent": ["skipped"],
         "issue": None, "issue_url": None, "quarantine": None},
    ]  # fmt: skip
    first, unscored = select(items)
    assert (first.action, first.issue, first.issue_url, first.quarantined) == ("quarantine", 3, None, True)
    assert first.summary() == "1 of the last 2 runs failed"
    assert (unscored.score, unscored.action, unscored.summary()) == (None, None, "no runs recorded")
    assert select(items, recommendation="quarantine") == [first] and select(items, limit=1) == [first]
    with pytest.raises(ValueError, match="recommendation must be one of"):
        select(items, recommendation="panic")


def test_sparklines():
    recent = ["passed", "failed", "error", "skipped", "passed"]
    assert sparkline(recent) == "▁██·▁"
    assert spark_paths(recent) == {
        "p": "M0 11h4v5h-4zM20 11h4v5h-4z",
        "f": "M5 0h4v16h-4zM10 0h4v16h-4z",
        "s": "M15 12h4v4h-4z",
    }
    assert spark_paths([]) == {}


def test_names_are_made_safe_for_a_terminal_and_cut_in_the_middle():
    assert printable("a\x1b[31mb\r\nc\x9bd") == "a\ufffd[31mb\ufffd\ufffdc\ufffdd"
    cut = printable("tests/" + "x" * 100 + "::test_end", 30)
    assert len(cut) == 30 and cut.startswith("tests/") and cut.endswith("::test_end") and "…" in cut
