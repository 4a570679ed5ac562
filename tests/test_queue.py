"""Which failures of a delivery are final: only definitive ones; a bug in a handler is retried."""

import pytest

from bot.forge.base import ForgeError
from bot.queue import PermanentError, backoff, is_permanent


@pytest.mark.parametrize(
    "exc",
    [PermanentError("malformed payload"), ForgeError("not found", 404), ForgeError("no permission", 403)],
)
def test_definitive_errors_are_permanent(exc):
    assert is_permanent(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug in a handler"),
        KeyError("number"),
        TypeError("unexpected None"),
        ForgeError("rate limited", 429),
        ForgeError("conflict", 409),
        ForgeError("server error", 502),
        ForgeError("timed out"),
        TimeoutError(),
    ],
)
def test_everything_else_is_tried_again_with_backoff(exc):
    assert not is_permanent(exc)
    assert backoff(1) == 30.0 and backoff(3) == 480.0
