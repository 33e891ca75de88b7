"""What one worker process holds while it runs: config, HTTP session, providers, store and clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial

import aiohttp
import redis.asyncio

from reader.clock import Clock, utc_now
from reader.jobs import DATASETS
from worker import schedule
from worker.config import Config, Secrets
from worker.datasets import DatasetFetcher
from worker.plan import dataset_plans, scheduled_plans
from worker.providers import Providers, build_providers
from worker.refresh import RefreshReport, refresh_quotes, refresh_symbols
from worker.store import Store


class Runtime:
    """Refreshes the datasets of `config` through `providers` into `store`; time comes from `clock`."""

    def __init__(self, config: Config, providers: Providers, store: Store, *, clock: Clock = utc_now) -> None:
        self.config = config
        self.providers = providers
        self.store = store
        self.clock = clock
        self.plans = dataset_plans(config)
        self.intervals = {name: plan.interval_s for name, plan in scheduled_plans(config).items()}
        self.fetcher = DatasetFetcher(
            config,
            providers,
            store,
            clock,
            freshness={name: partial(self.fresh_until, name) for name in DATASETS},
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: Config, secrets: Secrets, redis_client: redis.asyncio.Redis, *, clock: Clock = utc_now
    ) -> AsyncIterator[Runtime]:
        """A runtime with one pooled HTTP session, closed on exit."""
        connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector) as session:
            providers = build_providers(config, secrets, session, clock=clock)
            store = Store(redis_client, keep_stale_s=config.cache.keep_stale_s, clock=clock)
            yield cls(config, providers, store, clock=clock)

    def fresh_until(self, dataset: str, now: datetime) -> datetime:
        """When an item of `dataset` fetched `now` stops being fresh: its next refresh, plus slack."""
        interval_s = self.plans[dataset].interval_s
        return schedule.next_refresh(now, interval_s) + timedelta(seconds=self.config.cache.fresh_slack_s)

    def batch_size(self, dataset: str) -> int:
        """Symbols per job: one upstream call's worth for quotes, `worker.symbols_per_job` otherwise."""
        return self.providers.quotes.batch_size if dataset == "quotes" else self.config.worker.symbols_per_job

    def due(self, now: datetime) -> list[schedule.DueBatch]:
        """The batches of every enabled dataset due in the slot of `now`."""
        return [
            batch
            for dataset, interval_s in self.intervals.items()
            for batch in schedule.due_batches(
                dataset,
                self.config.watchlist,
                batch_size=self.batch_size(dataset),
                interval_s=interval_s,
                now=now,
            )
        ]

    async def refresh(self, dataset: str, symbols: Sequence[str]) -> RefreshReport:
        """Refresh one batch of `dataset`."""
        if dataset == "quotes":
            return await refresh_quotes(
                self.providers.quotes, self.store, symbols, freshness=partial(self.fresh_until, "quotes")
            )
        fetch_one = getattr(self.fetcher, dataset)
        return await refresh_symbols(dataset, self.plans[dataset].source, self.store, symbols, fetch_one)

    async def refresh_watchlist(self) -> list[RefreshReport]:
        """Refresh every enabled dataset of the whole watchlist once, in `DATASETS` order."""
        reports = []
        for dataset in self.intervals:
            batches = schedule.batches(self.config.watchlist, self.batch_size(dataset))
            parts = await asyncio.gather(*(self.refresh(dataset, batch) for batch in batches))
            reports.append(RefreshReport.combine(dataset, parts))
        return reports

    def __repr__(self) -> str:
        return f"<Runtime symbols={len(self.config.watchlist)} datasets={','.join(self.intervals)}>"
