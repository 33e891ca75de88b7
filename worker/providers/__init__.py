"""Upstream APIs behind the `worker.providers.base` Protocols, and the one place that builds them."""

from __future__ import annotations

import aiohttp

from reader.clock import Clock, utc_now
from worker.config import Config, Secrets
from worker.providers.base import QuoteBatch, QuoteProvider
from worker.providers.tradier import TradierProvider
from worker.ratelimit import RateGate

__all__ = ["QuoteBatch", "QuoteProvider", "build_quote_provider"]


def build_quote_provider(
    config: Config, secrets: Secrets, session: aiohttp.ClientSession, *, clock: Clock = utc_now
) -> QuoteProvider:
    """The quotes provider config.yaml names, with its own rate gate; `ConfigError` if its key is unset."""
    name = config.datasets.quotes.provider
    settings = config.providers.tradier
    gate = RateGate(name, settings.rate_per_min, settings.max_concurrency, clock=clock)
    return TradierProvider(
        session,
        base_url=settings.base_url,
        api_key=secrets.api_key(name),
        gate=gate,
        batch_size=settings.batch_size,
        timeout_s=settings.timeout_s,
        clock=clock,
    )
