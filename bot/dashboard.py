"""The service's read-only views: ``GET /`` (the test-history page) and ``GET /quarantine.json``.

``GET /``                 HTML from ``templates/dashboard.html.j2``: the infrastructure incidents (open
                          first, the newest 20), then tests by score, most flaky first, with a
                          sparkline of their recent runs, recommendation, confidence and quarantine
                          issue. ``?repo=forge:owner/name``, ``?recommendation=...`` and
                          ``?limit=N`` (default 200) narrow it. No JavaScript, no external assets.
``GET /quarantine.json``  the quarantine list (``bot/quarantine_list.py``, version 1) the pytest
                          plugin reads in URL mode; ``?repo=`` for one repository.

Both are open unless ``FLAKEBOT_READ_TOKEN`` is set: then they need ``Authorization: Bearer <token>``
(the pytest plugin sends it from the same environment variable) or HTTP Basic with the token as the
password (what a browser prompts for), compared in constant time. Test names of private repositories
are what is at stake; the token is never accepted in the URL, which access logs record.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from bot import scoreboard
from bot.quarantine_list import quarantine_list
from bot.render import render
from bot.store import AsyncStore

DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
INCIDENTS_SHOWN = 20
# the page runs no script and loads nothing: even a name that slipped through escaping could not act
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries the read token (always, when none is set)."""
    if not token:
        return True
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic":
        try:
            value = base64.b64decode(value, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.encode("utf-8"), token.encode("utf-8"))


def _refused(json_body: bool) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="flakebot", charset="UTF-8"'}
    message = "this flakebot needs its read token (FLAKEBOT_READ_TOKEN) as a Bearer token or Basic password"
    if json_body:
        return web.json_response({"error": message}, status=401, headers=headers)
    return web.Response(text=message + "\n", status=401, headers=headers)


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        number = int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"limit must be a whole number, not {value[:40]!r}\n") from None
    return max(1, min(MAX_LIMIT, number))


def add_routes(app: web.Application, store: Callable[[], AsyncStore], read_token: str | None) -> None:
    """Serve the views on ``app``; ``store()`` gives the service's store once it has started."""

    async def index(request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization"), read_token):
            return _refused(json_body=False)
        query = request.query
        recommendation = query.get("recommendation") or None
        if recommendation is not None and recommendation not in scoreboard.RECOMMENDATIONS:
            raise web.HTTPBadRequest(
                text=f"recommendation must be one of {', '.join(scoreboard.RECOMMENDATIONS)}\n"
            )
        limit = _limit(query.get("limit"))
        repos = await store().repos()
        repo, error, status = None, None, 200
        if query.get("repo"):
            try:
                repo = scoreboard.resolve_repo(query["repo"], repos)
            except scoreboard.UnknownRepo as exc:
                error, status = str(exc), 404
        rows: list[scoreboard.Row] = []
        incidents = []
        if error is None and repos:
            rows = scoreboard.select(await store().scores(repo), recommendation=recommendation)
            incidents = (await store().incidents(repo))[:INCIDENTS_SHOWN]
        more = {k: v for k, v in (("repo", repo), ("recommendation", recommendation)) if v}
        more_limit = min(MAX_LIMIT, limit * 5)
        html = render(
            "dashboard.html.j2",
            repos=repos,
            repo=repo,
            error=error,
            recommendation=recommendation,
            rows=rows[:limit],
            shown=min(limit, len(rows)),
            total=len(rows),
            more_limit=more_limit,
            more_query=urlencode({**more, "limit": more_limit}),
            spark=scoreboard.spark_paths,
            incidents=incidents,
            safe_url=scoreboard.safe_url,
        )
        response = web.Response(
            text=html, status=status, content_type="text/html", charset="utf-8", headers=HTML_HEADERS
        )
        response.enable_compression()  # only when the client accepts it
        return response

    async def quarantine(request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization"), read_token):
            return _refused(json_body=True)
        repo = None
        if request.query.get("repo"):
            try:
                repo = scoreboard.resolve_repo(request.query["repo"], await store().repos())
            except scoreboard.UnknownRepo as exc:
                return web.json_response({"error": str(exc)}, status=404)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entries = scoreboard.quarantine_entries(await store().quarantined(repo), now)
        return web.json_response(
            quarantine_list(entries, generated_at=now), headers={"Cache-Control": "no-cache"}
        )

    app.router.add_get("/", index)
    app.router.add_get("/quarantine.json", quarantine)
