"""What one refresh of each per-symbol dataset fetches and stores for one symbol.

- expirations: the listed dates.
- chains: the chains of the selected expirations (read from the stored expirations, fetched
  first if none are stored or they are stale), strikes limited around the last price if
  configured, plus the chain index the reader uses to find them. A chain the upstream sends
  without the underlying's price (Tradier) gets that of the stored quote, if under a day old. A
  symbol's chains are stored together or not at all: one failed expiration keeps all of the
  previous ones, and an answer of "no chain" for every date stores nothing.
- history: daily bars over the lookback, and the indicators computed from them (source
  `computed`), stored together.
- intraday: bars of the configured length over the intraday lookback.
- indicators: fetched from Polygon (source `polygon`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar

from reader import keys
from reader.calendar import exchange_date
from reader.clock import Clock
from reader.models import BarInterval, ChainIndex, Expirations, Quote
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


_PRICE_MAX_AGE = timedelta(days=1)

ON_DEMAND_INTRADAY_DAYS = 5
"""Days of intraday bars an on-demand ask fetches when the config has no intraday section."""


def _first_day(today: date, lookback_days: int) -> date:
    """The first day of a lookback of `lookback_days` days that ends with `today` (both included)."""
    return today - timedelta(days=lookback_days - 1)


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
        return exchange_date(self.clock())

    async def expirations(self, symbol: str) -> list[Entry] | None:
        found = await _enabled(self.providers.expirations, "expirations").fetch_expirations(
            symbol, freshness=self.freshness["expirations"]
        )
        return None if found is None else [(keys.expirations(symbol), found)]

    async def chains(self, symbol: str, extra: date | None = None) -> list[Entry] | None:
        """`extra`: fetch that one expiration instead of the configured ones (an on-demand ask), added
        to the index; nothing if it is not listed."""
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
        today = self.today()
        if extra is None:
            chosen = select_expirations(listed.dates, today, selection)
        elif extra in listed.dates:
            chosen = (extra,)
        else:
            return entries  # not listed: nothing to fetch (the caller tells the asker which are)
        quote, quote_entries = await self._underlying_quote(symbol, selection.strike_window_pct)
        strikes = strike_range(None if quote is None else quote.reference_price, selection)
        freshness = self.freshness["chains"]
        fetched = await asyncio.gather(
            *(chains.fetch_chain(symbol, d, freshness=freshness, strikes=strikes) for d in chosen)
        )
        found = {chain.expiration: chain.priced_by(quote) for chain in fetched if chain is not None}
        if not found:
            # No chain to store: the chains stored before stay, and so does their index; expirations
            # fetched on the way are still worth keeping.
            return entries or None
        # A date the upstream had nothing for this time keeps its previous chain, if one is indexed;
        # one extra expiration joins the ones kept.
        previous = await self.store.get(ChainIndex, keys.chain_index(symbol))
        kept = previous.expirations if previous is not None else ()
        still_kept = {d for d in kept if (d in chosen if extra is None else d >= today)}
        now = self.clock()
        index = ChainIndex(
            source=chains.name,
            fetched_at=now,
            fresh_until=freshness(now),
            symbol=symbol,
            expirations=tuple(sorted(still_kept | set(found))),
        )
        chain_entries: list[Entry] = [(keys.chain(symbol, d), chain) for d, chain in sorted(found.items())]
        return [*entries, *quote_entries, *chain_entries, (keys.chain_index(symbol), index)]

    async def _underlying_quote(
        self, symbol: str, window_pct: float | None
    ) -> tuple[Quote | None, list[Entry]]:
        """The quote whose price centres the strike window and prices a chain sent without one: the
        stored quote if it is under a day old (one GET, always read); else, only when a strike
        window needs a price, a fresh one, which is stored with the chains (so the call is not
        wasted). Without a window no quote call is made: the quotes dataset keeps the quote, and the
        reader prices a chain stored without one from the cached quote at read time."""
        quote = await self.store.get(Quote, keys.quote(symbol))
        if quote is not None and self.clock() - quote.fetched_at <= _PRICE_MAX_AGE:
            return quote, []
        if window_pct is None:
            return None, []
        batch = await self.providers.quotes.fetch_quotes([symbol], freshness=self.freshness["quotes"])
        quote = next((q for q in batch.quotes if q.symbol == symbol), None)
        return quote, [] if quote is None else [(keys.quote(symbol), quote)]

    async def history(self, symbol: str) -> list[Entry] | None:
        settings = self.config.datasets
        today = self.today()
        start = _first_day(today, settings.history.daily.lookback_days)
        bars = await _enabled(self.providers.history, "history").fetch_history(
            symbol, "1d", start, today, freshness=self.freshness["history"]
        )
        if bars is None:
            return None
        entries: list[Entry] = [(keys.history(symbol, "1d"), bars)]
        if settings.indicators.enabled and settings.indicators.source == "computed" and bars.bars:
            entries.append((keys.indicators(symbol), compute_indicators(bars, indicator_spec(self.config))))
        return entries

    async def intraday(self, symbol: str, bar: BarInterval | None = None) -> list[Entry] | None:
        """Bars of the configured length, or of `bar` (an on-demand ask; the configured lookback, else
        `ON_DEMAND_INTRADAY_DAYS`)."""
        intraday = self.config.datasets.history.intraday
        if intraday is None:
            if bar is None:
                return []
            length, lookback_days = bar, ON_DEMAND_INTRADAY_DAYS
        else:
            length, lookback_days = bar or intraday.bar, intraday.lookback_days
        today = self.today()
        start = _first_day(today, lookback_days)
        bars = await _enabled(self.providers.history, "history").fetch_history(
            symbol, length, start, today, freshness=self.freshness["intraday"]
        )
        return None if bars is None else [(keys.history(symbol, length), bars)]

    async def indicators(self, symbol: str) -> list[Entry] | None:
        provider = _enabled(self.providers.indicators, "indicators")
        found = await provider.fetch_indicators(
            symbol, indicator_spec(self.config), freshness=self.freshness["indicators"]
        )
        return None if found is None else [(keys.indicators(symbol), found)]
