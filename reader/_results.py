"""Turning what Redis answers into models: shared by `Reader` and `SyncReader`, free of I/O.

Each read method of the readers is a plan (the keys, or the script, to ask) and one of these
functions applied to the answer, so both readers return the same values and raise the same errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar, get_args

from pydantic import ValidationError

from reader import keys
from reader.calendar import exchange_date
from reader.clock import Clock
from reader.errors import InvalidRequest, InvalidSymbol, NoData, NotCached, ReaderError
from reader.models import (
    BarInterval,
    CachedItem,
    ChainIndex,
    Indicators,
    OptionChain,
    Quote,
    Side,
    mark_read,
)
from reader.symbols import normalize_symbol, shown

QuoteResult = Quote | ReaderError
"""One entry of `quotes()`: the quote, or the error for that symbol (`NotCached`, `InvalidSymbol`)."""

_Item = TypeVar("_Item", bound=CachedItem)

# One round trip for "the chains of a symbol from today on" plus any other keys: the script reads
# the chain index, then the chains it lists whose expiration is today or later (at most ARGV[3],
# 0 for all). ARGV: chain key prefix, today's exchange-local date (ISO), limit, the index key, then
# keys read with GET and returned after the chains. Expired or vanished chains are skipped. Keys
# travel in ARGV, not KEYS: Redis checks a script's declared keys for write access, and a reader's
# ACL user may only read data keys (GETs inside the script are checked as reads). Fine on one
# Redis, not on Redis Cluster. The reader's user needs EVALSHA and SCRIPT LOAD (on NOSCRIPT).
CHAINS_SCRIPT = """
local index = redis.call('GET', ARGV[4])
local chains = {}
if index then
  local ok, decoded = pcall(cjson.decode, index)
  if ok and type(decoded) == 'table' and type(decoded.expirations) == 'table' then
    local limit = tonumber(ARGV[3])
    for _, expiration in ipairs(decoded.expirations) do
      if type(expiration) == 'string' and expiration >= ARGV[2] then
        local chain = redis.call('GET', ARGV[1] .. expiration)
        if chain then
          chains[#chains + 1] = chain
          if limit > 0 and #chains >= limit then break end
        end
      end
    end
  end
end
local kept = 0
if not index then kept = redis.call('SISMEMBER', ARGV[5], ARGV[6]) end
local result = {index, chains, kept}
for i = 7, #ARGV do result[#result + 1] = redis.call('GET', ARGV[i]) end
return result
"""


@dataclass(frozen=True)
class Bundle:
    """What an agent wants to know about one symbol, read in one round trip.

    Each part is the item or the `ReaderError` that explains its absence; a part that was not
    asked for is None. `chains` are the cached chains from today on, nearest first.
    """

    symbol: str
    quote: Quote | ReaderError
    chains: tuple[OptionChain, ...] | ReaderError | None = None
    indicators: Indicators | ReaderError | None = None


def decode(model: type[_Item], dataset: str, symbol: str, raw: bytes | None, clock: Clock) -> _Item:
    """The cached item in `raw` (a GET's answer), judged by `clock`; `NotCached` if absent or unreadable."""
    return decode_at(model, dataset, symbol, raw, clock())


def decode_at(model: type[_Item], dataset: str, symbol: str, raw: bytes | None, read_at: datetime) -> _Item:
    """The cached item in `raw`, read at `read_at` (the reader's clock, read once for all the items
    of one answer); `NotCached` if absent or unreadable."""
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
    mark_read(item, read_at)
    return item


def decode_or_error(
    model: type[_Item], dataset: str, symbol: str, raw: bytes | None, read_at: datetime
) -> _Item | ReaderError:
    """`decode_at`, with `NotCached` returned instead of raised."""
    try:
        return decode_at(model, dataset, symbol, raw, read_at)
    except NotCached as e:
        return e


def cached_quote(symbol: str, raw: bytes | None, clock: Clock) -> Quote | None:
    """The quote in `raw` (a GET's answer) to price a chain stored without its underlying's price;
    None if absent or unreadable (the chain is then served without one)."""
    found = decode_or_error(Quote, "quote", symbol, raw, clock())
    return found if isinstance(found, Quote) else None


def symbol_list(symbols: Iterable[str]) -> tuple[list[str], dict[str, QuoteResult]]:
    """Split `symbols` into the distinct normal forms to fetch and the errors of malformed ones."""
    if isinstance(symbols, str | bytes):
        raise InvalidSymbol(shown(symbols), "quotes() takes a list of symbols, e.g. quotes(['AAPL', 'MSFT'])")
    if isinstance(symbols, Mapping) or not isinstance(symbols, Iterable):
        raise InvalidRequest(
            "symbols", shown(symbols), "expected a list of ticker symbols, e.g. quotes(['AAPL', 'MSFT'])"
        )
    wanted: dict[str, None] = {}
    errors: dict[str, QuoteResult] = {}
    for symbol in symbols:
        try:
            wanted[normalize_symbol(symbol)] = None
        except InvalidSymbol as e:
            errors[symbol if isinstance(symbol, str) else repr(symbol)] = e
    return list(wanted), errors


def quote_results(
    symbols: list[str], raws: Sequence[bytes | None], errors: dict[str, QuoteResult], clock: Clock
) -> dict[str, QuoteResult]:
    """Symbol -> the quote in its raw (one MGET's answers, read at one time), or why there is none;
    then `errors` (malformed symbols)."""
    read_at = clock()
    results: dict[str, QuoteResult] = {
        symbol: decode_or_error(Quote, "quote", symbol, raw, read_at)
        for symbol, raw in zip(symbols, raws, strict=True)
    }
    results.update(errors)
    return results


EXPIRATION_YEARS = range(2000, 2100)
"""Years an option expiration may fall in: any date outside is refused before Redis is asked."""

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_FORM = "expected a date or a 'YYYY-MM-DD' string, e.g. '2026-12-18'"


def parse_expiration(value: date | str) -> date:
    """`value` as a date; a string must be YYYY-MM-DD (surrounding spaces aside), the year 2000-2099."""
    day: date | None = None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and _ISO_DATE.fullmatch(value.strip(" \t")):
        try:
            day = date.fromisoformat(value.strip(" \t"))
        except ValueError:
            raise InvalidRequest("expiration", value, f"no such day; {_DATE_FORM}") from None
    if day is None:
        raise InvalidRequest("expiration", shown(value), _DATE_FORM)
    if day.year not in EXPIRATION_YEARS:
        first, last = EXPIRATION_YEARS[0], EXPIRATION_YEARS[-1]
        raise InvalidRequest(
            "expiration",
            value,
            f"no option expires then; expected a date from {first} to {last}, e.g. '2026-12-18'",
        )
    return day


def check_side(side: Side | None) -> Side:
    if side is None:
        return "both"
    if not isinstance(side, str) or side not in get_args(Side):
        raise InvalidRequest("side", shown(side), "expected 'calls', 'puts' or 'both' (None means both)")
    return side


def check_interval(interval: str) -> BarInterval:
    if not isinstance(interval, str) or interval not in get_args(BarInterval):
        choices = ", ".join(repr(i) for i in get_args(BarInterval))
        raise InvalidRequest("interval", shown(interval), f"expected one of {choices}")
    return interval  # type: ignore[return-value]  # narrowed by the membership test above


MAX_WAIT_S = 300.0
"""The longest `wait_s` a read accepts: an on-demand fetch lands within a job timeout or not at all."""


def check_flag(name: str, value: object) -> bool:
    """`value` of the option `name` (`fresh`, `options`, `technical`), which must be a bool: a
    string such as "false" would otherwise count as true."""
    if not isinstance(value, bool):
        raise InvalidRequest(name, shown(value), "expected True or False")
    return value


def check_wait_s(wait_s: object) -> float:
    """`wait_s` as seconds to wait for an on-demand fetch: a finite number from 0 to `MAX_WAIT_S`."""
    fix = f"expected seconds from 0 (enqueue a fetch, do not wait) to {MAX_WAIT_S:g}, e.g. 3"
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float):
        raise InvalidRequest("wait_s", shown(wait_s), fix)
    try:
        seconds = float(wait_s)
    except OverflowError:
        raise InvalidRequest("wait_s", shown(wait_s), fix) from None
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_WAIT_S):
        raise InvalidRequest("wait_s", shown(wait_s), fix)
    return seconds


