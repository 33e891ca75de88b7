"""Upstream APIs behind the `worker.providers.base` Protocols, and the one place that builds them.

Each upstream gets one `RateGate`, shared by every dataset it serves and, through Redis, by every
worker process, so that together they stay under its `rate_per_min`; and one `UpstreamHealth`
(its circuit breaker and incident log), shared by the datasets, so that every job of the process
stops calling an upstream that keeps failing.

Waits for an announced window follow the injected clock: a clock that can also sleep (a test's
`FakeClock`, whose `sleep` moves it on) paces them, so that no test sleeps through a rate window.
Waits for the budget follow the Redis server's clock (or this process's, without Redis): real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import redis.asyncio

from reader.clock import Clock, utc_now
from worker.config import Config, ProviderConfig, Secrets
from worker.health import UpstreamHealth
from worker.plan import dataset_plans, used_upstreams
from worker.providers.base import (
    ChainProvider,
    ExpirationsProvider,
    HistoryProvider,
    IndicatorProvider,
    QuoteBatch,
    QuoteProvider,
)
from worker.providers.client import UpstreamClient
from worker.providers.http import RATE_LIMIT_RETRIES
from worker.providers.polygon import PolygonProvider
from worker.providers.tradier import TradierProvider
from worker.ratelimit import RateGate

__all__ = ["Providers", "QuoteBatch", "QuoteProvider", "build_providers", "running_health"]


@dataclass(frozen=True)
class Providers:
    """The provider of each dataset, as config.yaml chose them; None for a dataset that calls none
    (disabled, or indicators computed from stored bars)."""

    quotes: QuoteProvider
    expirations: ExpirationsProvider | None
    chains: ChainProvider | None
    history: HistoryProvider | None
    indicators: IndicatorProvider | None


def build_providers(
    config: Config,
    secrets: Secrets,
    session: aiohttp.ClientSession,
    *,
    clock: Clock = utc_now,
    gates: Mapping[str, RateGate] | None = None,
    health: Mapping[str, UpstreamHealth] | None = None,
    redis_client: redis.asyncio.Redis | None = None,
) -> Providers:
    """A client per upstream that an enabled dataset uses; `ConfigError` if its key is unset.
    A gate of `gates` (the running ones, on a reload) is kept and retuned to the new limits, so
    that requests in flight and new ones share one budget at the new rate; an upstream's `health`
    (its breaker and incident in progress) is kept when its breaker settings did not change. New gates keep
    their budgets in `redis_client`, shared with every worker using it (None: in this process)."""
    plans = dataset_plans(config)
    names = used_upstreams(config)

    def options(name: str) -> dict[str, Any]:
        settings: ProviderConfig = getattr(config.providers, name)
        return {
            "base_url": settings.base_url,
            "api_key": secrets.api_key(name),
            "gate": _reuse(gates, name, config) or _gate(name, config, clock, redis_client),
            "batch_size": settings.batch_size,
            "timeout_s": settings.timeout_s,
            "clock": clock,
            "health": _reuse_health(health, name, settings) or _health(name, settings, clock, health),
        }

    tradier = TradierProvider(session, **options("tradier")) if "tradier" in names else None
    polygon = PolygonProvider(session, **options("polygon")) if "polygon" in names else None
    by_name: dict[str, TradierProvider | PolygonProvider | None] = {"tradier": tradier, "polygon": polygon}
    quotes = by_name[plans["quotes"].source]
    assert quotes is not None  # used_upstreams always includes the quotes provider
    return Providers(
        quotes=quotes,
        expirations=tradier if plans["expirations"].calls else None,
        chains=by_name[plans["chains"].source] if plans["chains"].calls else None,
        history=by_name[plans["history"].source] if plans["history"].calls else None,
        indicators=polygon if plans["indicators"].calls else None,
    )


def _reuse(gates: Mapping[str, RateGate] | None, name: str, config: Config) -> RateGate | None:
    """The running gate of upstream `name`, retuned to `config`'s limits: jobs in flight hold it
    too, and must pace at the new rate from now on, not at the old one until they end."""
    gate = (gates or {}).get(name)
    if gate is not None:
        settings: ProviderConfig = getattr(config.providers, name)
        gate.retune(settings.rate_per_min, settings.max_concurrency, max_wait_s=_max_wait_s(name, config))
    return gate


def running_gates(providers: Providers) -> dict[str, RateGate]:
    """The gate of each upstream client in `providers`, by upstream name."""
    return {name: client.gate for name, client in _clients(providers).items()}


def running_health(providers: Providers) -> dict[str, UpstreamHealth]:
    """The health (breaker, incidents) of each upstream client in `providers`, by upstream name."""
    return {name: client.health for name, client in _clients(providers).items()}


def _clients(providers: Providers) -> dict[str, UpstreamClient]:
    clients: dict[str, UpstreamClient] = {}
    for client in (
        providers.quotes,
        providers.expirations,
        providers.chains,
        providers.history,
        providers.indicators,
    ):
        if isinstance(client, UpstreamClient):
            clients[client.name] = client
    return clients


def _reuse_health(
    health: Mapping[str, UpstreamHealth] | None, name: str, settings: ProviderConfig
) -> UpstreamHealth | None:
    kept = (health or {}).get(name)
    if kept is None or (kept.breaker.failures, kept.breaker.open_s) != (
        settings.breaker_failures,
        settings.breaker_open_s,
    ):
        return None
    return kept


def _health(
    name: str, settings: ProviderConfig, clock: Clock, running: Mapping[str, UpstreamHealth] | None
) -> UpstreamHealth:
    """A new health for upstream `name`; the day counts the running one has not saved yet go with it."""
    kept = (running or {}).get(name)
    return UpstreamHealth(
        name,
        failures=settings.breaker_failures,
        open_s=settings.breaker_open_s,
        clock=clock,
        usage=kept.usage if kept is not None else None,
    )


def _sleep(clock: Clock) -> Callable[[float], Awaitable[None]]:
    """The clock's own `sleep` if it has one (a test's clock that moves when waited on), else asyncio's."""
    sleep = getattr(clock, "sleep", None)
    return sleep if callable(sleep) else asyncio.sleep


def _gate(name: str, config: Config, clock: Clock, redis_client: redis.asyncio.Redis | None) -> RateGate:
    """One upstream's gate, shared by its datasets. What a job's time leaves after its calls (each
    attempt may take timeout_s) may go to waiting for rate windows; past that a refresh fails with
    one line instead of hitting the job timeout."""
    settings: ProviderConfig = getattr(config.providers, name)
    return RateGate(
        name,
        settings.rate_per_min,
        settings.max_concurrency,
        max_wait_s=_max_wait_s(name, config),
        clock=clock,
        sleep=_sleep(clock),
        redis_client=redis_client,
    )


def _max_wait_s(name: str, config: Config) -> float:
    settings: ProviderConfig = getattr(config.providers, name)
    calls_s = (RATE_LIMIT_RETRIES + 1) * settings.timeout_s + 5
    return max(config.worker.job_timeout_s - calls_s, 0.0)
