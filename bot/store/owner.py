"""Who holds a delivery's lease or a lock, and whether that process still runs."""

from __future__ import annotations

import os
import socket
import uuid

_STARTED = uuid.uuid4().hex[:8]  # this process's start: told apart from an earlier one with its pid


def process_owner() -> str:
    """``host:pid:start``: who holds a delivery's lease or a lock, in the store."""
    return f"{socket.gethostname()}:{os.getpid()}:{_STARTED}"


def dead_local_owners(owners: list[str]) -> list[str]:
    """The owners that were processes of this host which no longer run: their pid is gone, or it is
    this process's pid with another start (a container's restarted PID 1)."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        name, pid, started = _parse_owner(owner)
        if name != host or not pid.isdigit():
            continue
        if int(pid) == os.getpid():
            if started is not None and started != _STARTED:
                dead.append(owner)
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.append(owner)
        except PermissionError:
            pass  # alive, someone else's
    return dead


def _parse_owner(owner: str) -> tuple[str, str, str | None]:
    """(host, pid, start) of ``host:pid:start``, or of ``host:pid`` (flakebot before 0.2: no start)."""
    head, _, last = owner.rpartition(":")
    if last.isdigit():
        return head, last, None
    name, _, pid = head.rpartition(":")
    return name, pid, last
