"""``flakebot backfill``: learn from a repository's own CI history (day one)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

WAIT_FOR_RESET = 3900.0  # a backfill waits for a spent rate limit to reset (GitHub: within the hour)


def _target(value: str) -> tuple[str, str]:
    forge, _, name = value.partition(":")
    if forge not in ("github", "gitlab") or "/" not in name.strip("/"):
        raise click.BadParameter(
            "give the forge and the repository: github:OWNER/NAME or gitlab:GROUP/PROJECT",
            param_hint="TARGET",
        )
    return forge, name.strip("/")


@click.command()
@click.argument("target", metavar="TARGET")
@click.option("--days", type=click.IntRange(1, 400), default=30, show_default=True,
              help="How far back to read: the runs created in the last DAYS days.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: runs, jobs, failures, flake, "
              "real, unlabelled and the model version activated (or null).")  # fmt: skip
@click.option("--no-model", is_flag=True, help="Read and label the history, but train no model.")
@click.option(
    "--installation-id", type=int, hidden=True, help="The GitHub App's installation (the service's)."
)
@click.option("--lock-owner", hidden=True, help="The lock the service took for this backfill.")
@click.option("--quiet", is_flag=True, hidden=True, help="No progress bar, no summary on stderr.")
@click.option(
    "--nice", type=click.IntRange(0, 19), default=0, hidden=True, help="Lower the CPU priority first."
)
def backfill(
    target: str, days: int, as_json: bool, no_model: bool, installation_id: int | None, lock_owner: str | None,
    quiet: bool, nice: int,
) -> None:  # fmt: skip
    """Read a repository's CI history and learn a first model from it.

    TARGET is github:OWNER/NAME or gitlab:GROUP/PROJECT. flakebot reads the runs of the last DAYS days
    on every branch with every attempt (GitHub Actions workflow runs; GitLab pipelines with their
    retried jobs), splits the failed jobs' logs and test reports into test failures as the service
    does, and records every attempt's passes and failures in the history, so scores and the history
    page start from the real history. It never writes to GitHub or GitLab.

    Failures are labelled from what happened next: passed in a later attempt of the same commit
    (flaky), failed again in every later attempt (real), or kept failing on the default branch until a
    later commit passed (real); the rest stay unlabelled (docs/backfill.md). With enough labelled
    failures a first model is trained, trialled on the newest of them and activated through the same
    gate as /flake retrain; otherwise flakebot says how many are missing.

    Settings come from the environment, as for `flakebot serve`: GITHUB_TOKEN (or GITHUB_APP_ID with
    GITHUB_PRIVATE_KEY) and GITHUB_API_URL; GITLAB_TOKEN and GITLAB_URL; FLAKEBOT_DATA_DIR and
    FLAKEBOT_MODEL, or FLAKEBOT_DATABASE_URL (PostgreSQL, which keeps the models too). Interrupted
    (Ctrl-C, a network failure), it continues where it stopped when run again, and never reads a run twice. It keeps a reserve of the rate limit for the running service,
    waits when the limit is spent, and slows down after a rate limit.

    \b
    Example:
      export GITHUB_TOKEN=...
      flakebot backfill github:octo-org/shop --days 30
      flakebot scores --repo github:octo-org/shop
    """
    import asyncio
    import os

    from bot.config import ConfigError, Settings

    if nice:
        os.nice(nice)  # the service's backfill: its webhooks come first
    forge_name, name = _target(target)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if forge_name == "github" and not (
        settings.github_token or (settings.github_app_id and settings.github_private_key)
    ):
        raise click.ClickException("reading GitHub needs GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_PRIVATE_KEY")  # fmt: skip
    if forge_name == "github" and settings.github_app_id and not settings.github_private_key:
        raise click.ClickException("GITHUB_APP_ID is set but GITHUB_PRIVATE_KEY is not")
    if forge_name == "gitlab" and not settings.gitlab_token:
        raise click.ClickException("reading GitLab needs GITLAB_TOKEN (scope read_api or api)")
    show = not quiet and sys.stderr.isatty()
    try:
        summary = asyncio.run(_run(settings, forge_name, name, days, not no_model, installation_id,
                                   lock_owner, show))  # fmt: skip
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: run the same command again to continue where it stopped"
        ) from None
    if as_json:
        click.echo(json.dumps(summary.as_json()))
    if not quiet:
        click.echo(describe(summary), err=as_json)


async def _run(settings: Any, forge_name: str, name: str, days: int, train: bool, installation_id: int | None,
               lock_owner: str | None, show: bool) -> Any:  # fmt: skip
    import asyncio

    import aiohttp

    from bot.backfill import BackfillBusy, StoreCache, backfill
    from bot.context import Context, ModelProvider
    from bot.forge.base import ForgeError
    from bot.forge.pace import Pace
    from bot.store import open_async_store

    store = await open_async_store(
        settings.data_dir, settings.database_url
    )  # the service's, on PostgreSQL too
    models = await asyncio.to_thread(ModelProvider.for_service, settings, store.blocking)
    ctx = Context(settings, store, models)
    pace = Pace()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=30)) as session:
        if forge_name == "github":
            from bot.forge.github import GitHubForge

            forge: Any = GitHubForge(
                session, api_url=settings.github_api_url,
                token=None if settings.github_app_id else settings.github_token,
                app_id=settings.github_app_id, private_key=settings.github_private_key,
                max_attempts=6, max_wait=WAIT_FOR_RESET, cache=StoreCache(store), pace=pace,
            )  # fmt: skip
        else:
            from bot.forge.gitlab import GitLabForge

            forge = GitLabForge(url=settings.gitlab_url, token=settings.gitlab_token or "", max_attempts=6,
                                max_rate_limit_wait=WAIT_FOR_RESET, max_workers=4, pace=pace)  # fmt: skip
        progress = BarProgress() if show else None
        try:
            repo = await forge.find_repo(name, installation_id)
            return await backfill(
                ctx, forge, repo, days=days, train=train, progress=progress, lock_owner=lock_owner
            )
        except BackfillBusy as exc:
            raise click.ClickException(f"{exc}: wait for it to finish") from exc
        except ForgeError as exc:
            raise click.ClickException(
                f"{exc}\nWhat was read so far is kept: run the same command again to continue."
            ) from exc
        finally:
            if progress is not None:
                progress.close()
            await forge.aclose()
            await store.aclose()


class BarProgress:
    """A progress bar on stderr, for a terminal."""

    def __init__(self) -> None:
        self._bar: Any = None

    def phase(self, text: str) -> None:
        self.close()
        click.echo(f"{text} …", err=True)

    def listed(self, count: int) -> None:
        click.echo(f"\r{count} runs listed", nl=False, err=True)

    def reading(self, total: int) -> None:
        click.echo("", err=True)
        self._bar = click.progressbar(length=total, label="reading runs", file=sys.stderr, show_pos=True,
                                      show_eta=True)  # fmt: skip
        self._bar.__enter__()

    def read(self, run: Any) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def describe(summary: Any) -> str:
    """The summary in words, for people."""
    lines = [
        f"{summary.repo}: {summary.runs} runs ({summary.jobs} jobs) created {summary.since[:10]} to "
        f"{summary.until[:10]}{' (resumed)' if summary.resumed else ''}; {summary.failures} failures: "
        f"{summary.flake} flaky, {summary.real} real, {summary.unlabelled} unlabelled."
    ]
    if summary.model:
        lines.append(f"Model {summary.model} is active: {summary.reason}.")
    elif summary.missing is not None:
        lines.append(
            f"No model yet: {summary.missing} more labelled failure(s) are needed for a first trial "
            f"({summary.reason}). Run `flakebot backfill` again later, or label failures with /flake flake|real."
        )
    elif summary.outcome != "not trained":
        lines.append(f"No new model ({summary.outcome}): {summary.reason}.")
    notes = list(dict.fromkeys(summary.notes))
    if notes:
        lines.append(f"{len(notes)} thing(s) could not be read, for example: {notes[0]}.")
    return "\n".join(lines)
