"""``flakebot serve``: the webhook service."""

from __future__ import annotations

import logging

import click


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")  # noqa: S104
@click.option("--port", type=int, envvar="PORT", default=8080, show_default=True,
              help="Port to listen on (also the PORT environment variable).")  # fmt: skip
@click.option("--workers", type=int, help="Concurrent pipeline workers (default: FLAKEBOT_WORKERS or 2).")
@click.option("--dry-run", is_flag=True, help="Decide and log everything, write nothing to GitHub or GitLab.")
def serve(host: str, port: int, workers: int | None, dry_run: bool) -> None:
    """Serve GitHub and/or GitLab webhooks.

    Configuration comes from the environment only, so secrets never appear on a command line or in
    `ps`: GITHUB_WEBHOOK_SECRET with GITHUB_APP_ID + GITHUB_PRIVATE_KEY (or GITHUB_TOKEN), and/or
    GITLAB_WEBHOOK_SECRET with GITLAB_TOKEN; FLAKEBOT_DATA_DIR and FLAKEBOT_MODEL for the database
    and the model. The service refuses to start without a webhook secret for each forge it serves.

    \b
    Example:
      export GITHUB_WEBHOOK_SECRET=... GITHUB_TOKEN=...
      flakebot train history.jsonl.gz --model data/model
      flakebot serve --port 8080
    Then point the repository's webhook at http://HOST:8080/github (see README).
    """
    from aiohttp import web

    from bot.cli import log_level
    from bot.config import ConfigError, Settings
    from bot.logs import SERVICE_FORMAT, setup_logging
    from bot.web import create_app

    overrides = {"port": port}
    if workers:
        overrides["workers"] = workers
    if dry_run:
        overrides["dry_run"] = True
    try:
        settings = Settings.from_env(**overrides)
        settings.check_for_serving()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    verbose = (click.get_current_context().find_root().obj or {}).get("verbose", 0)
    setup_logging(log_level(verbose, logging.INFO), SERVICE_FORMAT)  # the service says what it does
    web.run_app(create_app(settings), host=host, port=port, access_log_format='%a "%r" %s %Tf')


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface of /healthz and /metrics.")  # noqa: S104
@click.option("--port", type=int, envvar="PORT", default=8080, show_default=True,
              help="Port of /healthz and /metrics (also the PORT environment variable).")  # fmt: skip
def worker(host: str, port: int) -> None:
    """Work the queue only: a worker process beside web processes that answer the webhooks.

    With PostgreSQL (FLAKEBOT_DATABASE_URL), web processes can run with FLAKEBOT_WORKERS=0 (they store
    each delivery and answer 202) while worker processes judge the runs, comment, re-run and retrain;
    each wakes when a delivery is stored (LISTEN/NOTIFY). It takes the same settings as `serve` and
    answers GET /healthz and /metrics, but no webhook.

    
    Example (a Procfile):
      web: FLAKEBOT_WORKERS=0 gunicorn 'bot.web:gunicorn_app' --worker-class aiohttp.GunicornWebWorker
      worker: flakebot worker
    """
    from aiohttp import web

    from bot.cli import log_level
    from bot.config import ConfigError, Settings
    from bot.logs import SERVICE_FORMAT, setup_logging
    from bot.web import create_app

    try:
        settings = Settings.from_env(port=port)
        if settings.workers == 0:
            settings = Settings.from_env(port=port, workers=2)
        settings.check_for_serving()
        if not settings.database_url:
            raise ConfigError(
                "flakebot worker needs FLAKEBOT_DATABASE_URL: it works the queue the web processes fill"
            )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    verbose = (click.get_current_context().find_root().obj or {}).get("verbose", 0)
    setup_logging(log_level(verbose, logging.INFO), SERVICE_FORMAT)
    web.run_app(create_app(settings, webhooks=False), host=host, port=port, access_log=None)


@click.command()
@click.option("--port", type=int, envvar="PORT", default=8080, show_default=True, help="Port, when serving.")
def run(port: int) -> None:
    """The main job: serve webhooks, or replay the shipped sample without credentials.

    With GitHub or GitLab settings in the environment this is `flakebot serve`. Without them, flakebot
    replays Cockpit's 200 real sample failures through its real pipeline: it trains a model on the
    older 60%, judges the newer 40% as CI runs of their pull requests, and writes the comments it would
    have posted to $FLAKEBOT_DATA_DIR/demo/comments/ (default ./data/demo).

    \b
    Example:
      make run            # the same, from a fresh clone
    """
    import asyncio
    import sys

    from bot.config import Settings

    settings = Settings.from_env()
    if settings.github_enabled or settings.gitlab_enabled:
        click.get_current_context().invoke(serve, port=port)
        return
    from bot.demo import replay

    click.echo(
        "No GITHUB_* or GITLAB_* settings in the environment: replaying the shipped sample data instead\n"
        "(see README, 'Running it for real', to serve webhooks).\n",
        err=True,
    )
    asyncio.run(replay(settings.data_dir, sys.stdout))
