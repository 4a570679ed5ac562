"""When to retry a forge HTTP call, and how long to wait first: pure decisions, no I/O.

Transient failures are retried with bounded exponential back-off: connection errors and time-outs,
5xx answers, and rate limits (429, or 403 with ``Retry-After`` or ``x-ratelimit-remaining: 0``).
Rate limits wait as long as the forge asks (:func:`asked_wait`: ``Retry-After``, or until the limit
resets); when that is longer than ``max_wait`` the caller gives up at once instead of sleeping for an
hour. Every other answer is final and goes back to the caller as it is.

:func:`asked_wait` is the one reader of both forges' rate-limit headers: the GitHub adapter retries
with :func:`retry_delay`, the GitLab adapter lets python-gitlab retry but asks it first.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4  # attempts in all, the first one included
    backoff: float = 1.0  # the first back-off in seconds; it doubles with each attempt
    max_wait: float = 60.0  # the longest single wait; a rate limit asking for more is given up on

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff < 0 or self.max_wait < 0:
            raise ValueError(f"invalid retry policy {self}")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # plain dicts in tests; aiohttp's CIMultiDict ignores case already
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def asked_wait(headers: Mapping[str, str], now: float | None) -> float | None:
    """Seconds the forge's headers ask to wait before the next request, or None when they do not say.

    ``Retry-After`` in seconds, or as an HTTP date when ``now`` (epoch seconds) is known; else the reset
    time of a spent rate limit: GitHub's ``x-ratelimit-reset`` when ``x-ratelimit-remaining`` is 0,
    GitLab's ``RateLimit-Reset``. A header that cannot be read is treated as absent.
    """
    value = _header(headers, "retry-after")
    if value is not None:
        seconds = _seconds(value.strip())
        if seconds is not None:
            return seconds
        if now is not None:
            try:
                return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    if now is None:
        return None
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _seconds(_header(headers, "x-ratelimit-reset"))
        if reset is not None:
            return max(0.0, reset - now) + 1.0  # the reset second itself may still be limited
    reset = _seconds(_header(headers, "ratelimit-reset"))
    return None if reset is None else max(0.0, reset - now)


def rate_limit_wait(status: int, headers: Mapping[str, str], now: float | None) -> float | None:
    """Seconds the forge asks us to wait when ``status``/``headers`` is a rate limit, else None."""
    if status not in (403, 429):
        return None
    asked = asked_wait(headers, now)
    if asked is not None:
        return asked
    if status == 429:
        return -1.0  # rate limited without a hint: back off as usual
    return None  # a 403 that is no rate limit: permissions, final


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    now: float | None = None,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when the outcome is final.

    ``status`` None means the attempt failed in transport (connection error, time-out). ``now`` is the
    epoch time, for waits given as a time (an HTTP-date ``Retry-After``, a rate limit's reset); without
    it they are not understood. A returned delay may exceed ``policy.max_wait`` only for a rate limit:
    the caller then gives up instead of waiting.
    """
    if attempt >= policy.max_attempts:
        return None
    backoff = min(policy.backoff * 2 ** (attempt - 1), policy.max_wait)
    if status is None:
        return backoff
    headers = headers or {}
    if status >= 500:
        asked = asked_wait(headers, now)
        return backoff if asked is None else asked
    asked = rate_limit_wait(status, headers, now)
    if asked is None:
        return None
    return backoff if asked < 0 else asked
