"""Logging for the worker: one line per event, and secrets redacted from everything printed."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

FORMAT = "%(asctime)s %(levelname)-7s %(name)s %(message)s"
REDACTED = "***"

LONG_SECRET_LEN = 16
"""A secret this long is cut wherever it occurs: no word of a log line holds it by chance (real
Tradier and Polygon keys are 28 and 32 characters). A shorter one, such as a demo token for the
emulator, is cut only where it stands alone (not inside a longer run of letters and digits), as
it does in a header, a URL parameter or a quoted body: with TRADIER_API_KEY=k, "worker" stays."""

_WORD = "A-Za-z0-9"


class Redactor:
    """Cuts secrets out of text: each as given and URL-encoded, long ones anywhere, short ones where
    they stand alone (see `LONG_SECRET_LEN`)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for secret in secrets if secret for form in _forms(secret)}
        # Longest first, so that a secret containing another is cut whole.
        patterns = [_pattern(form) for form in sorted(forms, key=len, reverse=True)]
        self._forms = len(patterns)
        # Case-blind: an upstream may echo a key upper- or lower-cased.
        self._text = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None
        self._bytes = re.compile("|".join(patterns).encode(), re.IGNORECASE) if patterns else None

    def __call__(self, text: str) -> str:
        return text if self._text is None else self._text.sub(REDACTED, text)

    def in_bytes(self, data: bytes) -> bytes:
        """The same for a raw body (an upstream's answer, before it is decoded or quoted)."""
        return data if self._bytes is None else self._bytes.sub(REDACTED.encode(), data)

    def __repr__(self) -> str:
        return f"<Redactor forms={self._forms}>"


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret, safe="")}


def _pattern(form: str) -> str:
    escaped = re.escape(form)
    if len(form) >= LONG_SECRET_LEN:
        return escaped
    return f"(?<![{_WORD}]){escaped}(?![{_WORD}])"


class RedactingFormatter(logging.Formatter):
    """Cuts every secret out of the formatted line, traceback included (see `Redactor`).

    Our own messages never contain a key; this is the net under third-party messages.
    """

    def __init__(self, secrets: Iterable[str], fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self._redact = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


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
