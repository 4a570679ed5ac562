import pytest

from bot.config import RepoConfig, parse_repo_config
from bot.decide import decide
from bot.run.results import Judgement, ModelVerdict
from bot.verdict import Verdict


def failure(verdict: str, test: str = "t", p: float = 0.95, retry_threshold: float | None = 0.9) -> Judgement:
    return Judgement(
        test=test,
        job="tests",
        job_url="https://ci/job/1",
        verdict=Verdict(verdict, "log", "history", "model"),
        model=ModelVerdict.from_explain(
            {
                "verdict": "unknown" if verdict not in ("flake", "real") else verdict,
                "flake_probability": p,
                "retry_threshold": retry_threshold,
            }
        ),
    )


@pytest.mark.parametrize("verdicts", [["flake"], ["flake", "known-issue", "infra"]])
def test_retries_only_when_every_failure_is_retriable_and_within_budget(verdicts):
    d = decide([failure(v) for v in verdicts], RepoConfig(), attempt=1)
    assert d.retry and "attempt 2 of 3" in d.retry_reason
    assert not decide([failure(v) for v in verdicts], RepoConfig(), attempt=3).retry
    assert (
        "retry budget is spent"
        in decide([failure(v) for v in verdicts], RepoConfig(), attempt=3).retry_reason
    )


@pytest.mark.parametrize("other", ["real", "unknown"])
def test_never_retries_a_real_or_unknown_failure(other):
    d = decide([failure("flake"), failure(other, "u")], RepoConfig(), attempt=1)
    assert not d.retry and f"1 {other}" in d.retry_reason and d.counts == {"flake": 1, other: 1}


def test_a_model_flake_is_retried_only_above_the_trialled_threshold():
    assert decide([failure("flake", p=0.95)], RepoConfig(), attempt=1).retry
    d = decide([failure("flake", p=0.95), failure("flake", "u", p=0.7)], RepoConfig(), attempt=1)
    assert not d.retry and "up to 95%" not in d.retry_reason
    assert "1 flake(s) are not sure enough" in d.retry_reason and "only above 90%" in d.retry_reason
    untrialled = decide([failure("flake", retry_threshold=None)], RepoConfig(), attempt=1)
    assert not untrialled.retry and "never trialled" in untrialled.retry_reason
    # a flake by other evidence (a pass on the same commit) needs no model threshold
    same = Judgement("t", "tests", "u", Verdict("flake", "log", "history", "same-revision"))
    assert decide([same], RepoConfig(), attempt=1).retry


def test_no_retry_without_failures_when_disabled_or_in_safe_mode():
    assert "no failed test" in decide([], RepoConfig(), attempt=1).retry_reason
    off = parse_repo_config("retry: {enabled: false}")
    assert "turned off" in decide([failure("flake")], off, attempt=1).retry_reason
    broken = parse_repo_config("retry: {enabled: nope}")
    d = decide([failure("flake")], broken, attempt=1)
    assert not d.retry and "not valid" in d.retry_reason
    assert d.comment  # the comment is where the settings error is shown
    assert decide([failure("flake")], parse_repo_config("retry: {max_attempts: 1}"), attempt=1).retry is False


def test_dry_run_is_the_same_decision_marked():
    d = decide([failure("flake", "flaky")], RepoConfig(), attempt=1, dry_run=True)
    assert d.dry_run and d.retry
    assert decide([], parse_repo_config("dry_run: true"), attempt=1).dry_run


def test_the_message_kept_in_the_history_is_the_exception_not_the_location():
    from bot.run.history import message_of

    log = "    def test_x():\n>       client.get()\nE       ConnectionResetError: [Errno 104] Connection reset by peer\n\ntests/test_x.py:42: ConnectionResetError\n"
    assert message_of(log) == "ConnectionResetError: [Errno 104] Connection reset by peer"
    assert message_of("not ok 3 test\nsomething failed badly\nend") == "something failed badly"
    assert message_of("just output") == "just output" and message_of("") == ""
