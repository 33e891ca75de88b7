"""Logging for the worker: one line per event, and secrets redacted from everything printed."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"
REDACTED = "***"


class RedactingFormatter(logging.Formatter):
    """Replaces every secret value in the formatted line, traceback included.

    Our own messages never contain a key; this is the net under third-party messages.
    """

    def __init__(self, secrets: Iterable[str], fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class DropJobChatter(logging.Filter):
    """Drops arq's INFO line per job start and finish (a tick every second); our jobs log their own."""

    _MARKS = ("\u2192", "\u2190", "recording health")  # → ←

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "arq.worker" or record.levelno > logging.INFO or not isinstance(record.msg, str):
            return True
        return not any(mark in record.msg for mark in self._MARKS)


def setup_logging(level: str | int = "INFO", secrets: Iterable[str] = ()) -> None:
    """Log to stderr with redaction; quiet the libraries' per-job chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets))
    handler.addFilter(DropJobChatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def fields(**values: object) -> str:
    """`key=value` pairs for a log line, in the order given."""
    return " ".join(f"{key}={value}" for key, value in values.items())
