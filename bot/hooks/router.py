"""The one router type of both forges: gidgethub's ``Router``, which works on any ``sansio.Event``.

A GitLab delivery becomes a ``sansio.Event`` too (its ``X-Gitlab-Event`` name, its JSON body), so the
handlers of both forges have one signature, ``handler(event, ctx, forge)``, and one way to be found
(``Router.fetch``). This subclass only remembers which events it routes: that list is the webhook's
allow-list (``bot/web.py``), so an event is wanted exactly when a handler is registered for it.
"""

from __future__ import annotations

from typing import Any

from gidgethub import routing


class Router(routing.Router):
    def __init__(self, *others: Router) -> None:
        self._events: set[str] = set()
        super().__init__(*others)  # composes through add()

    def add(self, func: Any, event_type: str, **data_detail: Any) -> None:
        self._events.add(event_type)
        super().add(func, event_type, **data_detail)

    @property
    def events(self) -> frozenset[str]:
        """The event names some handler is registered for (whatever its data detail, e.g. ``action``)."""
        return frozenset(self._events)
