"""What one worker process holds while it runs: config, HTTP session, providers, store and clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import aiohttp
import redis.asyncio

from reader.clock import Clock, utc_now
from worker import schedule
from worker.config import Config, Secrets
from worker.providers import QuoteProvider, build_quote_provider
from worker.refresh import RefreshReport, refresh_quotes
from worker.store import Store


class Runtime:
    """Refreshes datasets of `config` through `provider` into `store`; time comes from `clock`."""

    def __init__(
        self, config: Config, provider: QuoteProvider, store: Store, *, clock: Clock = utc_now
    ) -> None:
        self.config = config
        self.provider = provider
        self.store = store
        self.clock = clock

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: Config, secrets: Secrets, redis_client: redis.asyncio.Redis, *, clock: Clock = utc_now
    ) -> AsyncIterator[Runtime]:
        """A runtime with one pooled HTTP session, closed on exit."""
        connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector) as session:
            provider = build_quote_provider(config, secrets, session, clock=clock)
            store = Store(redis_client, keep_stale_s=config.cache.keep_stale_s, clock=clock)
            yield cls(config, provider, store, clock=clock)

    def fresh_until(self, now: datetime) -> datetime:
        """When an item fetched `now` stops being fresh: the next scheduled refresh, plus slack."""
        interval_s = self.config.datasets.quotes.interval_s
        return schedule.next_refresh(now, interval_s) + timedelta(seconds=self.config.cache.fresh_slack_s)

    def due(self, now: datetime) -> list[schedule.DueBatch]:
        """The quote batches of the watchlist due in the slot of `now`."""
        return schedule.due_batches(
            "quotes",
            self.config.watchlist,
            batch_size=self.provider.batch_size,
            interval_s=self.config.datasets.quotes.interval_s,
            now=now,
        )

    async def refresh_quotes(self, symbols: Sequence[str]) -> RefreshReport:
        """Refresh one batch of quotes."""
        return await refresh_quotes(self.provider, self.store, symbols, freshness=self.fresh_until)

    async def refresh_watchlist(self) -> RefreshReport:
        """Refresh every quote batch of the watchlist at once, as far as the rate gate lets them."""
        batches = schedule.batches(self.config.watchlist, self.provider.batch_size)
        reports = await asyncio.gather(*(self.refresh_quotes(b) for b in batches))
        return RefreshReport.combine("quotes", reports)

    def __repr__(self) -> str:
        return f"<Runtime symbols={len(self.config.watchlist)} provider={self.provider!r}>"
