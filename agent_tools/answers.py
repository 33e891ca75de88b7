"""What the agent tools answer: cached items as compact JSON for a model, within a bound.

Each answer carries its data's freshness (`as_of`: when it was fetched from upstream, UTC;
`stale`: read after its freshness window) instead of the cache's envelope. No answer is longer
than `MAX_ANSWER_CHARS` characters: rows that do not fit (strikes, bars, quotes, dates, chains)
are left out whole, and the answer says so (`truncated`, `left_out`, `hint`). Used by the tools
(`agent_tools.tools`) and the MCP resources (`agent_tools.resources`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.exceptions

from reader.calendar import EXCHANGE_TZ
from reader.errors import ReaderError
from reader.models import Bar, CachedItem, Indicators, MarketStatus, OptionChain, OptionContract

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 20_000
"""The longest answer of any tool, in characters (about 5,000 tokens at 4 characters a token)."""

CHAIN_STRIKES = 30
"""At most this many strikes per chain answer, those nearest the underlying's price."""

BUNDLE_STRIKES = 3
"""Strikes per expiration in a bundle (the call and the put of each): the ones nearest the money."""

UNAVAILABLE = "the market data cache is unavailable right now; try again in a minute"
MISCONFIGURED = (
    "the market data cache refuses this tool's Redis login or commands (a setup problem: asking "
    "again will not help; tell the user to check REDIS_URL's user and password)"
)


def redis_trouble(where: str, error: redis.exceptions.RedisError) -> str:
    """What to tell a model of a Redis error, logged once here: `MISCONFIGURED` for a refused login
    or command (a wrong password, a user without the right; logged at ERROR: only a person can
    fix it), else `UNAVAILABLE` (out of reach, silent, out of memory: it passes). A redis-py
    error's message names host and port at most, never a password."""
    if isinstance(error, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError):
        logger.error("tools.cache_refused %s error=%s: %s", where, type(error).__name__, error)
        return MISCONFIGURED
    logger.warning("tools.cache_unavailable %s error=%s: %s", where, type(error).__name__, error)
    return UNAVAILABLE


# Envelope fields replaced by `as_of` and `stale`, and quote fields of no use to a model.
ENVELOPE = ("source", "fetched_at", "fresh_until", "age_s", "stale")
QUOTE_NOISE = ("exch", "bidexch", "askexch", "bid_date", "ask_date", "root_symbols")
ECHO_MAX = 40
"""An answer echoes a symbol it could not use (as `symbol`, or a `quotes` key) only up to this length."""


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def echo(symbol: str) -> str:
    return symbol if len(symbol) <= ECHO_MAX else f"{symbol[: ECHO_MAX - 3]}..."


def error_fields(error: ReaderError, symbol: object) -> dict[str, Any]:
    named = getattr(error, "symbol", symbol)
    return {"error": str(error), **({"symbol": echo(named)} if isinstance(named, str) else {})}


def bounded_json(tool: str, answer: dict[str, Any]) -> str:
    """`answer` as compact JSON, or an error if it is still over `MAX_ANSWER_CHARS` (each tool cuts
    its rows to fit first; this only stops an answer no tool foresaw, such as a huge upstream text)."""
    text = dumps(answer)
    if len(text) <= MAX_ANSWER_CHARS:
        return text
    logger.warning("tools.answer_too_long tool=%s chars=%d bound=%d", tool, len(text), MAX_ANSWER_CHARS)
    return dumps(
        {
            "error": f"the answer would be {len(text)} characters, over the bound of {MAX_ANSWER_CHARS}; "
            "ask for less (fewer symbols, a narrower strike range, a smaller limit)"
        }
    )


async def respond(tool: str, answer: Awaitable[dict[str, Any]], symbol: object = None) -> str:
    """`answer` as compact JSON, within `MAX_ANSWER_CHARS`; a reader error, or a Redis error
    (`redis_trouble`), as `{"error": ...}`."""
    try:
        return bounded_json(tool, await answer)
    except ReaderError as e:
        return dumps(error_fields(e, symbol))
    except redis.exceptions.RedisError as e:
        return dumps({"error": redis_trouble(f"tool={tool}", e)})


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def et(value: datetime) -> str:
    return value.astimezone(EXCHANGE_TZ).isoformat(timespec="seconds")


def fields(item: CachedItem, drop: Sequence[str] = ()) -> dict[str, Any]:
    """`item` for a model: its symbol, `as_of` and `stale`, then its data less the envelope and `drop`."""
    data = item.as_json()
    for name in (*ENVELOPE, *drop):
        data.pop(name, None)
    head = {"symbol": data.pop("symbol")} if "symbol" in data else {}
    return {**head, "as_of": iso(item.fetched_at), "stale": item.stale, **data}


def quote_fields(item: CachedItem, *, with_symbol: bool = True) -> dict[str, Any]:
    return fields(item, QUOTE_NOISE if with_symbol else (*QUOTE_NOISE, "symbol"))


