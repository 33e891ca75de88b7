"""What one refresh of each per-symbol dataset fetches and stores for one symbol.

- expirations: the listed dates.
- chains: the chains of the selected expirations (read from the stored expirations, fetched
  first if none are stored or they are stale), strikes limited around the last price if
  configured, plus the chain index the reader uses to find them. A chain the upstream sends
  without the underlying's price (Tradier) gets that of the stored quote, if under a day old. A
  symbol's chains are stored together or not at all: one failed expiration keeps all of the
  previous ones, and an answer of "no chain" for every date stores nothing.

Each returns a `worker.outcome.SymbolOutcome`. An upstream answer with nothing in it is `NoData`,
with the empty items that remember it until the dataset's next refresh (expirations without dates
and a chain index without expirations for an underlying without options; bars without bars, or
the bars stored before, for history and intraday); `worker.refresh` stores them once the symbol
is known to be listed.
- history: daily bars over the lookback, and the indicators computed from them (source
  `computed`), stored together.
- intraday: bars of the configured length over the intraday lookback.
- indicators: fetched from Polygon (source `polygon`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar

from reader import keys
from reader.calendar import exchange_date
from reader.clock import Clock
from reader.models import BarInterval, ChainIndex, Expirations, PriceHistory, Quote
from worker.config import Config
from worker.errors import WorkerError
from worker.indicators import compute_indicators
from worker.outcome import Failed, NoData, NotListed, Stored, SymbolOutcome
from worker.providers import Providers
from worker.providers.base import Freshness, IndicatorSpec
from worker.selection import select_expirations, strike_range
from worker.store import Entry, Store

_P = TypeVar("_P")

log = logging.getLogger(__name__)


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

    async def expirations(self, symbol: str) -> SymbolOutcome:
        provider = _enabled(self.providers.expirations, "expirations")
        found = await provider.fetch_expirations(symbol, freshness=self.freshness["expirations"])
        if found is None:
            return NoData(((keys.expirations(symbol), self._no_expirations(provider.name, symbol)),))
        return Stored(((keys.expirations(symbol), found),))

    async def chains(self, symbol: str, extra: date | None = None) -> SymbolOutcome:
        """`extra`: fetch that one expiration instead of the configured ones (an on-demand ask), added
        to the index; `NotListed` if it is not listed. An underlying without listed options is
        `NoData`: its empty expirations and an empty chain index remember it."""
        chains = _enabled(self.providers.chains, "chains")
        selection = self.config.datasets.chains.selection_for(symbol)
        entries: list[Entry] = []
        listed = await self.store.get(Expirations, keys.expirations(symbol))
        if listed is None or listed.fresh_until <= self.clock():
            provider = _enabled(self.providers.expirations, "expirations")
            listed = await provider.fetch_expirations(symbol, freshness=self.freshness["expirations"])
            if listed is None:
                empty = self._no_expirations(provider.name, symbol)
                no_index = (keys.chain_index(symbol), self._no_chains(chains.name, symbol))
                return NoData(((keys.expirations(symbol), empty), no_index))
            entries.append((keys.expirations(symbol), listed))
        elif not listed.dates:
            # Stored only for a listed underlying, and still fresh: no call until it is due again.
            return NoData(((keys.chain_index(symbol), self._no_chains(chains.name, symbol)),), listed=True)
        today = self.today()
        if extra is None:
            chosen = select_expirations(listed.dates, today, selection)
        elif extra in listed.dates:
            chosen = (extra,)
        else:
            return NotListed(tuple(entries))  # the caller tells the asker which are listed
        quote, quote_entries = await self._underlying_quote(symbol, selection.strike_window_pct)
        strikes = strike_range(None if quote is None else quote.reference_price, selection)
        freshness = self.freshness["chains"]
        fetched = await asyncio.gather(
            *(chains.fetch_chain(symbol, d, freshness=freshness, strikes=strikes) for d in chosen)
        )
        if quote is None and any(chain is not None and not chain.underlying_price for chain in fetched):
            # The upstream sends no underlying price (Tradier) and no recent quote is stored (an
            # on-demand chain of a symbol off the watchlist): one quote call prices the chains.
            quote, quote_entries = await self._quote_for_price(symbol)
        found = {chain.expiration: chain.priced_by(quote) for chain in fetched if chain is not None}
        if not found:
            # No chain to store: the chains stored before stay, and so does their index; expirations
            # fetched on the way are still worth keeping.
            if entries:
                return Stored(tuple(entries))
            shown = ", ".join(d.isoformat() for d in chosen) or "none"
            return Failed(f"{chains.name} returned no chain for the selected expirations ({shown})")
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
        return Stored((*entries, *quote_entries, *chain_entries, (keys.chain_index(symbol), index)))

    def _no_expirations(self, source: str, symbol: str) -> Expirations:
        """What remembers that `symbol` lists no options, until the next expirations refresh."""
        now = self.clock()
        fresh_until = self.freshness["expirations"](now)
        return Expirations(source=source, fetched_at=now, fresh_until=fresh_until, symbol=symbol, dates=())

    def _no_chains(self, source: str, symbol: str) -> ChainIndex:
        """An index without expirations: `symbol` lists no options, until the next chains refresh."""
        now = self.clock()
        fresh_until = self.freshness["chains"](now)
        return ChainIndex(
            source=source, fetched_at=now, fresh_until=fresh_until, symbol=symbol, expirations=()
        )

    async def _underlying_quote(
        self, symbol: str, window_pct: float | None
    ) -> tuple[Quote | None, list[Entry]]:
        """The quote whose price centres the strike window and prices a chain sent without one: the
        stored quote if it is under a day old (one GET, always read); else, only when a strike
        window needs a price, a fresh one, which is stored with the chains (so the call is not
        wasted). Without a window, a quote is fetched only if the chains come without a price
        (`_quote_for_price`)."""
        quote = await self.store.get(Quote, keys.quote(symbol))
        if quote is not None and self.clock() - quote.fetched_at <= _PRICE_MAX_AGE:
            return quote, []
        if window_pct is None:
            return None, []
        return await self._fetch_quote(symbol)

    async def _fetch_quote(self, symbol: str) -> tuple[Quote | None, list[Entry]]:
        """A fresh quote of `symbol` and the entry that stores it with the chains; raises `WorkerError`."""
        batch = await self.providers.quotes.fetch_quotes([symbol], freshness=self.freshness["quotes"])
        quote = next((q for q in batch.quotes if q.symbol == symbol), None)
        return quote, [] if quote is None else [(keys.quote(symbol), quote)]

    async def _quote_for_price(self, symbol: str) -> tuple[Quote | None, list[Entry]]:
        """A fresh quote of `symbol` to price chains the upstream sent without the underlying's
        price, stored with them; (None, []) if the call fails: the chains are stored unpriced then
        (the reader joins a cached quote when it has one), not lost."""
        try:
            return await self._fetch_quote(symbol)
        except WorkerError as e:
            log.info("chains.unpriced symbol=%s error=%s", symbol, e)
            return None, []

    async def history(self, symbol: str) -> SymbolOutcome:
        settings = self.config.datasets
        today = self.today()
        start = _first_day(today, settings.history.daily.lookback_days)
        provider = _enabled(self.providers.history, "history")
        bars = await provider.fetch_history(symbol, "1d", start, today, freshness=self.freshness["history"])
        if bars is None:
            empty = await self._no_bars(provider.name, symbol, "1d", "history")
            return NoData(((keys.history(symbol, "1d"), empty),))
        entries: list[Entry] = [(keys.history(symbol, "1d"), bars)]
        if settings.indicators.enabled and settings.indicators.source == "computed" and bars.bars:
            entries.append((keys.indicators(symbol), compute_indicators(bars, indicator_spec(self.config))))
        return Stored(tuple(entries))

    async def intraday(self, symbol: str, bar: BarInterval | None = None) -> SymbolOutcome:
        """Bars of the configured length, or of `bar` (an on-demand ask; the configured lookback, else
        `ON_DEMAND_INTRADAY_DAYS`)."""
        intraday = self.config.datasets.history.intraday
        if intraday is None:
            if bar is None:
                return Stored(())
            length, lookback_days = bar, ON_DEMAND_INTRADAY_DAYS
        else:
            length, lookback_days = bar or intraday.bar, intraday.lookback_days
        today = self.today()
        start = _first_day(today, lookback_days)
        provider = _enabled(self.providers.history, "history")
        freshness = self.freshness["intraday"]
        bars = await provider.fetch_history(symbol, length, start, today, freshness=freshness)
        if bars is None:
            empty = await self._no_bars(provider.name, symbol, length, "intraday")
            return NoData(((keys.history(symbol, length), empty),))
        return Stored(((keys.history(symbol, length), bars),))

    async def _no_bars(self, source: str, symbol: str, interval: BarInterval, dataset: str) -> PriceHistory:
        """What remembers that the upstream has no `interval` bars of `symbol` in the lookback now (a
        new listing; a day without a session), until the next refresh of `dataset`: the bars stored
        before, if any (still the latest there are), else none."""
        now = self.clock()
        fresh_until = self.freshness[dataset](now)
        before = await self.store.get(PriceHistory, keys.history(symbol, interval))
        if before is not None and before.bars:
            return before.model_copy(update={"fresh_until": max(fresh_until, before.fresh_until)})
        return PriceHistory(
            source=source, fetched_at=now, fresh_until=fresh_until, symbol=symbol, interval=interval, bars=()
        )

    async def indicators(self, symbol: str) -> SymbolOutcome:
        provider = _enabled(self.providers.indicators, "indicators")
        found = await provider.fetch_indicators(
            symbol, indicator_spec(self.config), freshness=self.freshness["indicators"]
        )
        # No item remembers indicators that are not there (one needs the bar they are `as_of`).
        return NoData(()) if found is None else Stored(((keys.indicators(symbol), found),))
