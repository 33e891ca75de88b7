"""Logging for the worker: one line per event, and secrets redacted from everything printed.

Text by default (`FORMAT`); `--log-format json` writes one JSON object per line for log shippers
(`JsonFormatter`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal
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


LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_EVENT = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
# One `key=value` of `fields`: a value quoted by its caller ('"..."', up to the quote that ends the
# line or comes before the next key), else up to the next space.
_FIELD = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)=("(?:.*?)"(?=\s+[A-Za-z_][A-Za-z0-9_]*=|\s*$)|\S*)')
_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"-?\d+\.\d*(?:[eE][-+]?\d+)?")
_RESERVED = frozenset({"time", "level", "logger", "event", "message", "exception"})


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: `time` (ISO 8601 UTC), `level`, `logger`, `event` (the line's
    first word, e.g. "refresh.batch_done"), then its `key=value` fields as members (numbers as
    numbers; a field named like one of those gets a trailing `_`). A line that is not an event
    (a library's) is `message`, whole, and so is the rest of an event's line that is not
    `key=value` fields; a traceback is `exception`. Secrets are cut
    from every text before it is encoded, and from the encoded line."""

    def format(self, record: logging.LogRecord) -> str:
        text = self._redact(record.getMessage())
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        event, _, rest = text.partition(" ")
        if not _EVENT.fullmatch(event):
            entry["event"], entry["message"] = None, text
        else:
            entry["event"] = event
            parsed = _parse_fields(rest)
            if parsed is None:  # not `fields(...)`: kept whole
                entry["message"] = rest
            for key, value in (parsed or {}).items():
                entry[f"{key}_" if key in _RESERVED else key] = value
        if record.exc_info:
            entry["exception"] = self._redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self._redact(self.formatStack(record.stack_info))
        return self._redact(json.dumps(entry, ensure_ascii=False, default=str))


def _parse_fields(text: str) -> dict[str, Any] | None:
    """The `key=value` pairs of `fields(...)` in `text`, or None if it holds anything else."""
    found: dict[str, Any] = {}
    at = 0
    text = text.rstrip()
    while at < len(text):
        match = _FIELD.match(text, at)
        if match is None or match.end() == at:
            return None
        key, raw = match.group(1), match.group(2)
        found[key] = _value(raw)
        at = match.end()
    return found


def _value(raw: str) -> Any:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    if _INT.fullmatch(raw):
        return int(raw)
    if _FLOAT.fullmatch(raw):
        return float(raw)
    # "-" is how a text line writes "none" (`unmatched=-`): null, so a field keeps one type.
    return {"True": True, "False": False, "None": None, "-": None}.get(raw, raw)


class DropJobChatter(logging.Filter):
    """Drops arq's INFO line per job start and finish (a tick every second); our jobs log their own."""

    _MARKS = ("\u2192", "\u2190", "recording health")  # → ←

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "arq.worker" or record.levelno > logging.INFO or not isinstance(record.msg, str):
            return True
        return not any(mark in record.msg for mark in self._MARKS)


def setup_logging(
    level: str | int = "INFO", secrets: Iterable[str] = (), log_format: LogFormat = "text"
) -> None:
    """Log to stderr with redaction, as text lines or JSON objects (`log_format`); quiet the
    libraries' per-job chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if log_format == "json" else RedactingFormatter(secrets))
    handler.addFilter(DropJobChatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def fields(**values: object) -> str:
    """`key=value` pairs for a log line, in the order given."""
    return " ".join(f"{key}={value}" for key, value in values.items())