def part(value: CachedItem | ReaderError, render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """`value` rendered, or its error as `{"error": ...}` (a part of a many-part answer)."""
    return {"error": str(value)} if isinstance(value, ReaderError) else render(value)


def contract_fields(contract: OptionContract) -> dict[str, Any]:
    return {k: v for k, v in contract._asdict().items() if v is not None}


TRUNCATION_ROOM = 600
"""Characters kept free for `truncated`, `left_out` and `hint` when rows are counted into a bound."""


def size(value: object) -> int:
    return len(dumps(value))


def fitting(sizes: Sequence[int], room: int) -> int:
    """How many items of `sizes` (each item's compact JSON length), taken in order, fit in a
    compact JSON list or object of `room` characters (the brackets and commas counted)."""
    used, count = 2, 0
    for item_size in sizes:
        used += item_size + (1 if count else 0)
        if used > room:
            break
        count += 1
    return count


def truncated(data: dict[str, Any], left_out: dict[str, Any], hint: str) -> dict[str, Any]:
    data.update(truncated=True, left_out=left_out, hint=hint)
    return data


def price_center(chain: OptionChain, contracts: Sequence[OptionContract]) -> tuple[float | None, str | None]:
    """The price to centre the strikes on and, when the underlying's price is unknown, the note that
    says so. Never the middle of the strike list: without a price, the strike whose delta is nearest
    +-0.5 (about at the money), else none (the lowest strikes are shown)."""
    if chain.underlying_price:
        return chain.underlying_price, None
    greeks = [c for c in contracts if c.delta is not None]
    if greeks:
        atm = min(greeks, key=lambda c: (abs(abs(c.delta or 0.0) - 0.5), c.strike)).strike
        return atm, (
            f"the underlying price is unknown: strikes are centred on {atm:g}, the strike whose delta "
            "is nearest 0.5 in absolute value (about at the money); pass min_strike/max_strike to "
            "choose the strikes"
        )
    return None, (
        "the underlying price is unknown and the chain has no deltas: the strikes are not centred on "
        "the money, the lowest are shown; pass min_strike/max_strike to choose the strikes"
    )


def chain_fields(
    chain: OptionChain,
    contracts: Sequence[OptionContract],
    strikes: int,
    key: str = "contracts",
    hint: str = "pass min_strike/max_strike to see the strikes left out",
) -> dict[str, Any]:
    """`chain` with `contracts` cut to the `strikes` strikes nearest the money (fewer if more would
    not fit in `MAX_ANSWER_CHARS`); a cut says what it left out."""
    drop_type = key != "contracts"  # a calls or puts list needs no option_type per row
    rows: dict[float, list[dict[str, Any]]] = {}
    for c in contracts:
        row = {k: v for k, v in contract_fields(c).items() if not (drop_type and k == "option_type")}
        rows.setdefault(c.strike, []).append(row)
    data = fields(chain, ("contracts", "underlying_price_at"))
    data["underlying_price"] = chain.underlying_price or None  # null, never 0, when unknown
    if chain.underlying_price and chain.underlying_price_at is not None:
        data["underlying_price_at"] = iso(chain.underlying_price_at)
    center, note = price_center(chain, contracts)
    if note is not None:
        data["note"] = note
    order = sorted(rows) if center is None else sorted(rows, key=lambda s: (abs(s - center), s))
    room = MAX_ANSWER_CHARS - size({**data, key: []}) - TRUNCATION_ROOM
    sizes = [size(rows[s]) - 2 for s in order[:strikes]]  # a strike's rows, without their brackets
    kept = sorted(order[: fitting(sizes, room)])
    data[key] = [row for s in kept for row in rows[s]]
    if len(kept) < len(rows):
        low, high = (kept[0], kept[-1]) if kept else (math.inf, math.inf)
        below, above = [s for s in rows if s < low], [s for s in rows if s > high]
        left_out = {
            "contracts": len(contracts) - len(data[key]),
            "strikes_below": len(below),
            "strikes_above": len(above),
        }
        ranges = [f"{min(side):g}-{max(side):g}" for side in (below, above) if side]
        where = f" (strikes {' and '.join(ranges)})" if ranges else ""
        truncated(data, left_out, f"{hint}{where}; this answer shows {len(kept)} strikes")
    return data


def bar_fields(bar: Bar, *, daily: bool) -> dict[str, Any]:
    row: dict[str, Any] = {"date": et(bar.start)[:10]} if daily else {"start": iso(bar.start)}
    row |= {"open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close}
    if bar.volume is not None:  # an index's bars have no volume
        row["volume"] = int(bar.volume) if bar.volume.is_integer() else bar.volume
    if bar.vwap is not None:
        row["vwap"] = bar.vwap
    return row


def status_fields(status: MarketStatus) -> dict[str, Any]:
    now_et = status.at.astimezone(EXCHANGE_TZ)
    session = None
    if status.session is not None and status.open is not None and status.close is not None:
        session = {
            "date": status.session.isoformat(),
            "open": et(status.open),
            "close": et(status.close),
            "early_close": status.early_close,
        }
    return {
        "now_utc": iso(status.at),
        "now_new_york": now_et.isoformat(timespec="seconds"),
        "weekday": now_et.strftime("%A"),
        "exchange": status.exchange,
        "phase": status.phase,
        "session": session,
        "next_open": et(status.next_open),
        "next_close": et(status.next_close),
        "calendar": status.calendar,
    }


def indicator_fields(item: Indicators) -> dict[str, Any]:
    data = fields(item, ("as_of",))
    data["last_bar"] = et(item.as_of)[:10] if item.interval == "1d" else iso(item.as_of)
    return data


BUNDLE_HINT = "use get_call_options_chain/get_put_options_chain with this expiration for more strikes"


def chains_part(chains: tuple[OptionChain, ...], room: int) -> dict[str, Any]:
    """The chains near the money, nearest expiration first, as many whole chains as fit in `room`."""
    parts = [chain_fields(c, c.contracts, BUNDLE_STRIKES, hint=BUNDLE_HINT) for c in chains]
    # The room of the left-out expirations is kept free too.
    room -= size({"chains": []}) + TRUNCATION_ROOM + size([p["expiration"] for p in parts])
    kept = fitting([size(p) for p in parts], room)
    data: dict[str, Any] = {"chains": parts[:kept]}
    if kept < len(parts):
        left_out = {"chains": len(parts) - kept, "expirations": [p["expiration"] for p in parts[kept:]]}
        hint = "ask get_call_options_chain/get_put_options_chain for the expirations left out"
        truncated(data, left_out, hint)
    return data
