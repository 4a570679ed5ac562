"""Masking secrets before text leaves the process (logs, comments, issues, reports).

Two layers: the exact values of the secrets flakebot itself was given (environment variables), and
patterns of well-known credential formats that CI logs leak (tokens, private keys, URL passwords).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

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


def mask_secrets(text: str, extra: Iterable[str] = ()) -> str:
    """Return ``text`` with credentials replaced by ``***``.

    ``extra`` adds exact values to mask (for example tokens held in memory). The values of
    flakebot's own secret environment variables are always masked.
    """
    for value in sorted({*known_secret_values(), *extra}, key=len, reverse=True):
        if value:
            text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
