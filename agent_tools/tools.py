"""The nine tools of the agent this cache serves, as plain async functions.

Each tool returns compact JSON: the data, with its freshness (`as_of`: when it was fetched from
upstream, `stale`: read after its freshness window), or `{"error": ...}` with a message the model
can act on. Reader errors and an unreachable Redis never escape a tool; an argument of the wrong
type or out of range (a NaN strike, "false" for a flag) is such an error, found before any read.

No answer is longer than `MAX_ANSWER_CHARS` characters: a tool that must leave rows out (strikes,
bars, quotes, dates, chains) leaves them out whole and says so with `"truncated": true`,
`left_out` (what, and how many) and `hint` (how to ask for the rest).

A tool's name, docstring and signature are its one definition: `agent_tools.catalog` derives from
them what a model is told (description, parameter descriptions, a strict JSON Schema), for the
Agents SDK (`function_tools()`) and for MCP clients (`python -m reader mcp`) alike.

The functions read through the `Reader` set by `use_reader` for the current context, else
through a default `Reader()` (from `REDIS_URL`), one per event loop, created at its first call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from agent_tools import answers
from agent_tools.answers import (
    CHAIN_STRIKES,
    MAX_ANSWER_CHARS,
    TRUNCATION_ROOM,
    UNAVAILABLE,
    bar_fields,
    chain_fields,
    chains_part,
    echo,
    fields,
    fitting,
    indicator_fields,
    iso,
    part,
    quote_fields,
    respond,
    size,
    status_fields,
    truncated,
)
from reader.client import Reader
from reader.errors import InvalidRequest, ReaderError
from reader.models import Side
from reader.symbols import shown

__all__ = [
    "MAX_ANSWER_CHARS",
    "TOOLS",
    "TOOL_NAMES",
    "UNAVAILABLE",
    "get_call_options_chain",
    "get_market_status_and_date_time",
    "get_multiple_stock_quotes",
    "get_options_expiration_dates",
    "get_put_options_chain",
    "get_stock_data_bundle",
    "get_stock_price_history",
    "get_stock_quote",
    "get_ta_indicators",
    "use_reader",
]

logger = logging.getLogger(__name__)

MAX_BARS = 500
"""The largest `limit` of `get_stock_price_history`."""

DEFAULT_BARS = 30
"""The `limit` of `get_stock_price_history` when none is given (null)."""


MAX_SYMBOLS = 50
"""The most symbols `get_multiple_stock_quotes` takes (each miss may cost an upstream call)."""

MAX_STRIKE = 1_000_000.0
"""The largest `min_strike`/`max_strike` the chain tools take (a price, in dollars)."""

_current: ContextVar[Reader | None] = ContextVar("marketcache_tools_reader", default=None)
# One default reader per running event loop; those of closed loops are dropped (a reader's
# listener task holds its loop, so weak references would never let go).
_defaults: dict[asyncio.AbstractEventLoop, Reader] = {}


def use_reader(reader: Reader | None) -> None:
    """Make the tools read through `reader` in the current context (and the tasks it starts from
    now on); None goes back to the default `Reader()`. The caller keeps ownership: it closes it."""
    _current.set(reader)


def _reader() -> Reader:
    """The context's reader, else this event loop's default (a Reader's connections belong to one loop)."""
    reader = _current.get()
    if reader is not None:
        return reader
    loop = asyncio.get_running_loop()
    default = _defaults.get(loop)
    if default is None:
        for closed in [other for other in _defaults if other.is_closed()]:
            del _defaults[closed]
        default = _defaults[loop] = Reader()
    return default


# Checks of the arguments a model passes, before anything is read.


def _strike(name: str, value: object) -> float | None:
    """A strike bound: None, or a price from 0 to `MAX_STRIKE`."""
    if value is None:
        return None
    fix = f"expected a strike price from 0 to {MAX_STRIKE:g}, or null for no bound"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(name, shown(value), fix)
    try:
        price = float(value)
    except OverflowError:
        raise InvalidRequest(name, shown(value), fix) from None
    if not (math.isfinite(price) and 0 <= price <= MAX_STRIKE):
        raise InvalidRequest(name, shown(value), fix)
    return price


def _limit(value: object) -> int:
    """A number of bars from 1 to `MAX_BARS` (a whole float such as 30.0 is taken as an int); None
    is the default, `DEFAULT_BARS`."""
    if value is None:
        return DEFAULT_BARS
    count = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BARS:
        raise InvalidRequest("limit", shown(value), f"expected a whole number of bars from 1 to {MAX_BARS}")
    return count


def _flag(name: str, value: object) -> bool:
    """A flag: true or false; None is false (the default)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(name, shown(value), "expected true, false, or null for false")
    return value


def _expiration(value: object) -> str | None:
    """The expiration text to pass on (the reader parses it), or None for the nearest."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(
            "expiration", shown(value), "expected a 'YYYY-MM-DD' string, or null for the nearest"
        )
    return value.strip(" \t") or None


