"""Logging set-up: plain text to stderr, with secrets masked in every record."""

from __future__ import annotations

import logging

from bot.redact import mask_secrets


class RedactingFilter(logging.Filter):
    """Masks secrets in the fully formatted message, whatever the handler or the arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


CLI_FORMAT = "%(levelname)s: %(message)s"
SERVICE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = logging.WARNING, fmt: str = CLI_FORMAT) -> None:
    """Log to stderr with secrets masked; short lines for the CLI, timestamped ones for the service."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.DEBUG, level))
