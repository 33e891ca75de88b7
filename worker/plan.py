"""Which datasets a config refreshes, from which upstream and how often: the one reading of
`datasets` that the scheduler, the providers, the freshness of items and the budget share.
"""

from __future__ import annotations

from dataclasses import dataclass

from reader.jobs import DATASETS
from worker.config import Config
from worker.dataset_config import Scheduled
from worker.schedule import Cadence

COMPUTED = "computed"
"""The `source` of a dataset that costs no upstream call (indicators from stored bars)."""


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset under a config.

    `cadence` is what its `fresh_until` follows, even when it has no jobs of its own (chains
    fetch missing expirations themselves; computed indicators come with the daily bars).
    `scheduled`: refreshed by its own jobs. `calls` upstream calls per refresh of the watchlist.
    """

    name: str
    source: str
    cadence: Cadence
    scheduled: bool
    calls: float

    @property
    def upstream(self) -> str | None:
        """The upstream it calls, if any."""
        return None if self.source == COMPUTED else self.source


def dataset_plans(config: Config) -> dict[str, DatasetPlan]:
    """Every dataset, in `reader.jobs.DATASETS` order (the order a new symbol is filled)."""
    datasets, symbols = config.datasets, len(config.watchlist)
    quotes, chains, history, indicators = (
        datasets.quotes,
        datasets.chains,
        datasets.history,
        datasets.indicators,
    )
    quote_batch = getattr(config.providers, quotes.provider).batch_size
    intraday = history.intraday
    polygon_indicators = indicators.source == "polygon"
    delay_s = config.schedule.closing_delay_s

    def cadence(section: Scheduled) -> Cadence:
        return Cadence(dict(section.cadence_s), section.close_refresh, delay_s)

    windows = len(indicators.sma) + len(indicators.ema) + len(indicators.rsi) + (indicators.macd is not None)
    plans = [
        DatasetPlan("quotes", quotes.provider, cadence(quotes), True, -(-symbols // quote_batch)),
        DatasetPlan(
            "expirations",
            datasets.expirations.provider,
            cadence(datasets.expirations),
            datasets.expirations.enabled,
            symbols if datasets.expirations.enabled or chains.enabled else 0,
        ),
        DatasetPlan(
            "chains",
            chains.provider,
            cadence(chains),
            chains.enabled,
            sum(chains.selection_for(s).expirations for s in config.watchlist) if chains.enabled else 0,
        ),
        DatasetPlan(
            "history",
            history.provider,
            cadence(history.daily),
            history.enabled,
            symbols if history.enabled else 0,
        ),
        DatasetPlan(
            "intraday",
            history.provider,
            cadence(intraday or history.daily),
            history.enabled and intraday is not None,
            symbols if history.enabled and intraday else 0,
        ),
        DatasetPlan(
            "indicators",
            "polygon" if polygon_indicators else COMPUTED,
            cadence(indicators if polygon_indicators else history.daily),
            indicators.enabled and polygon_indicators,
            symbols * windows if indicators.enabled and polygon_indicators else 0,
        ),
    ]
    assert tuple(p.name for p in plans) == DATASETS
    return {plan.name: plan for plan in plans}


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


def calls_per_minute(config: Config) -> dict[str, float]:
    """Upstream calls per minute each provider needs at the busiest cadences (one page per chain;
    Polygon may need more for big chains): an upper bound, as if every busiest phase overlapped."""
    calls: dict[str, float] = {}
    for plan in dataset_plans(config).values():
        if plan.upstream is not None and plan.calls:
            calls[plan.upstream] = calls.get(plan.upstream, 0.0) + plan.calls * 60 / plan.cadence.shortest_s
    return calls
