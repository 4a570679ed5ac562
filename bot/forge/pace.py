"""How fast a long read of a forge (``flakebot backfill``) may go: decisions from the rate-limit headers.

The live service reacts to a rate limit when it meets one (``bot/forge/retry.py``). A backfill makes
thousands of calls with the same credentials, so it must also leave room for the service and slow down
before the forge has to say so:

* **a reserve of the primary limit**: when a response says fewer than ``reserve`` requests are left
  (GitHub's ``x-ratelimit-remaining``, GitLab's ``RateLimit-Remaining``), the next request waits for the
  limit's reset (``x-ratelimit-reset`` / ``RateLimit-Reset``), so the service's own calls still go
  through;
* **slowing down after a rate limit**: a 403/429 that asks for a wait (a secondary limit, or a primary one
  that ran out anyway) sets a pause between requests that doubles with each further limit (1 s, 2 s, 4 s,
  … at most ``max_pause``) and fades by 5% with every answer that was not a limit.

The adapters ask :meth:`Pace.wait_before` before each request and tell :meth:`Pace.note` every answer
(the GitHub adapter in ``_send``, the GitLab adapter in its request and response hooks). Pure: the time
is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.forge.retry import asked_wait

FADE = 0.95  # the pause after a rate limit shrinks by 5% with each answer that is not one
FIRST_PAUSE = 1.0


def _number(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is None:
            value = next((v for k, v in headers.items() if k.lower() == name), None)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                return None
    return None


@dataclass
class Pace:
    reserve: int = 500  # requests of the primary limit left to the live service
    max_pause: float = 30.0  # the longest pause between requests after rate limits
    max_reset_wait: float = 3900.0  # a reset further away than this is not waited for (odd headers)
    first_pause: float = FIRST_PAUSE  # the pause after a first rate limit
    fade: float = FADE
    pause: float = 0.0  # the current pause between requests
    remaining: float | None = None
    reset: float | None = None  # epoch seconds (GitHub) or seconds from ``seen_at`` (GitLab)
    limited: int = 0  # rate-limit answers met
    waited: float = 0.0  # seconds spent waiting before requests

    def note(self, status: int, headers: Mapping[str, str], now: float) -> None:
        """An answer of the forge: its rate-limit headers, and whether it was a rate limit."""
        remaining = _number(headers, "x-ratelimit-remaining", "ratelimit-remaining")
        reset = _number(headers, "x-ratelimit-reset")
        if reset is None and (gitlab_reset := _number(headers, "ratelimit-reset")) is not None:
            # GitLab's RateLimit-Reset is an epoch time too; some proxies send seconds from now
            reset = gitlab_reset if gitlab_reset > 1e9 else now + gitlab_reset
        if remaining is not None:
            self.remaining, self.reset = remaining, reset
        if status in (403, 429) and asked_wait(headers, now) is not None:
            self.limited += 1
            self.pause = min(self.max_pause, max(self.first_pause, self.pause * 2))
        elif self.pause:
            self.pause = self.pause * self.fade if self.pause * self.fade >= self.first_pause / 20 else 0.0

    def wait_before(self, now: float) -> float:
        """Seconds to wait before the next request."""
        if (
            self.remaining is not None
            and self.reset is not None
            and self.remaining <= self.reserve
            and 0 < self.reset - now <= self.max_reset_wait
        ):
            return self.reset - now + 1.0  # the reset second itself may still be limited
        return self.pause

    def waiting(self, seconds: float) -> None:
        """Count a wait the adapter made (for the report); after a reset the budget is unknown again."""
        self.waited += seconds
        if self.remaining is not None and self.remaining <= self.reserve:
            self.remaining = None
