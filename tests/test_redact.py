import logging

import pytest

from bot.logs import RedactingFilter
from bot.redact import mask_secrets


@pytest.mark.parametrize(
    "secret",
    [
        "ghp_" + "A1b2" * 9,
        "ghs_" + "Z9y8" * 9,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "glpat-" + "x1Y2z3" * 4,
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-1234567890-abcdefghij",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl",
    ],
)
def test_known_token_formats_are_masked(secret):
    out = mask_secrets(f"using {secret} now")
    assert secret not in out and "***" in out and out.startswith("using ")


def test_private_key_block_url_password_and_assignments_are_masked():
    text = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----\n"
        "git clone https://bot:hunter2pass@example.com/repo.git\n"
        "Authorization: Bearer abcdef123456\n"
        "DB_PASSWORD=correct-horse\n"
        "api_key: 'k3y-value'\n"
    )
    out = mask_secrets(text)
    for leaked in ("MIIEow", "hunter2pass", "abcdef123456", "correct-horse", "k3y-value"):
        assert leaked not in out
    assert "https://bot:***@example.com/repo.git" in out
    assert "DB_PASSWORD=***" in out


def test_own_secret_values_from_environment_are_masked(monkeypatch):
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "plain-words-secret")
    assert mask_secrets("sig plain-words-secret end") == "sig *** end"


def test_ordinary_log_text_is_left_alone():
    text = "FAILED tests/test_a.py::test_b - AssertionError: assert 3 == 4\nnot ok 5 testBasic"
    assert mask_secrets(text) == text


def test_log_records_are_masked_after_formatting(monkeypatch):
    monkeypatch.setenv("GITLAB_TOKEN", "tok-abcdef-999")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token is %s", ("tok-abcdef-999",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "token is ***"
