"""What one worker process holds while it runs: config, calendar, HTTP session, providers, store
and clock; and how a new config is applied to it without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from functools import partial
from typing import cast

import aiohttp
import redis.asyncio

from reader.calendar import MarketCalendar
from reader.clock import Clock, utc_now
from reader.jobs import DATASETS
from reader.models import BarInterval
from reader.ondemand import FetchRequest
from worker import schedule
from worker.config import Config, Secrets
from worker.datasets import DatasetFetcher
from worker.listing import Listing, check_listed
from worker.logs import fields
from worker.plan import COMPUTED, DatasetPlan, dataset_plans
from worker.priority import dataset_ranks
from worker.progress import DatasetProgress, RefreshProgress
from worker.providers import Providers, build_providers, running_gates, running_health
from worker.providers.base import Freshness
from worker.ratelimit import RateGate, steady_rate_per_min
from worker.refresh import FetchOne, RefreshReport, refresh_quotes, refresh_symbols
from worker.store import Store

log = logging.getLogger(__name__)

RESTART_ONLY = ("redis_url", "worker", "metrics")
"""Top-level sections a running worker cannot change: its Redis, its arq settings and its metrics server."""


class Runtime:
    """Refreshes the datasets of `config` through `providers` into `store`; time comes from `clock`."""

    def __init__(
        self,
        config: Config,
        providers: Providers,
        store: Store,
        *,
        clock: Clock = utc_now,
        calendar: MarketCalendar | None = None,
        secrets: Secrets | None = None,
        session: aiohttp.ClientSession | None = None,
        redis_client: redis.asyncio.Redis | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.calendar = calendar or MarketCalendar(config.schedule.exchange, config.schedule.extra_closed)
        self._secrets = secrets
        self._session = session
        self._redis = redis_client
        self._use(config, providers)

    def _use(self, config: Config, providers: Providers) -> None:
        self.config = config
        self.providers = providers
        self.store.keep_stale_s = config.cache.keep_stale_s
        self.plans: dict[str, DatasetPlan] = dataset_plans(config)
        self.scheduled: dict[str, DatasetPlan] = {n: p for n, p in self.plans.items() if p.scheduled}
        self.ranks: dict[str, int] = dataset_ranks(config.priority)
        """Each dataset's rank (`worker.priority`): its jobs' place in line and at the rate gate."""
        self.upstreams: dict[str, str | None] = {name: plan.upstream for name, plan in self.plans.items()}
        _log_stretched(self.plans.values())
        freshness: dict[str, Freshness] = {name: partial(self.fresh_until, name) for name in DATASETS}
        self.fetcher = DatasetFetcher(config, providers, self.store, self.clock, freshness)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: Config, secrets: Secrets, redis_client: redis.asyncio.Redis, *, clock: Clock = utc_now
    ) -> AsyncIterator[Runtime]:
        """A runtime with one pooled HTTP session, closed on exit; its rate budgets live in
        `redis_client`, shared with every worker process using the same Redis."""
        connector = aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
        async with aiohttp.ClientSession(connector=connector) as session:
            providers = build_providers(config, secrets, session, clock=clock, redis_client=redis_client)
            store = Store(redis_client, keep_stale_s=config.cache.keep_stale_s, clock=clock)
            yield cls(
                config,
                providers,
                store,
                clock=clock,
                secrets=secrets,
                session=session,
                redis_client=redis_client,
            )

    def reconfigure(self, new: Config) -> list[str]:
        """Apply `new` from the next refresh on; returns the changes it could not apply (they need a
        restart and keep their running values). Raises `ConfigError` (nothing applied) if `new`
        needs an upstream whose key is not set."""
        ignored = [name for name in RESTART_ONLY if getattr(new, name) != getattr(self.config, name)]
        new = new.model_copy(update={name: getattr(self.config, name) for name in ignored})
        providers = self.providers
        new_sources = _sources(dataset_plans(new))
        upstreams_changed = new.providers != self.config.providers or new_sources != _sources(self.plans)
        if upstreams_changed and self._secrets is not None and self._session is not None:
            gates, health = running_gates(self.providers), running_health(self.providers)
            providers = build_providers(
                new,
                self._secrets,
                self._session,
                clock=self.clock,
                gates=gates,
                health=health,
                redis_client=self._redis,
            )
        if new.schedule != self.config.schedule:  # e.g. an unscheduled closure announced today
            self.calendar = MarketCalendar(new.schedule.exchange, new.schedule.extra_closed)
        self._use(new, providers)
        return ignored

    def fresh_until(self, dataset: str, now: datetime) -> datetime:
        """When an item of `dataset` fetched `now` stops being fresh: its next scheduled refresh,
        plus `cache.fresh_slack_s` for that refresh to land."""
        after = schedule.next_refresh(self.plans[dataset].cadence, self.calendar, now)
        return after + timedelta(seconds=self.config.cache.fresh_slack_s)

    def batch_size(self, dataset: str) -> int:
        """Symbols per job: one upstream call's worth for quotes, `worker.symbols_per_job` otherwise."""
        return self.providers.quotes.batch_size if dataset == "quotes" else self.config.worker.symbols_per_job

    def batches(self, dataset: str, symbols: Sequence[str] | None = None) -> list[tuple[str, ...]]:
        """`symbols` (default: the watchlist) cut into the jobs of `dataset`."""
        chosen = self.config.watchlist if symbols is None else symbols
        return schedule.batches(chosen, self.batch_size(dataset))

    async def refresh(self, dataset: str, symbols: Sequence[str]) -> RefreshReport:
        """Refresh one batch of `dataset`."""
        if dataset == "quotes":
            return await refresh_quotes(
                self.providers.quotes, self.store, symbols, freshness=partial(self.fresh_until, "quotes")
            )
        fetch_one = getattr(self.fetcher, dataset)
        source = self.plans[dataset].source
        return await refresh_symbols(
            dataset, source, self.store, symbols, fetch_one, check_listed=self.check_listed
        )

    async def check_listed(self, symbols: Sequence[str]) -> Listing:
        """Which of `symbols` the quotes upstream lists (`worker.listing`): what tells a symbol without
        data of a dataset now from one the upstream does not know."""
        freshness = partial(self.fresh_until, "quotes")
        return await check_listed(self.providers.quotes, self.store, symbols, freshness=freshness)

    def on_demand_dataset(self, request: FetchRequest) -> str:
        """The dataset whose refresh serves `request`: computed indicators come with the daily bars."""
        if request.dataset == "indicators" and self.plans["indicators"].source == COMPUTED:
            return "history"
        return request.dataset

    async def fetch(self, request: FetchRequest) -> RefreshReport:
        """An on-demand fetch: the refresh of one symbol, with the request's extra expiration
        (chains) or bar length (intraday)."""
        dataset = self.on_demand_dataset(request)
        if dataset == "quotes":
            return await self.refresh("quotes", [request.symbol])
        fetch_one: FetchOne = getattr(self.fetcher, dataset)
        if dataset == "chains" and request.option:
            fetch_one = partial(self.fetcher.chains, extra=date.fromisoformat(request.option))
        elif dataset == "intraday":
            fetch_one = partial(self.fetcher.intraday, bar=cast("BarInterval", request.option))
        source = self.plans[dataset].source
        return await refresh_symbols(
            dataset, source, self.store, [request.symbol], fetch_one, check_listed=self.check_listed
        )

    async def refresh_watchlist(self, progress: RefreshProgress | None = None) -> list[RefreshReport]:
        """Refresh every scheduled dataset of the whole watchlist once, in `DATASETS` order, telling
        `progress` after each batch and each dataset (`worker.progress`)."""
        return [await self._refresh_all(dataset, progress) for dataset in self.scheduled]

    async def _refresh_all(self, dataset: str, progress: RefreshProgress | None) -> RefreshReport:
        """Every batch of `dataset` at once (the rate gate paces them); `progress` told as they end."""
        gate = running_gates(self.providers).get(self.plans[dataset].upstream or "")
        calls_before = _granted(gate)
        tracker = DatasetProgress(
            dataset,
            total=len(self.config.watchlist),
            planned_calls=self.plans[dataset].calls,
            rate_per_min=steady_rate_per_min(gate.rate_per_min) if gate is not None else None,
        )
        if progress is not None:
            progress.update(tracker)

        async def one(batch: tuple[str, ...]) -> RefreshReport:
            report = await self.refresh(dataset, batch)
            tracker.done += len(batch)
            tracker.calls = _granted(gate) - calls_before
            if progress is not None:
                progress.update(tracker)
            return report

        parts = await asyncio.gather(*(one(batch) for batch in self.batches(dataset)))
        tracker.ended = time.monotonic()
        report = RefreshReport.combine(dataset, parts)
        if progress is not None:
            progress.finished(tracker, report)
        return report

    def __repr__(self) -> str:
        return f"<Runtime symbols={len(self.config.watchlist)} datasets={','.join(self.scheduled)}>"


def _log_stretched(plans: Iterable[DatasetPlan]) -> None:
    """One line when the allowance cannot hold every cadence: which datasets, configured -> held."""
    stretched = {
        plan.name: ",".join(
            f"{phase}:{seconds:g}s->{plan.cadence.seconds[phase]:g}s"
            for phase, seconds in plan.configured.seconds.items()
            if plan.cadence.seconds[phase] != seconds
        )
        for plan in plans
        if plan.stretched
    }
    if stretched:
        log.warning(
            "plan.stretched %s",
            fields(**stretched, note='"over the allowance: refreshed less often; see check-config"'),
        )


def _granted(gate: RateGate | None) -> int:
    """Requests `gate` let through so far (0 without a gate: a computed dataset)."""
    return sum(gate.counters().granted.values()) if gate is not None else 0


def _sources(plans: Mapping[str, DatasetPlan]) -> dict[str, str]:
    """Which upstream each dataset that calls one uses: a change means building new clients."""
    return {name: plan.source for name, plan in plans.items() if plan.calls}
