"""Command-line subcommands, one module per concern (see bot/cli.py)."""
