"""The ``flakebot`` command line.

Each subcommand lives in the module of its concern under ``bot/commands/`` and is imported only
when it is used, so ``flakebot split`` never pays for scikit-learn and ``--help`` stays quick.
"""

from __future__ import annotations

import importlib
import logging

import click

from bot import __version__

# name -> "module:attribute" of a click command. Keep sorted by concern.
COMMANDS: dict[str, str] = {
    # logs
    "split": "bot.commands.split:split",
    # the flake model
    "train": "bot.commands.model:train",
    "trial": "bot.commands.model:trial",
    "classify": "bot.commands.model:classify",
    "retrain": "bot.commands.models:retrain",
    "models": "bot.commands.models:models",
    "rollback": "bot.commands.models:rollback",
    "backfill": "bot.commands.backfill:backfill",
    # test history
    "score": "bot.commands.history:score",
    "scores": "bot.commands.history:scores",
    "quarantine-list": "bot.commands.history:quarantine_list",
    # the service
    "serve": "bot.commands.service:serve",
    "store": "bot.commands.store:store",
    "worker": "bot.commands.service:worker",
    "run": "bot.commands.service:run",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        from bot.store import StoreError

        try:
            return super().invoke(ctx)
        except StoreError as exc:  # an empty or corrupt database: the message says what to do
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flakebot")
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v info, -vv debug; serve: info, -vv debug)."
)
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """flakebot tells flaky test failures from real ones.

    \b
    Typical use:
      flakebot train history.jsonl.gz --model models/   # learn from past failures
      flakebot trial --model models/ held-out.jsonl     # how good is it?
      flakebot classify --model models/ new.jsonl       # one JSON verdict a line

    Run `flakebot COMMAND --help` for the details of each command.
    """
    from bot.logs import setup_logging

    ctx.obj = {"verbose": verbose}
    setup_logging(log_level(verbose))


def log_level(verbose: int, default: int = logging.WARNING) -> int:
    """The level ``-v`` (one step) or ``-vv`` (two) asks for, from a command's ``default``."""
    return max(logging.DEBUG, min(default, logging.WARNING - 10 * verbose))


def main() -> None:
    cli(prog_name="flakebot")
