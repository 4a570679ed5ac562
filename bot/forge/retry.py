"""When to retry a forge HTTP call, and how long to wait first: one pure decision, no I/O.

Transient failures are retried with bounded exponential back-off: connection errors and time-outs,
5xx answers, and rate limits (429, or 403 with ``Retry-After`` or ``x-ratelimit-remaining: 0``).
Rate limits wait as long as the forge asks (``Retry-After`` seconds, or until ``x-ratelimit-reset``);
when that is longer than ``max_wait`` the caller gives up at once instead of sleeping for an hour.
Every other answer is final and goes back to the caller as it is.
"""

from __future__ import annotations

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
    except ValueError:  # an HTTP-date Retry-After: GitHub sends seconds, treat anything else as unknown
        return None


def rate_limit_wait(status: int, headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the forge asks us to wait when ``status``/``headers`` is a rate limit, else None."""
    if status not in (403, 429):
        return None
    retry_after = _seconds(_header(headers, "retry-after"))
    if retry_after is not None:
        return retry_after
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _seconds(_header(headers, "x-ratelimit-reset"))
        if reset is not None:
            return max(0.0, reset - now) + 1.0  # the reset second itself may still be limited
    if status == 429:
        return -1.0  # rate limited without a hint: back off as usual
    return None  # a 403 that is no rate limit: permissions, final


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    now: float = 0.0,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when the outcome is final.

    ``status`` None means the attempt failed in transport (connection error, time-out). ``now`` is the
    epoch time, for ``x-ratelimit-reset``. A returned delay may exceed ``policy.max_wait`` only for a
    rate limit: the caller then gives up instead of waiting.
    """
    if attempt >= policy.max_attempts:
        return None
    backoff = min(policy.backoff * 2 ** (attempt - 1), policy.max_wait)
    if status is None:
        return backoff
    headers = headers or {}
    if status >= 500:
        asked = _seconds(_header(headers, "retry-after"))
        return backoff if asked is None else asked
    asked = rate_limit_wait(status, headers, now)
    if asked is None:
        return None
    return backoff if asked < 0 else asked
