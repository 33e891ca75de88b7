"""Upstream APIs behind the `worker.providers.base` Protocols, and the one place that builds them."""

from __future__ import annotations

import aiohttp

from reader.clock import Clock, utc_now
from worker.config import Config, Secrets
from worker.providers.base import QuoteBatch, QuoteProvider
from worker.providers.http import RATE_LIMIT_RETRIES
from worker.providers.tradier import TradierProvider
from worker.ratelimit import RateGate

__all__ = ["QuoteBatch", "QuoteProvider", "build_quote_provider"]


def build_quote_provider(
    config: Config, secrets: Secrets, session: aiohttp.ClientSession, *, clock: Clock = utc_now
) -> QuoteProvider:
    """The quotes provider config.yaml names, with its own rate gate; `ConfigError` if its key is unset."""
    name = config.datasets.quotes.provider
    settings = config.providers.tradier
    # What a job's time leaves after its calls (each attempt may take timeout_s) may go to waiting
    # for rate windows; past that a refresh fails with one line instead of hitting the job timeout.
    calls_s = (RATE_LIMIT_RETRIES + 1) * settings.timeout_s + 5
    gate = RateGate(
        name,
        settings.rate_per_min,
        settings.max_concurrency,
        max_wait_s=max(config.worker.job_timeout_s - calls_s, 0.0),
        clock=clock,
    )
    return TradierProvider(
        session,
        base_url=settings.base_url,
        api_key=secrets.api_key(name),
        gate=gate,
        batch_size=settings.batch_size,
        timeout_s=settings.timeout_s,
        clock=clock,
    )