def chains_script_args(symbol: str, clock: Clock, limit: int) -> list[str]:
    """ARGV of `CHAINS_SCRIPT`: chains of `symbol` from today on, at most `limit` (0: all)."""
    return [
        keys.chain_prefix(symbol),
        exchange_date(clock()).isoformat(),
        str(limit),
        keys.chain_index(symbol),
        keys.kept("chains"),
        symbol,
    ]


def chains_from_script(
    symbol: str, index_raw: bytes | None, raws: Sequence[bytes], clock: Clock, kept: int = 0
) -> tuple[OptionChain, ...]:
    """The chains the script returned; `NotCached` if none is cached for `symbol` from today on,
    saying why: the schedule does not keep its chains, or keeps them (`kept`) and has stored none yet."""
    read_at = clock()
    chains = tuple(decode_at(OptionChain, "option chain", symbol, raw, read_at) for raw in raws)
    if chains:
        return chains
    if index_raw is None and kept:
        raise NotCached(
            "option chain",
            symbol,
            "it is on the watchlist with chains enabled, but no chain of it is stored yet (the "
            "worker's chains refresh has not landed, or failed: see the worker's log)",
        )
    if index_raw is None:
        raise NotCached(
            "option chain",
            symbol,
            "the worker keeps no chains for it; add it to the watchlist with chains enabled in config.yaml",
        )
    index = decode_at(ChainIndex, "option chain", symbol, index_raw, read_at)
    if not index.expirations:
        raise no_options(symbol, index)
    listed = ", ".join(d.isoformat() for d in index.expirations)
    raise NotCached(
        "option chain",
        symbol,
        f"no cached chain expires on or after {exchange_date(read_at)} (kept: {listed}); "
        "the next chains refresh adds the coming expirations",
    )