# What each tool reads (raising reader errors), then the tools themselves.


async def _quote(symbol: str) -> dict[str, Any]:
    return quote_fields(await _reader().quote(symbol))


async def _quotes(symbols: list[str]) -> dict[str, Any]:
    if not isinstance(symbols, list | tuple):
        fix = "expected a list of ticker symbols, e.g. ['AAPL', 'MSFT']"
        raise InvalidRequest("symbols", shown(symbols), fix)
    if not symbols:
        raise InvalidRequest("symbols", symbols, "pass at least one ticker symbol, e.g. ['AAPL', 'MSFT']")
    distinct = {s.strip(" \t").upper() if isinstance(s, str) else repr(s) for s in symbols}
    if len(distinct) > MAX_SYMBOLS:  # a symbol repeated costs nothing more
        fix = f"ask for at most {MAX_SYMBOLS} at a time"
        raise InvalidRequest("symbols", f"{len(distinct)} symbols", fix)
    results = await _reader().quotes(symbols)
    quotes = {
        echo(symbol): part(result, functools.partial(quote_fields, with_symbol=False))
        for symbol, result in results.items()
    }
    # Whole quotes in the order asked, as many as fit; the room of the left-out list is kept free.
    room = answers.MAX_ANSWER_CHARS - size({"quotes": {}}) - TRUNCATION_ROOM - size(list(quotes))
    kept = fitting([size(key) + 1 + size(value) for key, value in quotes.items()], room)
    data: dict[str, Any] = {"quotes": dict(list(quotes.items())[:kept])}
    if kept < len(quotes):
        left_out = {"symbols": list(quotes)[kept:]}
        truncated(data, left_out, "ask for the symbols left out in another call")
    return data


async def _expirations(symbol: str) -> dict[str, Any]:
    data = fields(await _reader().expirations(symbol))
    dates = data.pop("dates")
    room = answers.MAX_ANSWER_CHARS - size({**data, "dates": []}) - TRUNCATION_ROOM
    kept = fitting([size(d) for d in dates], room)
    data["dates"] = dates[:kept]
    if kept < len(dates):
        left_out = {"dates": len(dates) - kept, "last": dates[-1]}
        truncated(
            data, left_out, "the nearest dates are listed; a chain of a later date is asked by its date"
        )
    return data


async def _chain(
    symbol: str, side: Side, expiration: object, min_strike: object, max_strike: object
) -> dict[str, Any]:
    day = _expiration(expiration)
    low, high = _strike("min_strike", min_strike), _strike("max_strike", max_strike)
    if low is not None and high is not None and low > high:
        raise InvalidRequest("min_strike", low, f"it must not exceed max_strike={high!r}")
    chain = await _reader().chain(symbol, day, side)
    contracts = [
        c for c in chain.contracts if (low is None or c.strike >= low) and (high is None or c.strike <= high)
    ]
    return chain_fields(chain, contracts, CHAIN_STRIKES, key=side)


