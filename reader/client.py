"""`Reader` (asyncio) and `SyncReader` (blocking): read cached market data from Redis.

Both only read data keys: one GET per single item, one MGET per list, never KEYS or SCAN.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import TracebackType
from typing import Self, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from pydantic import ValidationError

from reader import keys
from reader.clock import Clock, utc_now
from reader.errors import InvalidSymbol, NotCached, ReaderError
from reader.models import CachedItem, Quote
from reader.symbols import normalize_symbol

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

QuoteResult = Quote | ReaderError
"""One entry of `quotes()`: the quote, or the error for that symbol (`NotCached`, `InvalidSymbol`)."""

_Item = TypeVar("_Item", bound=CachedItem)


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


def _decode(model: type[_Item], dataset: str, symbol: str, raw: bytes | None, clock: Clock) -> _Item:
    """The cached item in `raw` (a GET's answer), judged by `clock`; `NotCached` if absent or unreadable."""
    if raw is None:
        raise NotCached(dataset, symbol)
    try:
        item = model.model_validate_json(raw)
    except ValidationError as e:
        raise NotCached(
            dataset,
            symbol,
            f"the cached value does not match the {model.__name__} model ({e.error_count()} errors, "
            f"first at {'.'.join(map(str, e.errors()[0]['loc']))}); the next refresh replaces it",
        ) from e
    item._read_at = clock()
    return item


def _symbol_list(symbols: Iterable[str]) -> tuple[list[str], dict[str, QuoteResult]]:
    """Split `symbols` into the distinct normal forms to fetch and the errors of malformed ones."""
    if isinstance(symbols, str | bytes):
        raise InvalidSymbol(symbols, "quotes() takes a list of symbols, e.g. quotes(['AAPL', 'MSFT'])")
    wanted: dict[str, None] = {}
    errors: dict[str, QuoteResult] = {}
    for symbol in symbols:
        try:
            wanted[normalize_symbol(symbol)] = None
        except InvalidSymbol as e:
            errors[symbol if isinstance(symbol, str) else repr(symbol)] = e
    return list(wanted), errors


def _quote_results(
    symbols: list[str], raws: list[bytes | None], errors: dict[str, QuoteResult], clock: Clock
) -> dict[str, QuoteResult]:
    results: dict[str, QuoteResult] = {}
    for symbol, raw in zip(symbols, raws, strict=True):
        try:
            results[symbol] = _decode(Quote, "quote", symbol, raw, clock)
        except NotCached as e:
            results[symbol] = e
    results.update(errors)
    return results


class Reader:
    """Async reader. `async with Reader() as r: q = await r.quote("AAPL")`.

    `url`: a Redis URL; None means `REDIS_URL`, else `redis://localhost:6379/0`.
    `clock`: returns the current aware UTC time; it decides `age_s` and `stale`.
    """

    def __init__(self, url: str | None = None, *, clock: Clock = utc_now) -> None:
        self.url = resolve_url(url)
        self._clock = clock
        self._redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(self.url)

    async def quote(self, symbol: str) -> Quote:
        """The cached quote of `symbol`; raises `NotCached` or `InvalidSymbol`."""
        normal = normalize_symbol(symbol)
        raw = await self._redis.get(keys.quote(normal))
        return _decode(Quote, "quote", normal, raw, self._clock)

    async def quotes(self, symbols: Iterable[str]) -> dict[str, QuoteResult]:
        """Quotes of many symbols in one round trip, keyed by normalised symbol.

        A symbol that is not cached maps to a `NotCached`; a malformed one, keyed as given (a
        non-string by its repr), to an `InvalidSymbol`. Nothing is raised for a single bad symbol.
        """
        wanted, errors = _symbol_list(symbols)
        raws = await self._redis.mget([keys.quote(s) for s in wanted]) if wanted else []
        return _quote_results(wanted, raws, errors, self._clock)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Reader {redact_url(self.url)}>"


class SyncReader:
    """Blocking reader with the same methods and results as `Reader`, for sync tools and UI handlers.

    `with SyncReader() as r: q = r.quote("AAPL")`
    """

    def __init__(self, url: str | None = None, *, clock: Clock = utc_now) -> None:
        self.url = resolve_url(url)
        self._clock = clock
        self._redis: redis.Redis = redis.Redis.from_url(self.url)

    def quote(self, symbol: str) -> Quote:
        """The cached quote of `symbol`; raises `NotCached` or `InvalidSymbol`."""
        normal = normalize_symbol(symbol)
        # redis-py types sync and async results alike (Awaitable | Any); this client is sync.
        raw = cast("bytes | None", self._redis.get(keys.quote(normal)))
        return _decode(Quote, "quote", normal, raw, self._clock)

    def quotes(self, symbols: Iterable[str]) -> dict[str, QuoteResult]:
        """Quotes of many symbols in one round trip; see `Reader.quotes`."""
        wanted, errors = _symbol_list(symbols)
        raws = cast("list[bytes | None]", self._redis.mget([keys.quote(s) for s in wanted])) if wanted else []
        return _quote_results(wanted, raws, errors, self._clock)

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncReader {redact_url(self.url)}>"
