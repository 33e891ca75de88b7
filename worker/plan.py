"""Which datasets a config refreshes, from which upstream and how often: the one reading of
`datasets` that the scheduler, the providers, the freshness of items and the budget share.

How often is the cadence each dataset can hold under its upstream's allowance
(`worker.allowance`): the configured one, or a stretched one when the plan needs more calls than
the allowance gives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from reader.jobs import DATASETS
from reader.symbols import parse_symbol
from worker import schedule
from worker.allowance import Allowance, Demand, share_allowance
from worker.config import Config
from worker.dataset_config import Scheduled
from worker.priority import dataset_ranks
from worker.schedule import Cadence

COMPUTED = "computed"
"""The `source` of a dataset that costs no upstream call (indicators from stored bars)."""


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset under a config.

    `cadence` is the one it holds under its upstream's allowance: what its refreshes and its
    `fresh_until` follow, even when it has no jobs of its own (chains fetch missing expirations
    themselves; computed indicators come with the daily bars). `configured` is the one config.yaml
    asks for (the same unless the allowance cannot hold it). `scheduled`: refreshed by its own
    jobs. `calls` upstream calls per refresh of the watchlist.
    """

    name: str
    source: str
    cadence: Cadence
    scheduled: bool
    calls: float
    configured: Cadence

    @property
    def stretched(self) -> bool:
        """Refreshed less often than configured: the allowance cannot hold its cadence."""
        return self.cadence != self.configured

    @property
    def upstream(self) -> str | None:
        """The upstream it calls, if any."""
        return None if self.source == COMPUTED else self.source


def dataset_plans(config: Config) -> dict[str, DatasetPlan]:
    """Every dataset, in `reader.jobs.DATASETS` order (the order a new symbol is filled), at the
    cadence it can hold (`plan_allowance`)."""
    plans = _configured_plans(config)
    holds = _allowance(config, plans.values()).holds
    return {
        name: replace(plan, cadence=holds[name].held) if name in holds else plan
        for name, plan in plans.items()
    }


def plan_allowance(config: Config) -> Allowance:
    """How each upstream's allowance is shared by the datasets of `config` (`worker.allowance`)."""
    return _allowance(config, _configured_plans(config).values())


def _allowance(config: Config, plans: Iterable[DatasetPlan]) -> Allowance:
    ranks = dataset_ranks(config.priority)
    demands = [
        Demand(plan.name, plan.upstream, plan.configured, plan.calls, ranks[plan.name])
        for plan in plans
        if plan.upstream is not None and plan.calls
    ]
    rates = {d.upstream: getattr(config.providers, d.upstream).rate_per_min for d in demands}
    return share_allowance(demands, rates, floor_s=config.worker.tick_s)


def _quote_calls(config: Config) -> int:
    """Upstream calls of one quotes refresh of the watchlist: one per batch; Polygon asks its
    indices in a call of their own, so a batch of stocks and indices costs two."""
    quotes = config.datasets.quotes
    batches = schedule.batches(config.watchlist, getattr(config.providers, quotes.provider).batch_size)
    if quotes.provider != "polygon":
        return len(batches)
    calls = 0
    for batch in batches:
        indices = sum(parse_symbol(symbol).kind == "index" for symbol in batch)
        calls += (indices < len(batch)) + (indices > 0)
    return calls


def _configured_plans(config: Config) -> dict[str, DatasetPlan]:
    """Every dataset at its configured cadence."""
    datasets, symbols = config.datasets, len(config.watchlist)
    quotes, chains, history, indicators = (
        datasets.quotes,
        datasets.chains,
        datasets.history,
        datasets.indicators,
    )
    intraday = history.intraday
    polygon_indicators = indicators.source == "polygon"
    delay_s = config.schedule.closing_delay_s

    def cadence(section: Scheduled) -> Cadence:
        return Cadence(dict(section.cadence_s), section.close_refresh, delay_s)

    def plan(name: str, source: str, section: Scheduled, scheduled: bool, calls: float) -> DatasetPlan:
        configured = cadence(section)
        return DatasetPlan(name, source, configured, scheduled, calls, configured)

    windows = len(indicators.sma) + len(indicators.ema) + len(indicators.rsi) + (indicators.macd is not None)
    plans = [
        plan("quotes", quotes.provider, quotes, True, _quote_calls(config)),
        plan(
            "expirations",
            datasets.expirations.provider,
            datasets.expirations,
            datasets.expirations.enabled,
            symbols if datasets.expirations.enabled or chains.enabled else 0,
        ),
        plan(
            "chains",
            chains.provider,
            chains,
            chains.enabled,
            sum(chains.selection_for(s).expirations for s in config.watchlist) if chains.enabled else 0,
        ),
        plan(
            "history",
            history.provider,
            history.daily,
            history.enabled,
            symbols if history.enabled else 0,
        ),
        plan(
            "intraday",
            history.provider,
            intraday or history.daily,
            history.enabled and intraday is not None,
            symbols if history.enabled and intraday else 0,
        ),
        plan(
            "indicators",
            "polygon" if polygon_indicators else COMPUTED,
            indicators if polygon_indicators else history.daily,
            indicators.enabled and polygon_indicators,
            symbols * windows if indicators.enabled and polygon_indicators else 0,
        ),
    ]
    if tuple(p.name for p in plans) != DATASETS:
        raise RuntimeError(
            f"plans of {[p.name for p in plans]} do not follow reader.jobs.DATASETS {DATASETS}"
        )
    return {p.name: p for p in plans}


def scheduled_plans(config: Config) -> dict[str, DatasetPlan]:
    """The datasets with jobs of their own."""
    return {name: plan for name, plan in dataset_plans(config).items() if plan.scheduled}


def used_upstreams(config: Config) -> list[str]:
    """The upstreams the config calls (their keys must be set), quotes' first."""
    return list(
        dict.fromkeys(
            p.upstream for p in dataset_plans(config).values() if p.calls and p.upstream is not None
        )
    )
