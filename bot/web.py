"""The HTTP service: webhooks in, health and metrics out.

========================  ==========================================================================
``POST /github``          GitHub webhooks: ``X-Hub-Signature-256`` checked in constant time, then the
                          delivery is stored and answered ``202``; events no handler is registered for
                          (``bot/hooks``' routers) get ``200`` and are dropped; ``ping`` is answered
``POST /gitlab``          GitLab webhooks: ``X-Gitlab-Token`` checked in constant time, likewise
``GET /healthz``          liveness: store reachable, queue depth, the model in use (``degraded``, with
                          the error, when the active one cannot be loaded)
``GET /metrics``          Prometheus text format
``GET /``                 the test-history page (server-rendered, no JavaScript), ``bot/dashboard.py``
``GET /quarantine.json``  the quarantine list for the pytest plugin (``FLAKEBOT_READ_TOKEN`` when set)
========================  ==========================================================================

Bodies larger than the limit get ``413`` (before they are read, when they say so), malformed ones
``400``, wrong signatures ``401``; nothing the sender did wrong reaches the queue, and nothing is
processed inside the request. Bodies not yet authenticated are read within one shared byte budget
(``bot/intake.py``): a GitHub delivery without a signature, and a GitLab delivery without the right
token, are refused before any of their body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from typing import Any

import aiohttp
from aiohttp import web
from gidgethub import ValidationFailure, sansio

from bot import dashboard
from bot.config import Settings
from bot.context import Context, ModelProvider
from bot.forge import github_payloads
from bot.forge.base import Forge
from bot.forge.gitlab_payloads import delivery_key, ignore_reason
from bot.hooks import ROUTERS, dispatch
from bot.intake import BodyRefused, ByteBudget, read_unauthenticated, refuse_declared
from bot.jobs import INTERNAL, handle_job, retrain_schedule
from bot.metrics import CONTENT_TYPE, Metrics
from bot.queue import Queue
from bot.store import Store, open_async_store

log = logging.getLogger(__name__)

CTX = web.AppKey("ctx", Context)
BUDGET = web.AppKey("budget", ByteBudget)  # bytes read from deliveries not yet authenticated
QUEUE = web.AppKey("queue", Queue)
JOBS = web.AppKey("jobs", Queue)  # flakebot's own jobs (retrains), apart from the webhooks
FORGES = web.AppKey("forges", dict)
SETTINGS = web.AppKey("settings", Settings)


def _json(code: int, **body: Any) -> web.Response:
    return web.json_response(body, status=code)


async def github_webhook(request: web.Request) -> web.Response:
    settings, ctx = request.app[SETTINGS], request.app[CTX]
    if "github" not in request.app[FORGES]:
        return _json(404, error="GitHub is not configured on this flakebot")
    event_name = request.headers.get("X-GitHub-Event", "")
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:  # refused before a byte of the body is read
        ctx.metrics.events.labels("github", event_name or "unknown", "unsigned").inc()
        log.warning("GitHub delivery %s refused: no X-Hub-Signature-256 (is the webhook's secret set?)",
                    request.headers.get("X-GitHub-Delivery"))  # fmt: skip
        return _json(401, error="X-Hub-Signature-256 is missing: configure the webhook secret")
    try:
        if not signature.startswith("sha256="):  # gidgethub would take sha1= here too
            raise ValidationFailure("not an HMAC-SHA256 signature")
        body = await read_unauthenticated(request, request.app[BUDGET], settings.max_body_bytes)
        sansio.validate_event(body, signature=signature, secret=settings.github_webhook_secret or "")
    except BodyRefused as refused:
        return _refused("github", event_name, refused, ctx)
    except ValidationFailure:
        ctx.metrics.events.labels("github", event_name or "unknown", "bad-signature").inc()
        log.warning(
            "GitHub delivery %s refused: the signature does not match",
            request.headers.get("X-GitHub-Delivery"),
        )
        return _json(401, error="X-Hub-Signature-256 does not match (an HMAC-SHA256 of the body, sha256=…)")
    try:  # authenticated from here on
        payload = github_json(request.content_type, body)
        data = json.loads(payload)
        github_payloads.check_delivery(event_name, data)  # the fields flakebot reads, as it reads them
    except (ValueError, RecursionError) as exc:  # not JSON or UTF-8, too deep, a field missing or mistyped
        ctx.metrics.events.labels("github", event_name or "unknown", "malformed").inc()
        return _json(400, error=f"malformed {event_name or 'GitHub'} delivery: {exc}")
    event = sansio.Event(data, event=event_name, delivery_id=request.headers.get("X-GitHub-Delivery", ""))
    if event.event == "ping":
        ctx.metrics.events.labels("github", "ping", "pong").inc()
        return _json(200, msg="pong", zen=event.data.get("zen"))
    action = event.data.get("action")
    if not ROUTERS["github"].fetch(event):  # no handler wants it: answered and dropped
        ctx.metrics.events.labels("github", event.event, "ignored").inc()
        return _json(200, ignored=f"{event.event}.{action}" if action else event.event)
    digest = hashlib.sha256(body).digest()
    delivery = event.delivery_id or digest.hex()
    new = await _enqueue_once(ctx, "github", delivery, event.event, payload, digest, settings.replay_window)
    if new is None:  # the delivery id is not signed: a replay comes with a new one
        ctx.metrics.events.labels("github", event.event, "replay").inc()
        log.warning("GitHub delivery %s not queued: the same signed body came within %s days (a replay, or a "
                    "redelivery)", delivery, f"{settings.replay_window / 86400:g}")  # fmt: skip
        return _json(202, queued=False, delivery=delivery,
                     duplicate="the same signed body as an earlier delivery: processed once")  # fmt: skip
    request.app[QUEUE].notify()
    ctx.metrics.events.labels("github", event.event, "queued" if new else "redelivery").inc()
    return _json(202, queued=new, delivery=delivery)


async def _enqueue_once(ctx: Context, forge: str, delivery: str, event: str, payload: bytes, digest: bytes,
                        window: float) -> bool | None:  # fmt: skip
    """Queue a delivery unless its signed body came within ``window`` seconds (None: a replay); False
    for a delivery id seen before. One trip to the store's thread; the body is forgotten again when it
    could not be queued, so GitHub's redelivery of it is not taken for a replay."""

    def store(s: Store) -> bool | None:
        if not s.remember_body(forge, digest, time.time(), window):
            return None
        try:
            return s.enqueue(forge, delivery, event, payload)
        except BaseException:
            s.forget_body(forge, digest)
            raise

    return await ctx.store.batch(store)