async def _history(symbol: str, interval: object, limit: object) -> dict[str, Any]:
    count = _limit(limit)
    length = "1d" if interval is None else interval
    history = await _reader().history(symbol, length)  # type: ignore[arg-type]  # the reader checks it
    daily = history.interval == "1d"
    rows = [bar_fields(b, daily=daily) for b in history.bars[-count:]]
    data = {**fields(history, ("bars",)), "bars": [], "total_bars": len(history.bars)}
    # The most recent bars first: those that do not fit are the oldest asked for.
    room = answers.MAX_ANSWER_CHARS - size(data) - TRUNCATION_ROOM
    kept = fitting([size(row) for row in reversed(rows)], room)
    data["bars"] = rows[len(rows) - kept :]
    if not history.bars:  # remembered "no data": say so, and until when, rather than a bare []
        data["note"] = (
            f"the upstream had no {length} bars of {history.symbol} when the cache checked at "
            f"{iso(history.fetched_at)} (a new listing, or no session in the lookback); it checks "
            f"again after {iso(history.fresh_until)}"
        )
    if kept < len(rows):
        hint = f"the oldest bars asked for were left out: {kept} fit in one answer; ask with limit={kept}"
        truncated(data, {"bars": len(rows) - kept}, hint)
    return data


async def _indicators(symbol: str) -> dict[str, Any]:
    return indicator_fields(await _reader().indicators(symbol))


async def _market_status() -> dict[str, Any]:
    return status_fields(await _reader().market_status())


async def _bundle(symbol: str, options: object, technical: object) -> dict[str, Any]:
    with_options, with_technical = _flag("include_options", options), _flag("include_technical", technical)
    bundle = await _reader().bundle(symbol, options=with_options, technical=with_technical)
    data: dict[str, Any] = {
        "symbol": bundle.symbol,
        "quote": part(bundle.quote, functools.partial(quote_fields, with_symbol=False)),
    }
    if bundle.indicators is not None:
        data["technical"] = part(bundle.indicators, indicator_fields)
    if bundle.chains is not None:
        chains = bundle.chains
        room = answers.MAX_ANSWER_CHARS - size({**data, "options": {}})
        data["options"] = (
            {"error": str(chains)} if isinstance(chains, ReaderError) else chains_part(chains, room)
        )
    # Parts in the documented order: quote, options, technical.
    order = ("symbol", "quote", "options", "technical")
    return {name: data[name] for name in order if name in data}


async def get_stock_quote(symbol: str) -> str:
    """Get the latest quote of one stock, ETF, index or option contract from the market data cache.

    The answer is a JSON object with `symbol`, `as_of` (when the quote was fetched, UTC) and
    `stale` (true if it is older than the cache promises; mention it when it matters), then the
    fields known: `last`, `change`, `change_percentage` (in percent), `open`, `high`, `low`,
    `close`, `prevclose`, `volume`, `average_volume`, `last_volume`, `bid`, `ask`, `bidsize` and
    `asksize` (hundreds of shares), `week_52_high`, `week_52_low`, `trade_date`, `description`,
    `type`. On failure it is `{"error": ...}` saying what to do, e.g. ask again in a few seconds
    when a fetch of the symbol was just queued.

    Args:
        symbol: Ticker symbol, e.g. "AAPL" or "BRK.B" (upper or lower case), an index such as
            "SPX", or an OCC option symbol such as "AAPL261204C00150000" (its quote adds
            `underlying`, `strike`, `expiration_date`, `option_type`, `open_interest`, greeks).
    """
    return await respond("get_stock_quote", _quote(symbol), symbol)


async def get_multiple_stock_quotes(symbols: list[str]) -> str:
    """Get the latest quotes of several stocks, ETFs, indices or option contracts in one call.

    The answer is `{"quotes": {SYMBOL: quote or {"error": ...}}}`, keyed by each symbol's cache
    form: upper case, class shares with a dot ("brk/b" -> "BRK.B"), indices bare ("^SPX" ->
    "SPX"), options as compact OCC symbols; a malformed symbol is keyed as given. Each quote has
    the fields of `get_stock_quote` with its own `as_of` and `stale`. One symbol that fails does
    not fail the others: retry only those with an error, when the error says to. If the quotes
    would not fit in one answer, the last ones are left out: the answer then has
    `"truncated": true`, `left_out: {"symbols": [...]}` and a `hint`; ask for those in another
    call.

    Args:
        symbols: Ticker symbols, e.g. ["AAPL", "BRK.B", "SPX", "AAPL261204C00150000"]; at most 50.
    """
    return await respond("get_multiple_stock_quotes", _quotes(symbols))


