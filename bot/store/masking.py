"""Secrets never reach the store: every method of a backend gets its arguments with secrets masked.

:func:`masked` applies :func:`bot.redact.mask_secrets` (and flakebot's own secrets) to every string a
value holds (the webhook payload's bytes are kept as received until the delivery is done). Test
names, failures, logs, messages, comment state and errors are masked before they are written, and
the names a lookup is given the same way, so a test whose name held a secret is found under its masked
name (docs/hardening.md, 11).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

from bot.redact import secret_masker


def masked(value: Any, mask: Callable[[str], str] | None = None) -> Any:
    """``value`` with secrets masked in every string it holds: strings, the keys and values of dicts,
    lists, tuples and dataclasses (a copy; bytes and numbers as they are)."""
    mask = mask or secret_masker()
    if isinstance(value, str):
        return mask(value) if len(value) >= 6 else value  # nothing shorter is a secret
    if isinstance(value, dict):
        return {masked(k, mask): masked(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(masked(v, mask) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {}
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            if f.init and (new := masked(old, mask)) != old:
                changed[f.name] = new
        return dataclasses.replace(value, **changed) if changed else value
    return value


def _remembering(mask: Callable[[str], str], longest: int = 500) -> Callable[[str], str]:
    """``mask`` that remembers its answers for short texts: a run asks about the same test, job and
    repository names several times (window, summary, score)."""
    remembered = functools.lru_cache(maxsize=8192)(mask)
    return lambda text: remembered(text) if len(text) <= longest else mask(text)


_masking_now: contextvars.ContextVar[bool] = contextvars.ContextVar("flakebot_masking", default=False)


def _masking(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (plain or ``async``) called with its arguments masked by ``self.secret_mask``."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def acall(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _masking_now.get():  # a store method calling another: masked already
                return await method(self, *args, **kwargs)
            token = _masking_now.set(True)
            try:
                return await method(self, *masked(args, self.secret_mask), **masked(kwargs, self.secret_mask))
            finally:
                _masking_now.reset(token)

        acall.masks_secrets = True  # type: ignore[attr-defined]
        return acall

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _masking_now.get():
            return method(self, *args, **kwargs)
        token = _masking_now.set(True)
        try:
            return method(self, *masked(args, self.secret_mask), **masked(kwargs, self.secret_mask))
        finally:
            _masking_now.reset(token)

    call.masks_secrets = True  # type: ignore[attr-defined]
    return call


class Masking:
    """Mixed into a store's interface: every method of ``interface`` a backend defines gets its
    arguments masked (:func:`masked`) before it runs, unless the backend only hands calls on to another
    store that masks (``delegates = True``)."""

    delegates = False
    unmasked: frozenset[str] = frozenset({"close", "aclose", "hold", "batch", "on_delivery"})

    @classmethod
    def mask_methods(cls, interface: type) -> None:
        if cls.delegates:
            return
        for name in interface.__abstractmethods__ - cls.unmasked:  # type: ignore[attr-defined]
            method = getattr(cls, name, None)  # defined by the class or a concern's module it mixes in
            abstract = getattr(method, "__isabstractmethod__", False)
            if callable(method) and not abstract and not getattr(method, "masks_secrets", False):
                setattr(cls, name, _masking(method))

    @functools.cached_property
    def secret_mask(self) -> Callable[[str], str]:
        """Masks flakebot's own secrets (those of the environment when the store was first used, as
        the service reads its settings once) and every credential pattern of :mod:`bot.redact`."""
        return _remembering(secret_masker())
