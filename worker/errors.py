"""Errors of the worker. Every message names the bad value and the fix, and never holds a secret."""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of every error raised by `worker`."""


class ConfigError(WorkerError):
    """The configuration (file or environment) cannot be used; the message lists every problem."""


class UpstreamError(WorkerError):
    """An upstream call failed; nothing from it was stored."""

    def __init__(self, provider: str, endpoint: str, detail: str) -> None:
        self.provider = provider
        self.endpoint = endpoint
        self.detail = detail
        super().__init__(f"{provider} {endpoint}: {detail}")


class UpstreamAuthError(UpstreamError):
    """401/403: the API key is missing, wrong, or not entitled to the data."""


class UpstreamNotFound(UpstreamError):
    """404: the upstream does not know the symbol (or the path).

    `reason` is the message of a JSON error body (Polygon's `"Ticker not found."`), None when the
    body was not one (a plain-text `404 page not found` points at a wrong base URL instead).
    """

    def __init__(self, provider: str, endpoint: str, detail: str, reason: str | None = None) -> None:
        super().__init__(provider, endpoint, detail)
        self.reason = reason


class UpstreamRateLimited(UpstreamError):
    """429 even after waiting for the window the upstream announced."""


class UpstreamUnavailable(UpstreamError):
    """5xx, a timeout, or a connection failure; worth retrying at the next refresh."""


class UpstreamBadPayload(UpstreamError):
    """The answer is not the JSON the upstream documents; it was rejected whole."""
