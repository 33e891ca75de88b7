"""Which Redis a process uses, and how its URL is shown: the one place both halves read it from."""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

DEFAULT_REDIS_URL = "redis://localhost:6379/0"


def resolve_url(url: str | None) -> str:
    """The Redis URL to use: `url`, else `REDIS_URL`, else the local default."""
    return url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


SCHEMES = ("redis", "rediss", "unix")
"""The URL schemes redis-py connects by."""


def url_problem(url: str) -> str | None:
    """What is wrong with the Redis URL `url` (redacted in the message), or None if it has a
    scheme redis-py connects by; checked before connecting, where redis-py would raise a traceback."""
    if urlsplit(url).scheme in SCHEMES:
        return None
    return (
        f"{redact_url(url)!r} is not a Redis URL: expected {', '.join(s + '://' for s in SCHEMES)}..., "
        "e.g. redis://localhost:6379/0"
    )


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, for reprs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