async def get_options_expiration_dates(symbol: str) -> str:
    """List the option expiration dates of an underlying, as listed by the exchange.

    The answer is `{"symbol", "as_of", "stale", "dates": ["YYYY-MM-DD", ...]}`, ascending. Pass
    one of the dates to `get_call_options_chain` or `get_put_options_chain`. A list too long for
    one answer keeps the nearest dates and has `"truncated": true`, `left_out: {"dates": count,
    "last": the last date listed upstream}` and a `hint`.

    Args:
        symbol: Ticker symbol of the underlying, e.g. "AAPL" or "SPY".
    """
    return await respond("get_options_expiration_dates", _expirations(symbol), symbol)


async def get_call_options_chain(
    symbol: str,
    expiration: str | None = None,
    min_strike: float | None = None,
    max_strike: float | None = None,
) -> str:
    """Get the call options of an underlying for one expiration, with prices, IVs and greeks.

    The answer is `{"symbol", "as_of", "stale", "expiration", "underlying_price",
    "underlying_price_at", "greeks_updated_at", "calls": [...]}`, calls sorted by strike, each
    with `symbol` (OCC), `strike`, `bid`, `ask`, `last`, `change`, `volume`, `open_interest`,
    `bid_iv`, `mid_iv`, `ask_iv` (fractions: 0.25 is 25 %), `delta`, `gamma`, `theta` (per day),
    `vega`, `rho` (fields the upstream lacks are left out). `underlying_price` is the price the
    strikes are centred on: the upstream's, or the cached quote's as of `underlying_price_at`
    (UTC; absent when it came with the chain, at `as_of`). It is null when unknown: a `note` then
    says which strikes are shown instead; pass min_strike/max_strike to choose them. At most 30
    strikes are returned, those nearest the underlying price (fewer if they would not fit in one
    answer); when strikes are left out the answer has `"truncated": true`, `left_out:
    {"contracts", "strikes_below", "strikes_above"}` (counts) and a `hint`: narrow with
    min_strike/max_strike to see the others.

    Args:
        symbol: Ticker symbol of the underlying, e.g. "AAPL".
        expiration: Expiration date "YYYY-MM-DD" (see get_options_expiration_dates), or null for
            the nearest one cached.
        min_strike: Lowest strike to include, or null for no lower bound.
        max_strike: Highest strike to include, or null for no upper bound.
    """
    answer = _chain(symbol, "calls", expiration, min_strike, max_strike)
    return await respond("get_call_options_chain", answer, symbol)


async def get_put_options_chain(
    symbol: str,
    expiration: str | None = None,
    min_strike: float | None = None,
    max_strike: float | None = None,
) -> str:
    """Get the put options of an underlying for one expiration, with prices, IVs and greeks.

    The answer has the shape of `get_call_options_chain`, with `puts` instead of `calls`: the
    same `underlying_price` (null and a `note` when unknown), at most 30 strikes nearest it, and
    `"truncated": true`, `left_out` and `hint` when strikes are left out: narrow with
    min_strike/max_strike.

    Args:
        symbol: Ticker symbol of the underlying, e.g. "AAPL".
        expiration: Expiration date "YYYY-MM-DD" (see get_options_expiration_dates), or null for
            the nearest one cached.
        min_strike: Lowest strike to include, or null for no lower bound.
        max_strike: Highest strike to include, or null for no upper bound.
    """
    answer = _chain(symbol, "puts", expiration, min_strike, max_strike)
    return await respond("get_put_options_chain", answer, symbol)