def _refused(forge: str, event: str, refused: BodyRefused, ctx: Context) -> web.Response:
    ctx.metrics.events.labels(forge, event or "unknown", f"refused-{refused.status}").inc()
    log.warning("%s delivery refused (%d): %s", forge, refused.status, refused.reason)
    headers = {"Retry-After": "10"} if refused.status == 503 else None
    return web.json_response({"error": refused.reason}, status=refused.status, headers=headers)


def github_json(content_type: str, body: bytes) -> bytes:
    """The JSON text of a GitHub delivery, whichever content type its webhook was set to send: the body
    itself (``application/json``), or the ``payload`` field of a form (``application/x-www-form-urlencoded``).
    ValueError for any other type, or a form without exactly one ``payload``. The signature covers the
    body as sent, so it is checked before this."""
    if content_type == "application/json":
        return body
    if content_type != "application/x-www-form-urlencoded":
        raise ValueError(
            f"content type {content_type!r}: a GitHub webhook sends application/json or "
            "application/x-www-form-urlencoded"
        )
    fields = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    values = fields.get("payload", [])
    if len(values) != 1:
        raise ValueError(f"the form must hold one payload field, it holds {len(values)}")
    return values[0].encode("utf-8")


async def gitlab_webhook(request: web.Request) -> web.Response:
    settings, ctx = request.app[SETTINGS], request.app[CTX]
    if "gitlab" not in request.app[FORGES]:
        return _json(404, error="GitLab is not configured on this flakebot")
    event_name = request.headers.get("X-Gitlab-Event", "")
    token = request.headers.get("X-Gitlab-Token", "")
    if not hmac.compare_digest(token.encode(), (settings.gitlab_webhook_secret or "").encode()):
        ctx.metrics.events.labels("gitlab", event_name or "unknown", "bad-token").inc()
        log.warning("GitLab delivery refused: wrong or missing X-Gitlab-Token")
        return _json(401, error="X-Gitlab-Token does not match")
    try:  # the token is a header: nothing is read before it is checked
        refuse_declared(request, settings.max_body_bytes)
        body = await request.read()  # over client_max_size: 413 from aiohttp
    except BodyRefused as refused:
        return _refused("gitlab", event_name, refused, ctx)
    if event_name not in ROUTERS["gitlab"].events:
        ctx.metrics.events.labels("gitlab", event_name or "unknown", "ignored").inc()
        return _json(200, ignored=event_name)
    try:
        payload = json.loads(body)
        ignored = ignore_reason(event_name, payload)
        key = delivery_key(request.headers, payload)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, too deep, or a PayloadError
        ctx.metrics.events.labels("gitlab", event_name, "malformed").inc()
        return _json(400, error=f"malformed delivery: {exc}")
    if ignored is not None:
        ctx.metrics.events.labels("gitlab", event_name, "ignored").inc()
        return _json(200, ignored=f"{event_name}: {ignored}")
    new = await ctx.store.enqueue("gitlab", key, event_name, body)
    request.app[QUEUE].notify()
    ctx.metrics.events.labels("gitlab", event_name, "queued" if new else "redelivery").inc()
    return _json(202, queued=new, delivery=key)


