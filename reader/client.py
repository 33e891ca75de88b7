"""`Reader` (asyncio) and `SyncReader` (blocking): read cached market data from Redis.

Both only read data keys: one GET per single item, one MGET per list, one read-only script for
"the nearest chains" and bundles; never KEYS or SCAN. `market_status()` asks no one: it comes
from the exchange calendar.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio

from reader import keys
from reader._results import (
    CHAINS_SCRIPT,
    Bundle,
    QuoteResult,
    bundle_from,
    chain_for,
    chains_from_script,
    chains_script_args,
    check_interval,
    check_side,
    decode,
    parse_expiration,
    quote_results,
    symbol_list,
)
from reader.calendar import MarketCalendar
from reader.clock import Clock, utc_now
from reader.models import (
    BarInterval,
    Expirations,
    Indicators,
    MarketStatus,
    OptionChain,
    PriceHistory,
    Quote,
    Side,
)
from reader.symbols import normalize_symbol

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

__all__ = ["Reader", "SyncReader"]


def resolve_url(url: str | None) -> str:
    """The Redis URL to use: `url`, else `REDIS_URL`, else the local default."""
    return url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`, for reprs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _bundle_plan(symbol: str, *, technical: bool) -> list[str]:
    return [keys.quote(symbol), *([keys.indicators(symbol)] if technical else [])]


class _Base:
    def __init__(self, url: str | None, clock: Clock, calendar: MarketCalendar | None) -> None:
        self.url = resolve_url(url)
        self._clock = clock
        self._calendar = calendar

    def market_status(self) -> MarketStatus:
        """The exchange's phase now (pre, regular, post, closed), today's hours and the next open and
        close, from the exchange calendar: no Redis, no upstream call."""
        if self._calendar is None:
            self._calendar = MarketCalendar()
        return self._calendar.status(self._clock())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact_url(self.url)}>"


class Reader(_Base):
    """Async reader. `async with Reader() as r: q = await r.quote("AAPL")`.

    `url`: a Redis URL; None means `REDIS_URL`, else `redis://localhost:6379/0`.
    `clock`: returns the current aware UTC time; it decides `age_s`, `stale`, today's date for
    chains, and `market_status()`. `calendar`: the exchange calendar (XNYS by default).
    """

    def __init__(
        self, url: str | None = None, *, clock: Clock = utc_now, calendar: MarketCalendar | None = None
    ) -> None:
        super().__init__(url, clock, calendar)
        self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(self.url)
        self._chains_script = self._redis.register_script(CHAINS_SCRIPT)

    async def quote(self, symbol: str) -> Quote:
        """The cached quote of `symbol`; raises `NotCached` or `InvalidSymbol`."""
        normal = normalize_symbol(symbol)
        return decode(Quote, "quote", normal, await self._redis.get(keys.quote(normal)), self._clock)

    async def quotes(self, symbols: Iterable[str]) -> dict[str, QuoteResult]:
        """Quotes of many symbols in one round trip, keyed by normalised symbol.

        A symbol that is not cached maps to a `NotCached`; a malformed one, keyed as given (a
        non-string by its repr), to an `InvalidSymbol`. Nothing is raised for a single bad symbol.
        """
        wanted, errors = symbol_list(symbols)
        raws = await self._redis.mget([keys.quote(s) for s in wanted]) if wanted else []
        return quote_results(wanted, raws, errors, self._clock)

    async def expirations(self, symbol: str) -> Expirations:
        """Every option expiration the upstream lists for `symbol` (the chains cached are a subset)."""
        normal = normalize_symbol(symbol)
        raw = await self._redis.get(keys.expirations(normal))
        return decode(Expirations, "expirations", normal, raw, self._clock)

    async def chain(
        self, symbol: str, expiration: date | str | None = None, side: Side | None = None
    ) -> OptionChain:
        """The option chain of `symbol` for `expiration` (None: the nearest cached one from today on),
        with the contracts of `side` ("calls", "puts", or None/"both")."""
        normal, chosen = normalize_symbol(symbol), check_side(side)
        if expiration is None:
            index_raw, raws = await self._chains_script(
                keys=[keys.chain_index(normal)], args=chains_script_args(normal, self._clock, 1)
            )
            return chains_from_script(normal, index_raw, raws, self._clock)[0].only(chosen)
        day = parse_expiration(expiration)
        raw, index_raw = await self._redis.mget([keys.chain(normal, day), keys.chain_index(normal)])
        return chain_for(normal, day, raw, index_raw, self._clock).only(chosen)

    async def history(self, symbol: str, interval: BarInterval = "1d") -> PriceHistory:
        """Cached price bars of `symbol` at `interval` ("1d", "1m", "5m", "15m"), oldest first."""
        normal, checked = normalize_symbol(symbol), check_interval(interval)
        raw = await self._redis.get(keys.history(normal, checked))
        return decode(PriceHistory, f"{checked} history", normal, raw, self._clock)

    async def indicators(self, symbol: str) -> Indicators:
        """The latest SMA, EMA, RSI and MACD of `symbol` on daily closes."""
        normal = normalize_symbol(symbol)
        return decode(
            Indicators, "indicators", normal, await self._redis.get(keys.indicators(normal)), self._clock
        )

    async def bundle(self, symbol: str, *, options: bool = False, technical: bool = False) -> Bundle:
        """Quote, plus the chains from today on (`options`) and indicators (`technical`), in one round
        trip; each part is the item or the error that explains its absence."""
        normal = normalize_symbol(symbol)
        plan = _bundle_plan(normal, technical=technical)
        answer: list[Any]
        if options:
            answer = await self._chains_script(
                keys=[keys.chain_index(normal), *plan], args=chains_script_args(normal, self._clock, 0)
            )
        else:
            answer = await self._redis.mget(plan)
        return bundle_from(normal, answer, options=options, technical=technical, clock=self._clock)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class SyncReader(_Base):
    """Blocking reader with the same methods and results as `Reader`, for sync tools and UI handlers.

    `with SyncReader() as r: q = r.quote("AAPL")`
    """

    def __init__(
        self, url: str | None = None, *, clock: Clock = utc_now, calendar: MarketCalendar | None = None
    ) -> None:
        super().__init__(url, clock, calendar)
        self._redis: redis.Redis = redis.Redis.from_url(self.url)
        self._chains_script = self._redis.register_script(CHAINS_SCRIPT)

    # redis-py types sync and async results alike (Awaitable | Any); this client is sync, hence the casts.
    def _get(self, key: str) -> bytes | None:
        return cast("bytes | None", self._redis.get(key))

    def _mget(self, names: list[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", self._redis.mget(names)) if names else []

    def quote(self, symbol: str) -> Quote:
        """The cached quote of `symbol`; see `Reader.quote`."""
        normal = normalize_symbol(symbol)
        return decode(Quote, "quote", normal, self._get(keys.quote(normal)), self._clock)

    def quotes(self, symbols: Iterable[str]) -> dict[str, QuoteResult]:
        """Quotes of many symbols in one round trip; see `Reader.quotes`."""
        wanted, errors = symbol_list(symbols)
        return quote_results(wanted, self._mget([keys.quote(s) for s in wanted]), errors, self._clock)

    def expirations(self, symbol: str) -> Expirations:
        """See `Reader.expirations`."""
        normal = normalize_symbol(symbol)
        return decode(Expirations, "expirations", normal, self._get(keys.expirations(normal)), self._clock)

    def chain(
        self, symbol: str, expiration: date | str | None = None, side: Side | None = None
    ) -> OptionChain:
        """See `Reader.chain`."""
        normal, chosen = normalize_symbol(symbol), check_side(side)
        if expiration is None:
            index_raw, raws = self._chains_script(
                keys=[keys.chain_index(normal)], args=chains_script_args(normal, self._clock, 1)
            )
            return chains_from_script(normal, index_raw, raws, self._clock)[0].only(chosen)
        day = parse_expiration(expiration)
        raw, index_raw = self._mget([keys.chain(normal, day), keys.chain_index(normal)])
        return chain_for(normal, day, raw, index_raw, self._clock).only(chosen)

    def history(self, symbol: str, interval: BarInterval = "1d") -> PriceHistory:
        """See `Reader.history`."""
        normal, checked = normalize_symbol(symbol), check_interval(interval)
        raw = self._get(keys.history(normal, checked))
        return decode(PriceHistory, f"{checked} history", normal, raw, self._clock)

    def indicators(self, symbol: str) -> Indicators:
        """See `Reader.indicators`."""
        normal = normalize_symbol(symbol)
        return decode(Indicators, "indicators", normal, self._get(keys.indicators(normal)), self._clock)

    def bundle(self, symbol: str, *, options: bool = False, technical: bool = False) -> Bundle:
        """See `Reader.bundle`."""
        normal = normalize_symbol(symbol)
        plan = _bundle_plan(normal, technical=technical)
        answer: list[Any]
        if options:
            answer = self._chains_script(
                keys=[keys.chain_index(normal), *plan], args=chains_script_args(normal, self._clock, 0)
            )
        else:
            answer = self._mget(plan)
        return bundle_from(normal, answer, options=options, technical=technical, clock=self._clock)

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