def no_options(symbol: str, index: ChainIndex) -> ReaderError:
    """What an empty chain index (the worker found no listed options) answers: `NoData` while it is
    fresh; once stale, `NotCached`, so that the miss path has the worker check again."""
    checked = index.fetched_at.strftime("%Y-%m-%d %H:%M UTC")
    if index.stale:
        detail = f"{symbol} listed no options when last checked ({checked}); checking again"
        return NotCached("option chain", symbol, detail)
    return NoData(
        "option chain",
        symbol,
        f"{symbol} lists no options (checked {checked} by {index.source}; the worker checks again after "
        f"{index.fresh_until.strftime('%Y-%m-%d %H:%M UTC')}); asking before then gets this answer",
    )


def chain_for(
    symbol: str, expiration: date, raw: bytes | None, index_raw: bytes | None, clock: Clock
) -> OptionChain:
    """The chain of one expiration; `NotCached` lists the expirations that are cached instead."""
    if raw is not None:
        return decode(OptionChain, "option chain", symbol, raw, clock)
    kept = ""
    if index_raw is not None:
        try:
            index = ChainIndex.model_validate_json(index_raw)
            kept = f" (cached: {', '.join(d.isoformat() for d in index.expirations) or 'none'})"
        except ValidationError:
            kept = ""
        else:
            mark_read(index, clock())
            if not index.expirations:
                raise no_options(symbol, index)
    raise NotCached(
        "option chain",
        symbol,
        f"no chain cached for expiration {expiration.isoformat()}{kept}; call chain({symbol!r}) for the "
        "nearest one, or configure more expirations under datasets.chains in config.yaml",
    )


def bundle_from(
    symbol: str,
    answer: Sequence[Any],
    *,
    options: bool,
    technical: bool,
    clock: Clock,
) -> Bundle:
    """Assemble a `Bundle` from the answer of `CHAINS_SCRIPT` (options) or an MGET (no options)."""
    if options:
        index_raw, chain_raws, kept, quote_raw, *rest = answer
    else:
        quote_raw, *rest = answer
    read_at = clock()
    quote = decode_or_error(Quote, "quote", symbol, quote_raw, read_at)
    indicators = decode_or_error(Indicators, "indicators", symbol, rest[0], read_at) if technical else None
    chains: tuple[OptionChain, ...] | ReaderError | None = None
    if options:
        try:
            chains = chains_from_script(symbol, index_raw, chain_raws, clock, kept)
        except (NotCached, NoData) as e:
            chains = e
    return Bundle(symbol=symbol, quote=quote, chains=chains, indicators=indicators)
