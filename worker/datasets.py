"""What one refresh of each per-symbol dataset fetches and stores for one symbol.

- expirations: the listed dates.
- chains: the chains of the selected expirations (read from the stored expirations, fetched
  first if none are stored), strikes limited around the last stored price if configured, plus
  the chain index the reader uses to find them. A symbol's chains are stored together or not at
  all: one failed expiration keeps all of the previous ones.
- history: daily bars over the lookback, and the indicators computed from them (source
  `computed`), stored together.
- intraday: bars of the configured length over the intraday lookback.
- indicators: fetched from Polygon (source `polygon`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from reader import keys
from reader.calendar import EXCHANGE_TZ
from reader.clock import Clock
from reader.models import ChainIndex, Expirations, Quote
from worker.config import Config
from worker.errors import WorkerError
from worker.indicators import compute_indicators
from worker.providers import Providers
from worker.providers.base import Freshness, IndicatorSpec
from worker.selection import select_expirations, strike_range
from worker.store import Entry, Store

_P = TypeVar("_P")


def _enabled(provider: _P | None, dataset: str) -> _P:
    if provider is None:
        raise WorkerError(f"datasets.{dataset} is disabled in config.yaml; enable it to refresh {dataset}")
    return provider


def indicator_spec(config: Config) -> IndicatorSpec:
    settings = config.datasets.indicators
    return IndicatorSpec(
        sma=tuple(settings.sma), ema=tuple(settings.ema), rsi=tuple(settings.rsi), macd=settings.macd
    )


@dataclass
class DatasetFetcher:
    """Fetches one symbol of any per-symbol dataset; `freshness(dataset)` stamps what it fetches."""

    config: Config
    providers: Providers
    store: Store
    clock: Clock
    freshness: dict[str, Freshness]

    def today(self) -> date:
        now: datetime = self.clock()
        return now.astimezone(EXCHANGE_TZ).date()

    async def expirations(self, symbol: str) -> list[Entry] | None:
        found = await _enabled(self.providers.expirations, "expirations").fetch_expirations(
            symbol, freshness=self.freshness["expirations"]
        )
        return None if found is None else [(keys.expirations(symbol), found)]

    async def chains(self, symbol: str) -> list[Entry] | None:
        chains = _enabled(self.providers.chains, "chains")
        selection = self.config.datasets.chains.selection_for(symbol)
        entries: list[Entry] = []
        listed = await self.store.get(Expirations, keys.expirations(symbol))
        if listed is None or listed.fresh_until <= self.clock():
            listed = await _enabled(self.providers.expirations, "expirations").fetch_expirations(
                symbol, freshness=self.freshness["expirations"]
            )
            if listed is None:
                return None
            entries.append((keys.expirations(symbol), listed))
        chosen = select_expirations(listed.dates, self.today(), selection)
        strikes = strike_range(await self._last_price(symbol, selection.strike_window_pct), selection)
        freshness = self.freshness["chains"]
        kept = []
        for expiration in chosen:
            chain = await chains.fetch_chain(symbol, expiration, freshness=freshness, strikes=strikes)
            if chain is not None:
                entries.append((keys.chain(symbol, expiration), chain))
                kept.append(expiration)
        now = self.clock()
        index = ChainIndex(
            source=chains.name,
            fetched_at=now,
            fresh_until=freshness(now),
            symbol=symbol,
            expirations=tuple(kept),
        )
        return [*entries, (keys.chain_index(symbol), index)]

    async def _last_price(self, symbol: str, window_pct: float | None) -> float | None:
        if window_pct is None:
            return None
        quote = await self.store.get(Quote, keys.quote(symbol))
        if quote is None:
            batch = await self.providers.quotes.fetch_quotes([symbol], freshness=self.freshness["quotes"])
            quote = next(iter(batch.quotes), None)
        return None if quote is None else quote.last or quote.prevclose

    async def history(self, symbol: str) -> list[Entry] | None:
        settings = self.config.datasets
        today = self.today()
        start = today - timedelta(days=settings.history.daily.lookback_days)
        bars = await _enabled(self.providers.history, "history").fetch_history(
            symbol, "1d", start, today, freshness=self.freshness["history"]
        )
        if bars is None:
            return None
        entries: list[Entry] = [(keys.history(symbol, "1d"), bars)]
        if settings.indicators.enabled and settings.indicators.source == "computed" and bars.bars:
            entries.append((keys.indicators(symbol), compute_indicators(bars, indicator_spec(self.config))))
        return entries

    async def intraday(self, symbol: str) -> list[Entry] | None:
        intraday = self.config.datasets.history.intraday
        if intraday is None:
            return []
        today = self.today()
        start = today - timedelta(days=intraday.lookback_days)
        bars = await _enabled(self.providers.history, "history").fetch_history(
            symbol, intraday.bar, start, today, freshness=self.freshness["intraday"]
        )
        return None if bars is None else [(keys.history(symbol, intraday.bar), bars)]

    async def indicators(self, symbol: str) -> list[Entry] | None:
        provider = _enabled(self.providers.indicators, "indicators")
        found = await provider.fetch_indicators(
            symbol, indicator_spec(self.config), freshness=self.freshness["indicators"]
        )
        return None if found is None else [(keys.indicators(symbol), found)]