async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        depth = await ctx.store.queue_depth()
    except Exception as exc:  # any store failure makes the instance unhealthy
        return _json(503, status="store unavailable", error=str(exc))
    model = await asyncio.to_thread(ctx.models.health)  # loads the shared model the first time
    return _json(
        200,  # a broken model is no reason to restart the service: "degraded", with the error
        status="degraded" if model["errors"] else "ok",
        queue=depth,
        model=model["in_use"],
        active_model=model["active"],
        model_errors=model["errors"],
        forges=sorted(request.app[FORGES]),
        dry_run=ctx.settings.dry_run,
    )


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.metrics.queue_depth.set(await ctx.store.queue_depth())
    return web.Response(body=ctx.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


def make_forges(settings: Settings, session: aiohttp.ClientSession) -> dict[str, Forge]:
    forges: dict[str, Forge] = {}
    if settings.github_enabled:
        from bot.forge.github import GitHubForge

        forges["github"] = GitHubForge(
            session,
            api_url=settings.github_api_url,
            token=None if settings.github_app_id else settings.github_token,
            app_id=settings.github_app_id,
            private_key=settings.github_private_key,
        )
    if settings.gitlab_enabled:
        from bot.forge.gitlab import GitLabForge

        forges["gitlab"] = GitLabForge(url=settings.gitlab_url, token=settings.gitlab_token)
    return forges


def create_app(
    settings: Settings, *, metrics_registry: Metrics | None = None, webhooks: bool = True
) -> web.Application:
    """The service. ``settings.check_for_serving()`` must have passed (``flakebot serve`` checks).

    Processes can split the work on PostgreSQL: ``FLAKEBOT_WORKERS=0`` answers webhooks only (no
    queue worker, no scheduled work), ``webhooks=False`` (``flakebot worker``) only works the queue."""
    settings.check_for_serving()
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[BUDGET] = ByteBudget(settings.max_unauthenticated_bytes)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        from bot.known_issues import KnownIssues

        store = await open_async_store(
            settings.data_dir, settings.database_url, service=True, lease=settings.lease
        )
        known = KnownIssues.load(settings.known_issues) if settings.known_issues else None
        models = await asyncio.to_thread(ModelProvider.for_service, settings, store.blocking)
        ctx = Context(settings, store, models, metrics_registry or Metrics(), known)
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))
        forges = make_forges(settings, session)
        queue = Queue(ctx, lambda delivery: dispatch(ctx, forges, delivery), workers=settings.workers,
                      forges=("github", "gitlab"), lease=settings.lease)  # fmt: skip
        jobs = Queue(ctx, lambda delivery: handle_job(ctx, forges, delivery), workers=min(1, settings.workers), forges=(INTERNAL,),
                     timeout=settings.retrain_timeout + 600, max_attempts=3, lease=settings.lease)  # fmt: skip
        app[CTX], app[FORGES], app[QUEUE], app[JOBS] = ctx, forges, queue, jobs
        ctx.metrics.unauthenticated_bytes.set_function(lambda: app[BUDGET].used)
        await queue.start()
        await jobs.start()
        schedule = (
            asyncio.create_task(
                retrain_schedule(ctx, settings.retrain_every), name="flakebot-retrain-schedule"
            )
            if settings.retrain_every and settings.workers
            else None
        )
        log.info("flakebot serving %s%s", ", ".join(sorted(forges)), " (dry run)" if settings.dry_run else "")
        if await asyncio.to_thread(ctx.models.store.active_version) is None:
            log.warning("no flake model in %s: failures of repositories without a model of their own get the "
                        "verdict 'unknown' and are never retried; train one with `flakebot train DATA --model "
                        "%s` (README, 'Running it for real')", settings.model_dir, settings.model_dir)  # fmt: skip
        yield
        if schedule is not None:
            schedule.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await schedule
        await jobs.stop()
        await queue.stop()
        for forge in forges.values():
            await forge.aclose()
        await session.close()
        await store.aclose()

    app.cleanup_ctx.append(lifecycle)
    if webhooks:
        app.router.add_post("/github", github_webhook)
        app.router.add_post("/gitlab", gitlab_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    dashboard.add_routes(app, lambda: app[CTX].store, settings.read_token)
    return app


async def gunicorn_app() -> web.Application:
    """The app factory for gunicorn's aiohttp worker (Procfile, app.yaml): settings from the environment."""
    from bot.logs import SERVICE_FORMAT, setup_logging

    setup_logging(logging.INFO, SERVICE_FORMAT)
    return create_app(Settings.from_env())
