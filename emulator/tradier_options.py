"""Tradier's option endpoints: expirations, strikes and chains, over `emulator.options`.

Fidelity points (auth, formats and the shared rate window as in `emulator.tradier`):
- `/v1/markets/options/expirations`: without flags `{"expirations":{"date":[...]}}` (a bare string
  for one date); with any of `strikes`/`contractSize`/`expirationType`
  `{"expirations":{"expiration":[{date, contract_size, expiration_type, strikes?}]}}` where
  `strikes` (only with `strikes=true`) is `{"strike":[...]}`; single elements collapse to bare
  values. An unknown or unlisted symbol gives `{"expirations": null}`. `includeAllRoots` changes
  nothing: every simulated underlying has one root.
- `/v1/markets/options/strikes`: `{"strikes":{"strike":[...]}}` or `{"strikes": null}`.
- `/v1/markets/options/chains`: `{"options":{"option":[...]}}`, calls and puts interleaved by strike,
  every field of an option quote (A.2); `greeks` only with `greeks=true`, `null` for a few
  contracts; IVs 0.0 where the price gives none (e.g. a zero bid); `last`/`change`/`open`/... null
  and `trade_date` 0 for a contract that never traded; `week_52_*` 0.0, `average_volume` 0. An
  expiration not listed, or an unknown symbol: `{"options": null}`; a missing parameter: 400.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from emulator.options import CONTRACT_SIZE, OptionGreeks, OptionQuote
from emulator.tradier import admit, collapse, epoch_ms, flag, missing, respond

EXPIRATIONS_PATH = "/v1/markets/options/expirations"
STRIKES_PATH = "/v1/markets/options/strikes"
CHAINS_PATH = "/v1/markets/options/chains"


def add_routes(app: web.Application) -> None:
    app.router.add_get(EXPIRATIONS_PATH, expirations)
    app.router.add_get(STRIKES_PATH, strikes)
    app.router.add_get(CHAINS_PATH, chains)


async def expirations(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    symbol = request.query.get("symbol", "").strip().upper()
    if not symbol:
        return missing("symbol", headers)
    listed = state.options_book.expirations(symbol, now)
    if not listed:
        return respond(request, {"expirations": None}, headers)
    with_strikes = flag(request, "strikes")
    if not (with_strikes or flag(request, "contractSize") or flag(request, "expirationType")):
        return respond(
            request, {"expirations": {"date": collapse([e.date.isoformat() for e in listed])}}, headers
        )
    grid = state.options_book.strikes(symbol, now)
    entries = []
    for expiration in listed:
        entry: dict[str, Any] = {
            "date": expiration.date.isoformat(),
            "contract_size": CONTRACT_SIZE,
            "expiration_type": expiration.type,
        }
        if with_strikes:
            entry["strikes"] = {"strike": collapse(grid)}
        entries.append(entry)
    return respond(request, {"expirations": {"expiration": collapse(entries)}}, headers)


async def strikes(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    symbol = request.query.get("symbol", "").strip().upper()
    if not symbol:
        return missing("symbol", headers)
    if not request.query.get("expiration"):
        return missing("expiration", headers)
    listed = {e.date.isoformat() for e in state.options_book.expirations(symbol, now)}
    if request.query["expiration"].strip() not in listed:
        return respond(request, {"strikes": None}, headers)
    return respond(
        request, {"strikes": {"strike": collapse(state.options_book.strikes(symbol, now))}}, headers
    )


async def chains(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    symbol = request.query.get("symbol", "").strip().upper()
    if not symbol:
        return missing("symbol", headers)
    raw = request.query.get("expiration", "").strip()
    if not raw:
        return missing("expiration", headers)
    try:
        expiration = date.fromisoformat(raw)
    except ValueError:
        return respond(request, {"options": None}, headers)
    chain = state.options_book.chain(symbol, expiration, now)
    if not chain:
        return respond(request, {"options": None}, headers)
    with_greeks = flag(request, "greeks")
    options = [wire_option(quote, with_greeks=with_greeks) for quote in chain]
    return respond(request, {"options": {"option": collapse(options)}}, headers)


def wire_option(q: OptionQuote, *, with_greeks: bool) -> dict[str, Any]:
    """One option quote as Tradier sends it in a chain (and in quotes, for OCC symbols)."""
    body: dict[str, Any] = {
        "symbol": q.symbol,
        "description": q.description,
        "exch": q.exch,
        "type": "option",
        "last": q.last,
        "change": q.change,
        "volume": q.volume,
        "open": q.open,
        "high": q.high,
        "low": q.low,
        "close": q.close,
        "bid": q.bid,
        "ask": q.ask,
        "underlying": q.root,
        "strike": q.strike,
    }
    if with_greeks:
        body["greeks"] = None if q.greeks is None else _wire_greeks(q.greeks)
    body.update(
        {
            "change_percentage": q.change_percentage,
            "average_volume": 0,
            "last_volume": q.last_volume,
            "trade_date": 0 if q.trade_time is None else epoch_ms(q.trade_time),
            "prevclose": q.prevclose,
            "week_52_high": 0.0,
            "week_52_low": 0.0,
            "bidsize": q.bidsize,
            "bidexch": q.bidexch,
            "bid_date": epoch_ms(q.quote_time),
            "asksize": q.asksize,
            "askexch": q.askexch,
            "ask_date": epoch_ms(q.quote_time),
            "open_interest": q.open_interest,
            "contract_size": CONTRACT_SIZE,
            "expiration_date": q.expiration.date.isoformat(),
            "expiration_type": q.expiration.type,
            "option_type": q.option_type,
            "root_symbol": q.root,
        }
    )
    return body


def _wire_greeks(g: OptionGreeks) -> dict[str, Any]:
    return {
        "delta": g.delta,
        "gamma": g.gamma,
        "theta": g.theta,
        "vega": g.vega,
        "rho": g.rho,
        "phi": g.phi,
        "bid_iv": g.bid_iv,
        "mid_iv": g.mid_iv,
        "ask_iv": g.ask_iv,
        "smv_vol": g.smv_vol,
        "updated_at": g.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
    }
