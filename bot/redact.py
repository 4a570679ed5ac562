"""Masking secrets before text leaves the process (logs, comments, issues, reports).

Two layers: the exact values of the secrets flakebot itself was given (environment variables), and
patterns of well-known credential formats that CI logs leak (tokens, private keys, URL passwords).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

MASK = "***"

# Environment variables whose values are secrets; their exact values are always masked.
SECRET_ENV_VARS = (
    "GITHUB_WEBHOOK_SECRET",
    "GITHUB_TOKEN",
    "GITHUB_PRIVATE_KEY",
    "GITLAB_TOKEN",
    "GITLAB_WEBHOOK_SECRET",
    "FLAKEBOT_DATABASE_URL",
    "FLAKEBOT_READ_TOKEN",
)

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys, whole block
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S),
        "-----BEGIN PRIVATE KEY-----" + MASK + "-----END PRIVATE KEY-----",
    ),
    # GitHub tokens (classic, fine-grained, app installation, OAuth, refresh)
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), MASK),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"), MASK),
    # GitLab tokens (personal, deploy, runner, pipeline trigger, CI job, feed, ...)
    (re.compile(r"\bgl(?:pat|dt|rt|ptt|cbt|imt|agent|oas|ft|soat|ffct)-[A-Za-z0-9_\-]{16,}"), MASK),
    # AWS access key ids, Slack tokens, npm tokens, JWTs
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"), MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
    # a bare AWS secret access key (40 characters of base64, mixed case) shortly after the word
    # "secret" on the same line ("aws secret wJalr…", "SECRET_ACCESS_KEY wJalr…"): no ':' or '='
    (
        re.compile(
            r"((?i:secret)[^\n]{0,40}?)(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
            r"(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
        r"\1" + MASK,
    ),
    # Authorization headers
    (re.compile(r"(?i)(authorization:\s*(?:bearer|token|basic)\s+)\S+"), r"\1" + MASK),
    (re.compile(r"(?i)(private-token:\s*)\S+"), r"\1" + MASK),
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@"), r"\1" + MASK + "@"),
    # key=value / key: value assignments of obviously secret keys
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9_]*_)?(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)"
            r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]{4,})"
        ),
        r"\1" + MASK,
    ),
]


def known_secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The values of flakebot's own secrets that are set (long enough to be worth masking)."""
    env = os.environ if environ is None else environ
    return [env[name] for name in SECRET_ENV_VARS if len(env.get(name, "")) >= 6]


# Every pattern above needs one of these (lower-cased) words, a secret-looking key followed by ':' or
# '=', or a URL with a password; a text with none of them skips the dozen regular expressions of a full
# pass (measured: 6 MB/s for a full pass, 70 MB/s for this check).
_SECRET_WORDS = (
    "-----begin", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "glrt-",
    "glptt-", "glcbt-", "glimt-", "glagent-", "gloas-", "glft-", "glsoat-", "glffct-", "akia", "asia",
    "xox", "npm_", "eyj", "authorization", "private-token", "secret",
)  # fmt: skip
_SECRET_KEYS = ("passw", "token", "apikey", "api_key", "api-key", "accesskey", "access_key", "access-key")
_ASSIGNED = re.compile(r"[a-z]*[\"']?\s*[:=]")  # the rest of the key, then the assignment
_URL_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def _assigns_a_secret(lower: str) -> bool:
    for key in _SECRET_KEYS:
        at = lower.find(key)
        while at >= 0:
            if _ASSIGNED.match(lower, at + len(key)):
                return True
            at = lower.find(key, at + 1)
    return False


def may_hold_a_secret_pattern(text: str) -> bool:
    """False when no pattern of :func:`mask_secrets` can match ``text`` (a quick check)."""
    lower = text.lower()
    return (
        any(word in lower for word in _SECRET_WORDS)
        or _assigns_a_secret(lower)
        or bool(_URL_PASSWORD.search(text))
    )


def secret_masker(extra: Iterable[str] = ()) -> Callable[[str], str]:
    """:func:`mask_secrets` with the secret values read once, for masking many texts in a row."""
    values = sorted({value for value in (*known_secret_values(), *extra) if value}, key=len, reverse=True)

    def mask(text: str) -> str:
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        if may_hold_a_secret_pattern(text):
            for pattern, replacement in _PATTERNS:
                text = pattern.sub(replacement, text)
        return text

    return mask


def mask_secrets(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with credentials replaced by ``***``.

    ``extra`` adds exact values to mask (for example tokens held in memory). The values of
    flakebot's own secret environment variables are always masked.
    """
    return secret_masker(extra)(text)
