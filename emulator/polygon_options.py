"""Polygon's option chain snapshot over `emulator.options`, the same contracts as Tradier's chains.

Fidelity points (auth, plan gating, limits, cursors as in `emulator.polygon`):
- `/v3/snapshot/options/{underlying}`: `{"status":"OK","request_id","results":[...],"next_url"?}`
  filtered by `expiration_date`, `strike_price` (each also `.gte/.gt/.lte/.lt`) and
  `contract_type`; sorted by `ticker` (default), `expiration_date` or `strike_price`, `order`
  asc/desc; `limit` default 10, at most 250 (larger is clamped, a choice); the cursor encodes the
  query and the offset. An unknown underlying gives `results: []`.
- a contract: `break_even_price` (strike +- midpoint), `day` (`{}` when it has not traded today,
  as the reference suspects), `details` (american, 100 shares, `O:` ticker), `greeks`
  (delta/gamma/theta/vega) and `implied_volatility` (= Tradier's `mid_iv`) except on the few
  contracts Tradier sends `"greeks": null` for, `last_quote`, `last_trade` (only if it ever
  traded), `open_interest`, `underlying_asset`; every timestamp in ns; bid/ask/Greeks equal to
  Tradier's chain at the same instant.
- `/v3/snapshot/options/{underlying}/{O:contract}`: the same object as `results`; unknown: 404
  NOT_FOUND "Ticker not found." (unconfirmed).
- an index underlying is accepted as `I:SPX` and as bare `SPX` (which one Polygon wants is
  unconfirmed); its chain holds both roots (SPX, SPXW) of a monthly date, and `underlying_asset`
  carries `ticker: "I:SPX"` and the index `value` instead of a `price`.
- a class share's contracts have the OCC root without the dot: `/v3/snapshot/options/BRK.B` lists
  `O:BRKB261204C00480000` with `underlying_asset.ticker` `BRK.B`, and
  `/v3/snapshot/options/BRK.B/O:BRKB261204C00480000` answers that contract.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from aiohttp import web

from emulator.bars import ns
from emulator.market import INDICES
from emulator.options import CONTRACT_SIZE, OptionQuote
from emulator.polygon import (
    INDEX_PREFIX,
    admit,
    bad_request,
    fail,
    integer,
    next_url,
    ok,
    query,
    range_filter,
)

CHAIN_PATH = "/v3/snapshot/options/{underlying}"
CONTRACT_PATH = "/v3/snapshot/options/{underlying}/{contract}"
_SORTS: dict[str, Callable[[OptionQuote], Any]] = {
    "ticker": lambda q: q.symbol,
    "expiration_date": lambda q: (q.expiration.date, q.symbol),
    "strike_price": lambda q: (q.strike, q.symbol),
}
_OPRA_EXCHANGES = "ABCHIMNPQTWXZ"


def add_routes(app: web.Application) -> None:
    app.router.add_get(CHAIN_PATH, chain_snapshot)
    app.router.add_get(CONTRACT_PATH, contract_snapshot)


async def chain_snapshot(request: web.Request) -> web.Response:
    state, now = admit(request, snapshot=True)
    params = query(request)
    underlying = _underlying(request.match_info["underlying"])
    limit = integer(params, "limit", 10, 1, 250)
    offset = integer(params, "offset", 0, 0, 10**9)
    sort_by = params.get("sort", "ticker")
    if sort_by not in _SORTS:
        raise bad_request(f"sort must be one of {', '.join(_SORTS)}, got {sort_by!r}")
    contract_type = params.get("contract_type")
    if contract_type not in (None, "call", "put"):
        raise bad_request(f"contract_type must be call or put, got {contract_type!r}")
    expiration_ok = range_filter(params, "expiration_date", date.fromisoformat)
    strike_ok = range_filter(params, "strike_price", float)
    contracts = [
        q
        for expiration in state.options_book.expirations(underlying, now)
        if expiration_ok(expiration.date)
        for q in state.options_book.chain(underlying, expiration.date, now) or []
        if strike_ok(q.strike) and contract_type in (None, q.option_type)
    ]
    contracts.sort(key=_SORTS[sort_by], reverse=params.get("order", "asc") == "desc")
    page = contracts[offset : offset + limit]
    body: dict[str, Any] = {"results": [wire_contract(q) for q in page]}
    if offset + limit < len(contracts):
        resume = {k: v for k, v in params.items() if k != "cursor"} | {"offset": str(offset + limit)}
        body["next_url"] = next_url(request, request.path, resume)
    return ok(**body)


async def contract_snapshot(request: web.Request) -> web.Response:
    state, now = admit(request, snapshot=True)
    underlying, ticker = _underlying(request.match_info["underlying"]), request.match_info["contract"]
    found = state.options_book.contract(ticker.removeprefix("O:"), now) if ticker.startswith("O:") else None
    if found is None or found.underlying != underlying:
        raise fail(404, "NOT_FOUND", message="Ticker not found.")
    return ok(results=wire_contract(found))


def _underlying(raw: str) -> str:
    """The market key of an options-snapshot underlying: `I:SPX` and bare `SPX` are both SPX."""
    name = raw.removeprefix(INDEX_PREFIX)
    return name if name in INDICES else raw


def wire_contract(q: OptionQuote) -> dict[str, Any]:
    """One contract as the options snapshot sends it."""
    is_call = q.option_type == "call"
    break_even = round(q.strike + q.midpoint if is_call else q.strike - q.midpoint, 4)
    body: dict[str, Any] = {
        "break_even_price": break_even,
        "day": _day(q),
        "details": {
            "contract_type": q.option_type,
            "exercise_style": "american",
            "expiration_date": q.expiration.date.isoformat(),
            "shares_per_contract": CONTRACT_SIZE,
            "strike_price": q.strike,
            "ticker": f"O:{q.symbol}",
        },
    }
    if q.greeks is not None:
        g = q.greeks
        body["greeks"] = {"delta": g.delta, "gamma": g.gamma, "theta": g.theta, "vega": g.vega}
        body["implied_volatility"] = g.mid_iv
    body["last_quote"] = {
        "ask": q.ask,
        "ask_size": q.asksize,
        "bid": q.bid,
        "bid_size": q.bidsize,
        "midpoint": q.midpoint,
        "last_updated": ns(q.quote_time),
        "timeframe": "REAL-TIME",
    }
    if q.trade_time is not None:
        body["last_trade"] = {
            "price": q.last,
            "size": q.last_volume,
            "exchange": 300 + _OPRA_EXCHANGES.find(q.exch),
            "conditions": [209],
            "sip_timestamp": ns(q.trade_time),
            "timeframe": "REAL-TIME",
        }
    body["open_interest"] = q.open_interest
    index = q.underlying in INDICES
    body["underlying_asset"] = {
        "ticker": INDEX_PREFIX + q.underlying if index else q.underlying,
        "value" if index else "price": q.underlying_price,
        "change_to_break_even": round(break_even - q.underlying_price, 4),
        "last_updated": ns(q.quote_time),
        "timeframe": "REAL-TIME",
    }
    return body


def _day(q: OptionQuote) -> dict[str, Any]:
    if not q.volume or q.last is None or q.high is None or q.low is None or q.trade_time is None:
        return {}
    return {
        "change": q.change,
        "change_percent": q.change_percentage,
        "close": q.last,
        "high": q.high,
        "low": q.low,
        "open": q.open,
        "previous_close": q.prevclose,
        "volume": q.volume,
        "vwap": round((q.high + q.low + q.last) / 3, 4),
        "last_updated": ns(q.trade_time),
    }
