"""The seam between the refresh code and the upstream APIs: one small Protocol per dataset.

Every fetch stamps what it returns with `source` (the provider's name), `fetched_at` (when the
answer came, by the provider's clock) and `fresh_until = freshness(fetched_at)`. A fetch returns
None when the upstream answers with nothing: the upstreams answer so both for a symbol they do
not know and for a listed one without such data now (an underlying without options, a new
listing without bars), and `worker.refresh` tells them apart (`worker.listing`). It raises an
`UpstreamError` for anything else that is not a good answer: a payload that does not parse is
rejected whole (`UpstreamBadPayload`), never stored in part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from reader.models import BarInterval, Expirations, Indicators, OptionChain, PriceHistory, Quote

Freshness = Callable[[datetime], datetime]
"""Maps the time an item was fetched to its `fresh_until` (the schedule's next refresh)."""


@dataclass(frozen=True)
class QuoteBatch:
    """What one upstream call answered: the quotes, the symbols it does not know, and the symbols
    whose quote parsed but holds a value the `Quote` model refuses (a negative volume, a bid above
    the ask), each with the reason: those are left out, the others kept."""

    quotes: tuple[Quote, ...]
    unmatched: tuple[str, ...]
    refused: tuple[tuple[str, str], ...] = ()

    def merged(self, other: QuoteBatch) -> QuoteBatch:
        """This batch and `other` (another call's answer for other symbols) as one."""
        return QuoteBatch(
            quotes=self.quotes + other.quotes,
            unmatched=self.unmatched + other.unmatched,
            refused=self.refused + other.refused,
        )


@dataclass(frozen=True)
class StrikeRange:
    """Strikes to keep in a chain, inclusive, in dollars."""

    low: float
    high: float

    def __contains__(self, strike: object) -> bool:
        return isinstance(strike, int | float) and self.low <= strike <= self.high


@dataclass(frozen=True)
class IndicatorSpec:
    """Which indicators to compute or fetch: windows in bars, MACD as (fast, slow, signal)."""

    sma: tuple[int, ...] = (20, 50, 200)
    ema: tuple[int, ...] = (12, 26)
    rsi: tuple[int, ...] = (14,)
    macd: tuple[int, int, int] | None = (12, 26, 9)


class QuoteProvider(Protocol):
    """Fetches quotes of up to `batch_size` symbols in one upstream call."""

    name: str
    batch_size: int

    async def fetch_quotes(self, symbols: Sequence[str], *, freshness: Freshness) -> QuoteBatch:
        """The quotes the upstream has, keyed by the symbol in its answer, and those it does not know."""
        ...


class ExpirationsProvider(Protocol):
    """Fetches the listed option expirations of one underlying."""

    name: str

    async def fetch_expirations(self, symbol: str, *, freshness: Freshness) -> Expirations | None:
        """Every expiration, ascending; None if the underlying has no options or is unknown."""
        ...


class ChainProvider(Protocol):
    """Fetches one option chain (underlying, expiration) with greeks and IV."""

    name: str

    async def fetch_chain(
        self, symbol: str, expiration: date, *, freshness: Freshness, strikes: StrikeRange | None = None
    ) -> OptionChain | None:
        """The chain's contracts (only strikes in `strikes`, if given), sorted by strike, calls
        first; None if the upstream has no chain for that date."""
        ...


class HistoryProvider(Protocol):
    """Fetches price bars of one symbol."""

    name: str

    async def fetch_history(
        self, symbol: str, interval: BarInterval, start: date, end: date, *, freshness: Freshness
    ) -> PriceHistory | None:
        """Bars from `start` to `end` (exchange-local dates, inclusive), oldest first; None if the
        upstream knows no such symbol or has no bars in the range."""
        ...


class IndicatorProvider(Protocol):
    """Fetches the latest technical indicators of one symbol from an upstream that computes them."""

    name: str

    async def fetch_indicators(
        self, symbol: str, spec: IndicatorSpec, *, freshness: Freshness
    ) -> Indicators | None:
        """The latest value of each indicator of `spec` on daily closes; None if the symbol is unknown."""
        ...