async def get_stock_price_history(symbol: str, interval: str | None = None, limit: int | None = None) -> str:
    """Get the most recent price bars (OHLCV) of a stock, ETF or index, oldest first.

    The answer is `{"symbol", "as_of", "stale", "interval", "bars": [...], "total_bars"}`. Daily
    bars carry their session `date`, intraday bars their `start` (UTC); each has `open`, `high`,
    `low`, `close`, and, when known, `volume` (an index has none) and `vwap`. The last bar may
    still be forming. `total_bars` is how many the cache holds. If the bars asked for would not
    fit in one answer (150 to 250 daily bars do, by their prices), the oldest are left out: the
    answer then has `"truncated": true`, `left_out: {"bars": count}` and a `hint` with the
    largest limit that fits. With no bars (a new listing; intraday bars when no session fell in
    the lookback), a `note` says when the cache checked and when it checks again.

    Args:
        symbol: Ticker symbol, e.g. "AAPL".
        interval: Bar length: "1d" (daily), "1m", "5m" or "15m"; null for "1d".
        limit: How many of the most recent bars to return, 1 to 500; null for 30.
    """
    return await respond("get_stock_price_history", _history(symbol, interval, limit), symbol)


async def get_ta_indicators(symbol: str) -> str:
    """Get the latest technical indicators of a stock, ETF or index, computed on daily closes.

    The answer is `{"symbol", "as_of", "stale", "interval", "last_bar", "close", "sma", "ema",
    "rsi", "macd"}`: `sma`, `ema` and `rsi` map a window in bars ("20") to its value, `macd` has
    `fast`, `slow`, `signal_window`, `macd`, `signal` and `histogram`; `last_bar` is the session
    of the last bar used and `close` its close.

    Args:
        symbol: Ticker symbol, e.g. "AAPL".
    """
    return await respond("get_ta_indicators", _indicators(symbol), symbol)


async def get_market_status_and_date_time() -> str:
    """Get the current date and time, and whether the US stock market is open.

    The answer is `{"now_utc", "now_new_york", "weekday", "exchange", "phase", "session",
    "next_open", "next_close"}`, computed now from the exchange calendar. `phase` is "pre"
    (pre-market, from 04:00), "regular" (the session, usually 09:30-16:00), "post" (after hours,
    to 20:00) or "closed". `session` is today's (`date`, `open`, `close`, `early_close`) or
    null on a holiday, a weekend or an unscheduled closure. Times are New York local with their
    UTC offset. `calendar` is "worker" when the answer follows the cache worker's calendar
    (holidays plus unscheduled closures it was told of); otherwise the installed exchange calendar
    answered alone, which does not know unscheduled closures.
    """
    return await respond("get_market_status_and_date_time", _market_status())


async def get_stock_data_bundle(
    symbol: str, include_options: bool | None = None, include_technical: bool | None = None
) -> str:
    """Get a stock's quote and, optionally, its option chains and technical indicators, in one call.

    The answer is `{"symbol", "quote", "options", "technical"}`; each part is what the single
    tools return (with its own `as_of` and `stale`) or `{"error": ...}`, and parts not asked for
    are left out. `options` is `{"chains": [...]}`: every cached expiration from today on,
    nearest first, each with `underlying_price` (null and a `note` when unknown, as in
    `get_call_options_chain`) and the 3 strikes nearest it (calls and puts, `option_type` says
    which); each chain says `"truncated": true` with `left_out` counts for its other strikes.
    Chains that would not fit in one answer are left out whole: `options` then has
    `"truncated": true`, `left_out: {"chains", "expirations"}` and a `hint`. Use
    `get_call_options_chain`/`get_put_options_chain` for whole chains.

    Args:
        symbol: Ticker symbol, e.g. "AAPL".
        include_options: Also return the option chains near the money; null for false.
        include_technical: Also return the technical indicators (SMA, EMA, RSI, MACD); null for false.
    """
    answer = _bundle(symbol, include_options, include_technical)
    return await respond("get_stock_data_bundle", answer, symbol)


TOOLS: tuple[Callable[..., Awaitable[str]], ...] = (
    get_stock_quote,
    get_multiple_stock_quotes,
    get_options_expiration_dates,
    get_call_options_chain,
    get_put_options_chain,
    get_stock_price_history,
    get_ta_indicators,
    get_market_status_and_date_time,
    get_stock_data_bundle,
)
"""The plain tool functions, in the order an agent is given them."""

TOOL_NAMES: tuple[str, ...] = tuple(tool.__name__ for tool in TOOLS)
