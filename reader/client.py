"""`Reader` (asyncio) and `SyncReader` (blocking): read cached market data from Redis.

Both only read data keys: one GET per single item, one MGET per list, one read-only script for
"the nearest chains" and bundles; never KEYS or SCAN. `market_status()` reads one key, the
calendar the worker published (`reader.market_status`), and asks no upstream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from functools import partial
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

import redis
import redis.asyncio

from reader import keys
from reader._batch import Ask, run_async, run_sync, wait_many
from reader._fetch import AsyncFetches, Fresh, SyncFetches
from reader._results import (
    CHAINS_SCRIPT,
    Bundle,
    QuoteResult,
    bundle_from,
    cached_quote,
    chain_for,
    chains_from_script,
    chains_script_args,
    check_flag,
    check_interval,
    check_side,
    check_wait_s,
    decode,
    decode_or_error,
    parse_expiration,
    quote_results,
    symbol_list,
)
from reader.calendar import MarketCalendar
from reader.clock import Clock, utc_now
from reader.errors import NotCached, ReaderError
from reader.market_status import UNREADABLE, StatusTeller
from reader.models import (
    BarInterval,
    CachedItem,
    Expirations,
    Indicators,
    MarketStatus,
    OptionChain,
    PriceHistory,
    Quote,
    Side,
)
from reader.ondemand import FetchRequest, Mode
from reader.redis_url import redact_url, resolve_url
from reader.symbols import normalize_symbol, underlying_symbol

DEFAULT_WAIT_S = 3.0
"""How long a read waits, by default, for an on-demand fetch after a miss."""

DEFAULT_TIMEOUT_S = 2.0
"""How long, by default, one Redis command may take to connect, and then to answer: a Redis that is
down, stalled or silent costs a read at most about this (plus `wait_s` on a miss), never a hang."""

_Item = TypeVar("_Item", bound=Fresh)
_T = TypeVar("_T")

__all__ = ["Reader", "SyncReader"]


def _bundle_plan(symbol: str, *, technical: bool) -> list[str]:
    return [keys.quote(symbol), *([keys.indicators(symbol)] if technical else [])]


def _history_request(symbol: str, interval: BarInterval) -> FetchRequest:
    return FetchRequest("history", symbol) if interval == "1d" else FetchRequest("intraday", symbol, interval)


def _chain_request(symbol: str, expiration: date | None) -> tuple[FetchRequest, Mode]:
    """Nearest chain: the index may exist with nothing from today on, so a miss always enqueues."""
    if expiration is None:
        return FetchRequest("chains", symbol), "refresh"
    return FetchRequest("chains", symbol, expiration.isoformat()), "miss"


_LABELS = {
    "quotes": "quote",
    "expirations": "expirations",
    "chains": "option chain",
    "history": "1d history",
    "indicators": "indicators",
}


def _stale_miss(item: Fresh, request: FetchRequest) -> NotCached:
    label = f"{request.option} history" if request.dataset == "intraday" else _LABELS[request.dataset]
    return NotCached(
        label, request.symbol, f"only stale data is cached (fetched {item.fetched_at.isoformat()})"
    )


def _checked_timeout_s(timeout_s: float) -> float:
    if not 0 < timeout_s < float("inf"):
        raise ValueError(f"timeout_s={timeout_s!r}: expected a number of seconds above 0, such as 2")
    return timeout_s


def redis_options(timeout_s: float) -> dict[str, Any]:
    """Connection options of a reader's Redis client: bounded connect and read times, and no
    CLIENT SETINFO (which the reader's ACL user may not run)."""
    return {
        "socket_connect_timeout": timeout_s,
        "socket_timeout": timeout_s,
        "lib_name": None,
        "lib_version": None,
    }


@dataclass(frozen=True)
class _Chains:
    """The chains of a bundle, as one item for the miss path."""

    chains: tuple[OptionChain, ...]

    @property
    def stale(self) -> bool:
        return any(c.stale for c in self.chains)

    @property
    def fetched_at(self) -> datetime:
        return min(c.fetched_at for c in self.chains)


_Action = Literal["keep", "revalidate", "fetch"]


def _action(part: object, fresh: bool) -> _Action:
    """What a part of `quotes()` or `bundle()`, read in its one round trip, needs: nothing; a
    refresh enqueued while it is returned stale; or an on-demand fetch waited for (it is not
    cached, or stale when fresh data is asked). Errors other than `NotCached` are kept."""
    stale = isinstance(part, CachedItem | _Chains) and part.stale
    if isinstance(part, NotCached) or (fresh and stale):
        return "fetch"
    return "revalidate" if stale else "keep"


def _quote_asks(results: Mapping[str, QuoteResult], actions: Mapping[str, _Action]) -> list[Ask]:
    """The on-demand fetches a `quotes()` call waits for: its misses, and its stale quotes when
    fresh ones are asked."""
    asks = []
    for symbol, action in actions.items():
        if action != "fetch":
            continue
        request, part = FetchRequest("quotes", symbol), results[symbol]
        if isinstance(part, NotCached):
            asks.append(Ask(request, part))
        elif isinstance(part, Quote):
            asks.append(Ask(request, _stale_miss(part, request), "refresh"))
    return asks


def _quotes_read(
    requests: Sequence[FetchRequest], raws: Sequence[bytes | None], clock: Clock
) -> dict[str, Quote | ReaderError]:
    """Job id -> the quote read for each request (one MGET's answers), or why there is none."""
    read_at = clock()
    return {
        r.job_id: decode_or_error(Quote, "quote", r.symbol, raw, read_at)
        for r, raw in zip(requests, raws, strict=True)
    }


def _bundle_parts(
    found: Bundle,
) -> tuple[Quote | ReaderError, _Chains | ReaderError | None, Indicators | ReaderError | None]:
    """The parts of `found` as the miss path sees them (its chains as one item)."""
    chains = _Chains(found.chains) if isinstance(found.chains, tuple) else found.chains
    return found.quote, chains, found.indicators


def _bundle_requests(symbol: str) -> tuple[FetchRequest, FetchRequest, FetchRequest]:
    """What refreshes the quote, the chains and the indicators of a bundle."""
    return FetchRequest("quotes", symbol), _chain_request(symbol, None)[0], FetchRequest("indicators", symbol)


def _bundle_of(
    found: Bundle,
    quote: Quote | ReaderError,
    chains: _Chains | ReaderError | None,
    indicators: Indicators | ReaderError | None,
) -> Bundle:
    """`found` with its final parts; chains stored without the underlying's price get the quote's."""
    priced = None if not isinstance(quote, Quote) else quote
    return replace(
        found,
        quote=quote,
        chains=tuple(c.priced_by(priced) for c in chains.chains) if isinstance(chains, _Chains) else chains,
        indicators=indicators,
    )


async def _same(value: _T) -> _T:
    return value


class _Base:
    def __init__(
        self, url: str | None, clock: Clock, calendar: MarketCalendar | None, wait_s: float, timeout_s: float
    ) -> None:
        self.url = resolve_url(url)
        self.wait_s = check_wait_s(wait_s)
        self.timeout_s = _checked_timeout_s(timeout_s)
        self._clock = clock
        self._status = StatusTeller(calendar)

    def _wait_s(self, wait_s: float | None) -> float:
        return self.wait_s if wait_s is None else check_wait_s(wait_s)

    def _check(self, wait_s: float | None, fresh: bool, **flags: bool) -> None:
        """Refuse a bad `wait_s` or flag before anything is read (a read and an enqueue otherwise)."""
        if wait_s is not None:
            check_wait_s(wait_s)
        for name, value in {"fresh": fresh, **flags}.items():
            check_flag(name, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact_url(self.url)}>"


class Reader(_Base):
    """Async reader. `async with Reader() as r: q = await r.quote("AAPL")`.

    `url`: a Redis URL; None means `REDIS_URL`, else `redis://localhost:6379/0`.
    `clock`: returns the current aware UTC time; it decides `age_s`, `stale`, today's date for
    chains, and `market_status()`. `calendar`: the exchange calendar to tell the market status
    by (default: the installed calendar of the worker's exchange, XNYS); the unscheduled closures
    the worker published are added to it.

    A miss enqueues an on-demand fetch (one per request however many processes miss at once) and
    waits up to `wait_s` seconds for it (0: enqueue and raise `NotCached` at once); a stale item is
    returned at once, flagged, and a refresh is enqueued. Every read method takes `wait_s` (None:
    the reader's) and `fresh=True`, which waits for fresh data instead of returning stale data.

    `timeout_s` bounds each Redis command (connect, then answer): a Redis that is down or silent
    raises `redis.ConnectionError` or `redis.TimeoutError` within about `timeout_s` (plus `wait_s`
    on a miss) instead of hanging.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        clock: Clock = utc_now,
        calendar: MarketCalendar | None = None,
        wait_s: float = DEFAULT_WAIT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(url, clock, calendar, wait_s, timeout_s)
        self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(self.url, **redis_options(timeout_s))
        self._chains_script = self._redis.register_script(CHAINS_SCRIPT)
        self._fetches = AsyncFetches(self._redis, timeout_s)

    async def _through(
        self,
        request: FetchRequest,
        read: Callable[[], Awaitable[_Item]],
        *,
        wait_s: float | None,
        fresh: bool,
        mode: Mode = "miss",
    ) -> _Item:
        """`read()`, fetched on demand on a miss (or a stale read with `fresh`), revalidated if stale."""
        try:
            item = await read()
        except NotCached as miss:
            return await self._fetches.wait(
                request, read, miss, mode=mode, wait_s=self._wait_s(wait_s), fresh=fresh
            )
        if not item.stale:
            return item
        if fresh:
            stale = _stale_miss(item, request)
            return await self._fetches.wait(
                request, read, stale, mode="refresh", wait_s=self._wait_s(wait_s), fresh=True
            )
        await self._fetches.revalidate(request)
        return item

    async def _or_error(self, through: Awaitable[_Item]) -> _Item | ReaderError:
        try:
            return await through
        except ReaderError as e:
            return e

    async def market_status(self) -> MarketStatus:
        """The exchange's phase now (pre, regular, post, closed), today's hours and the next open and
        close, by the worker's calendar: the installed exchange calendar plus the unscheduled
        closures the worker published (one GET, no upstream call). Without a published calendar,
        or when Redis cannot be read, the installed calendar alone (`calendar` says which)."""
        try:
            raw: bytes | object | None = await self._redis.get(keys.CALENDAR)
        except redis.RedisError:
            raw = UNREADABLE
        # The first status loads the exchange calendar (pandas, about a second): off the event loop.
        return await asyncio.to_thread(self._status.status, raw, self._clock())

    async def quote(self, symbol: str, *, wait_s: float | None = None, fresh: bool = False) -> Quote:
        """The quote of `symbol`; raises `NotCached`, `UnknownSymbol` or `InvalidSymbol`."""
        normal = normalize_symbol(symbol)
        self._check(wait_s, fresh)
        return await self._through(
            FetchRequest("quotes", normal), lambda: self._quote(normal), wait_s=wait_s, fresh=fresh
        )

    async def _quote(self, symbol: str) -> Quote:
        return decode(Quote, "quote", symbol, await self._redis.get(keys.quote(symbol)), self._clock)

    async def quotes(
        self, symbols: Iterable[str], *, wait_s: float | None = None, fresh: bool = False
    ) -> dict[str, QuoteResult]:
        """Quotes of many symbols, keyed by normalised symbol: one round trip when all are cached,
        then the misses enqueued together in one more, fetched together by the worker (one
        upstream call per `batch_size` symbols) and waited for together, up to `wait_s` in all.

        A symbol still missing maps to its `NotCached` or `UnknownSymbol`; a malformed one, keyed
        as given (a non-string by its repr), to an `InvalidSymbol`. Nothing is raised for one bad symbol.
        """
        wanted, errors = symbol_list(symbols)
        self._check(wait_s, fresh)
        raws = await self._redis.mget([keys.quote(s) for s in wanted]) if wanted else []
        results = quote_results(wanted, raws, errors, self._clock)
        actions = {s: _action(results[s], fresh) for s in wanted}
        stale = [FetchRequest("quotes", s) for s in wanted if actions[s] == "revalidate"]
        await self._fetches.revalidate(*stale)
        asks = _quote_asks(results, actions)
        if asks:
            plan = wait_many(asks, wait_s=self._wait_s(wait_s), fresh=fresh)
            found = await run_async(self._fetches, plan, self._read_quotes)
            results.update({a.request.symbol: found[a.request.job_id] for a in asks})
        return results

    async def _read_quotes(self, requests: Sequence[FetchRequest]) -> dict[str, Quote | ReaderError]:
        raws = await self._redis.mget([r.data_key for r in requests])
        return _quotes_read(requests, raws, self._clock)

    async def expirations(
        self, symbol: str, *, wait_s: float | None = None, fresh: bool = False
    ) -> Expirations:
        """Every option expiration the upstream lists for `symbol` (the chains cached are a subset)."""
        normal = underlying_symbol(symbol, "expirations")
        self._check(wait_s, fresh)

        async def read() -> Expirations:
            raw = await self._redis.get(keys.expirations(normal))
            return decode(Expirations, "expirations", normal, raw, self._clock)

        return await self._through(FetchRequest("expirations", normal), read, wait_s=wait_s, fresh=fresh)

    async def chain(
        self,
        symbol: str,
        expiration: date | str | None = None,
        side: Side | None = None,
        *,
        wait_s: float | None = None,
        fresh: bool = False,
    ) -> OptionChain:
        """The option chain of `symbol` for `expiration` (None: the nearest cached one from today on),
        with the contracts of `side` ("calls", "puts", or None/"both"). A chain stored without
        the underlying's price (Tradier sends none) carries that of the cached quote
        (`Quote.reference_price`, as of `underlying_price_at`), read in the same round trip."""
        normal, chosen = underlying_symbol(symbol, "option chain"), check_side(side)
        self._check(wait_s, fresh)
        day = None if expiration is None else parse_expiration(expiration)

        async def read() -> OptionChain:
            # The cached quote rides the same round trip: it prices a chain stored without one.
            if day is None:
                args = [*chains_script_args(normal, self._clock, 1), keys.quote(normal)]
                index_raw, raws, kept, quote_raw = await self._chains_script(args=args)
                chain = chains_from_script(normal, index_raw, raws, self._clock, kept)[0]
            else:
                raw, index_raw, quote_raw = await self._redis.mget(
                    [keys.chain(normal, day), keys.chain_index(normal), keys.quote(normal)]
                )
                chain = chain_for(normal, day, raw, index_raw, self._clock)
            return chain.priced_by(cached_quote(normal, quote_raw, self._clock))

        request, mode = _chain_request(normal, day)
        found = await self._through(request, read, wait_s=wait_s, fresh=fresh, mode=mode)
        return found.only(chosen)

    async def history(
        self, symbol: str, interval: BarInterval = "1d", *, wait_s: float | None = None, fresh: bool = False
    ) -> PriceHistory:
        """Price bars of `symbol` at `interval` ("1d", "1m", "5m", "15m"), oldest first."""
        normal, checked = underlying_symbol(symbol, "price history"), check_interval(interval)
        self._check(wait_s, fresh)

        async def read() -> PriceHistory:
            raw = await self._redis.get(keys.history(normal, checked))
            return decode(PriceHistory, f"{checked} history", normal, raw, self._clock)

        return await self._through(_history_request(normal, checked), read, wait_s=wait_s, fresh=fresh)

    async def indicators(
        self, symbol: str, *, wait_s: float | None = None, fresh: bool = False
    ) -> Indicators:
        """The latest SMA, EMA, RSI and MACD of `symbol` on daily closes."""
        normal = underlying_symbol(symbol, "indicators")
        self._check(wait_s, fresh)
        return await self._through(
            FetchRequest("indicators", normal), lambda: self._indicators(normal), wait_s=wait_s, fresh=fresh
        )

    async def _indicators(self, symbol: str) -> Indicators:
        raw = await self._redis.get(keys.indicators(symbol))
        return decode(Indicators, "indicators", symbol, raw, self._clock)

    async def bundle(
        self,
        symbol: str,
        *,
        options: bool = False,
        technical: bool = False,
        wait_s: float | None = None,
        fresh: bool = False,
    ) -> Bundle:
        """Quote, plus the chains from today on (`options`) and indicators (`technical`), in one round
        trip when all are cached; missing parts are then fetched on demand together. Each part is
        the item or the error that explains its absence. Chains stored without the underlying's
        price carry the bundle's quote's, as in `chain()`."""
        normal = underlying_symbol(symbol, "bundle")
        self._check(wait_s, fresh, options=options, technical=technical)
        plan = _bundle_plan(normal, technical=technical)
        answer: list[Any]
        if options:
            answer = await self._chains_script(
                args=[*chains_script_args(normal, self._clock, 0), *plan], keys=[]
            )
        else:
            answer = await self._redis.mget(plan)
        found = bundle_from(normal, answer, options=options, technical=technical, clock=self._clock)
        quote, chains, indicators = parts = _bundle_parts(found)
        actions = [_action(part, fresh) for part in parts]
        for action, request in zip(actions, _bundle_requests(normal), strict=True):
            if action == "revalidate":
                await self._fetches.revalidate(request)
        quote_part: Awaitable[Quote | ReaderError] = (
            self._or_error(self.quote(normal, wait_s=wait_s, fresh=fresh))
            if actions[0] == "fetch"
            else _same(quote)
        )
        chains_part: Awaitable[_Chains | ReaderError | None] = (
            self._or_error(self._all_chains(normal, wait_s, fresh))
            if actions[1] == "fetch"
            else _same(chains)
        )
        indicators_part: Awaitable[Indicators | ReaderError | None] = (
            self._or_error(self.indicators(normal, wait_s=wait_s, fresh=fresh))
            if actions[2] == "fetch"
            else _same(indicators)
        )
        return _bundle_of(found, *await asyncio.gather(quote_part, chains_part, indicators_part))

    async def _all_chains(self, symbol: str, wait_s: float | None, fresh: bool) -> _Chains:
        async def read() -> _Chains:
            index_raw, raws, kept = await self._chains_script(args=chains_script_args(symbol, self._clock, 0))
            return _Chains(chains_from_script(symbol, index_raw, raws, self._clock, kept))

        request, mode = _chain_request(symbol, None)
        return await self._through(request, read, wait_s=wait_s, fresh=fresh, mode=mode)

    async def aclose(self) -> None:
        """Close the pub/sub subscription and the connection pool."""
        await self._fetches.aclose()
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
        self,
        url: str | None = None,
        *,
        clock: Clock = utc_now,
        calendar: MarketCalendar | None = None,
        wait_s: float = DEFAULT_WAIT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        super().__init__(url, clock, calendar, wait_s, timeout_s)
        self._redis: redis.Redis = redis.Redis.from_url(self.url, **redis_options(timeout_s))
        self._chains_script = self._redis.register_script(CHAINS_SCRIPT)
        self._fetches = SyncFetches(self._redis, timeout_s)

    # redis-py types sync and async results alike (Awaitable | Any); this client is sync, hence the casts.
    def _get(self, key: str) -> bytes | None:
        return cast("bytes | None", self._redis.get(key))

    def _mget(self, names: list[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", self._redis.mget(names)) if names else []

    def _through(
        self,
        request: FetchRequest,
        read: Callable[[], _Item],
        *,
        wait_s: float | None,
        fresh: bool,
        mode: Mode = "miss",
    ) -> _Item:
        """See `Reader._through`."""
        try:
            item = read()
        except NotCached as miss:
            return self._fetches.wait(
                request, read, miss, mode=mode, wait_s=self._wait_s(wait_s), fresh=fresh
            )
        if not item.stale:
            return item
        if fresh:
            stale = _stale_miss(item, request)
            return self._fetches.wait(
                request, read, stale, mode="refresh", wait_s=self._wait_s(wait_s), fresh=True
            )
        self._fetches.revalidate(request)
        return item

    def _or_error(self, through: Callable[[], _Item]) -> _Item | ReaderError:
        try:
            return through()
        except ReaderError as e:
            return e

    def market_status(self) -> MarketStatus:
        """See `Reader.market_status`."""
        try:
            raw: bytes | object | None = self._get(keys.CALENDAR)
        except redis.RedisError:
            raw = UNREADABLE
        return self._status.status(raw, self._clock())

    def quote(self, symbol: str, *, wait_s: float | None = None, fresh: bool = False) -> Quote:
        """The quote of `symbol`; see `Reader.quote`."""
        normal = normalize_symbol(symbol)
        self._check(wait_s, fresh)

        def read() -> Quote:
            return decode(Quote, "quote", normal, self._get(keys.quote(normal)), self._clock)

        return self._through(FetchRequest("quotes", normal), read, wait_s=wait_s, fresh=fresh)

    def quotes(
        self, symbols: Iterable[str], *, wait_s: float | None = None, fresh: bool = False
    ) -> dict[str, QuoteResult]:
        """Quotes of many symbols; see `Reader.quotes`."""
        wanted, errors = symbol_list(symbols)
        self._check(wait_s, fresh)
        results = quote_results(wanted, self._mget([keys.quote(s) for s in wanted]), errors, self._clock)
        actions = {s: _action(results[s], fresh) for s in wanted}
        self._fetches.revalidate(*[FetchRequest("quotes", s) for s in wanted if actions[s] == "revalidate"])
        asks = _quote_asks(results, actions)
        if asks:
            plan = wait_many(asks, wait_s=self._wait_s(wait_s), fresh=fresh)
            found = run_sync(self._fetches, plan, self._read_quotes)
            results.update({a.request.symbol: found[a.request.job_id] for a in asks})
        return results

    def _read_quotes(self, requests: Sequence[FetchRequest]) -> dict[str, Quote | ReaderError]:
        return _quotes_read(requests, self._mget([r.data_key for r in requests]), self._clock)

    def expirations(self, symbol: str, *, wait_s: float | None = None, fresh: bool = False) -> Expirations:
        """See `Reader.expirations`."""
        normal = underlying_symbol(symbol, "expirations")
        self._check(wait_s, fresh)

        def read() -> Expirations:
            return decode(
                Expirations, "expirations", normal, self._get(keys.expirations(normal)), self._clock
            )

        return self._through(FetchRequest("expirations", normal), read, wait_s=wait_s, fresh=fresh)

    def chain(
        self,
        symbol: str,
        expiration: date | str | None = None,
        side: Side | None = None,
        *,
        wait_s: float | None = None,
        fresh: bool = False,
    ) -> OptionChain:
        """See `Reader.chain`."""
        normal, chosen = underlying_symbol(symbol, "option chain"), check_side(side)
        self._check(wait_s, fresh)
        day = None if expiration is None else parse_expiration(expiration)

        def read() -> OptionChain:
            if day is None:
                args = [*chains_script_args(normal, self._clock, 1), keys.quote(normal)]
                index_raw, raws, kept, quote_raw = self._chains_script(args=args)
                chain = chains_from_script(normal, index_raw, raws, self._clock, kept)[0]
            else:
                raw, index_raw, quote_raw = self._mget(
                    [keys.chain(normal, day), keys.chain_index(normal), keys.quote(normal)]
                )
                chain = chain_for(normal, day, raw, index_raw, self._clock)
            return chain.priced_by(cached_quote(normal, quote_raw, self._clock))

        request, mode = _chain_request(normal, day)
        return self._through(request, read, wait_s=wait_s, fresh=fresh, mode=mode).only(chosen)

    def history(
        self, symbol: str, interval: BarInterval = "1d", *, wait_s: float | None = None, fresh: bool = False
    ) -> PriceHistory:
        """See `Reader.history`."""
        normal, checked = underlying_symbol(symbol, "price history"), check_interval(interval)
        self._check(wait_s, fresh)

        def read() -> PriceHistory:
            raw = self._get(keys.history(normal, checked))
            return decode(PriceHistory, f"{checked} history", normal, raw, self._clock)

        return self._through(_history_request(normal, checked), read, wait_s=wait_s, fresh=fresh)

    def indicators(self, symbol: str, *, wait_s: float | None = None, fresh: bool = False) -> Indicators:
        """See `Reader.indicators`."""
        normal = underlying_symbol(symbol, "indicators")
        self._check(wait_s, fresh)

        def read() -> Indicators:
            return decode(Indicators, "indicators", normal, self._get(keys.indicators(normal)), self._clock)

        return self._through(FetchRequest("indicators", normal), read, wait_s=wait_s, fresh=fresh)

    def bundle(
        self,
        symbol: str,
        *,
        options: bool = False,
        technical: bool = False,
        wait_s: float | None = None,
        fresh: bool = False,
    ) -> Bundle:
        """See `Reader.bundle` (here missing parts are fetched one after another)."""
        normal = underlying_symbol(symbol, "bundle")
        self._check(wait_s, fresh, options=options, technical=technical)
        plan = _bundle_plan(normal, technical=technical)
        answer: list[Any]
        if options:
            answer = self._chains_script(args=[*chains_script_args(normal, self._clock, 0), *plan], keys=[])
        else:
            answer = self._mget(plan)
        found = bundle_from(normal, answer, options=options, technical=technical, clock=self._clock)
        quote, chains, indicators = parts = _bundle_parts(found)
        actions = [_action(part, fresh) for part in parts]
        for action, request in zip(actions, _bundle_requests(normal), strict=True):
            if action == "revalidate":
                self._fetches.revalidate(request)
        if actions[0] == "fetch":
            quote = self._or_error(partial(self.quote, normal, wait_s=wait_s, fresh=fresh))
        if actions[1] == "fetch":

            def read() -> _Chains:
                index_raw, raws, kept = self._chains_script(args=chains_script_args(normal, self._clock, 0))
                return _Chains(chains_from_script(normal, index_raw, raws, self._clock, kept))

            request, mode = _chain_request(normal, None)
            chains = self._or_error(
                partial(self._through, request, read, wait_s=wait_s, fresh=fresh, mode=mode)
            )
        if actions[2] == "fetch":
            indicators = self._or_error(partial(self.indicators, normal, wait_s=wait_s, fresh=fresh))
        return _bundle_of(found, quote, chains, indicators)

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
