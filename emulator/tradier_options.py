"""Tradier's option endpoints: expirations, strikes and chains, over `emulator.options`.

Fidelity points (auth, formats and the shared rate window as in `emulator.tradier`):
- `/v1/markets/options/expirations`: without flags `{"expirations":{"date":[...]}}` (a bare string
  for one date); with any of `strikes`/`contractSize`/`expirationType`
  `{"expirations":{"expiration":[{date, contract_size, expiration_type, strikes?}]}}` where
  `strikes` (only with `strikes=true`) is `{"strike":[...]}`; single elements collapse to bare
  values. An unknown or unlisted symbol gives `{"expirations": null}`. `includeAllRoots=true` adds
  the dates of an index's weekly root (SPXW) to its own root's monthly dates; a stock has one root.
- `/v1/markets/options/strikes`: `{"strikes":{"strike":[...]}}` or `{"strikes": null}`.
- `/v1/markets/options/chains`: `{"options":{"option":[...]}}`, calls and puts interleaved by strike,
  every field of an option quote (A.2); `greeks` only with `greeks=true`, `null` for a few
  contracts; IVs 0.0 where the price gives none (e.g. a zero bid); `last`/`change`/`open`/... null
  and `trade_date` 0 for a contract that never traded; `week_52_*` 0.0, `average_volume` 0. An
  expiration not listed, or an unknown symbol: `{"options": null}`; a missing parameter: 400.
  An index's chain holds every root of the date (SPX and SPXW on a monthly date); a class share's
  (`symbol=BRK/B`) has the OCC root without the dot (`BRKB261204C00480000`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from emulator.market import INDICES
from emulator.options import CONTRACT_SIZE
from emulator.tradier import admit, collapse, flag, market_symbol, missing, respond, wire_option

EXPIRATIONS_PATH = "/v1/markets/options/expirations"
STRIKES_PATH = "/v1/markets/options/strikes"
CHAINS_PATH = "/v1/markets/options/chains"


def add_routes(app: web.Application) -> None:
    app.router.add_get(EXPIRATIONS_PATH, expirations)
    app.router.add_get(STRIKES_PATH, strikes)
    app.router.add_get(CHAINS_PATH, chains)


async def expirations(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    symbol = market_symbol(request.query.get("symbol", ""))
    if symbol == "":
        return missing("symbol", headers)
    listed = [] if symbol is None else state.options_book.expirations(symbol, now)
    if symbol in INDICES and not flag(request, "includeAllRoots"):
        listed = [e for e in listed if e.type == "standard"]  # the index's own root's dates
    if not listed:
        return respond(request, {"expirations": None}, headers)
    with_strikes = flag(request, "strikes")
    if not (with_strikes or flag(request, "contractSize") or flag(request, "expirationType")):
        return respond(
            request, {"expirations": {"date": collapse([e.date.isoformat() for e in listed])}}, headers
        )
    grid = state.options_book.strikes(symbol or "", now)
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
    symbol = market_symbol(request.query.get("symbol", ""))
    if symbol == "":
        return missing("symbol", headers)
    if not request.query.get("expiration"):
        return missing("expiration", headers)
    listed = {e.date.isoformat() for e in state.options_book.expirations(symbol or "", now)}
    if symbol is None or request.query["expiration"].strip() not in listed:
        return respond(request, {"strikes": None}, headers)
    return respond(
        request, {"strikes": {"strike": collapse(state.options_book.strikes(symbol, now))}}, headers
    )


async def chains(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    symbol = market_symbol(request.query.get("symbol", ""))
    if symbol == "":
        return missing("symbol", headers)
    raw = request.query.get("expiration", "").strip()
    if not raw:
        return missing("expiration", headers)
    try:
        expiration = date.fromisoformat(raw)
    except ValueError:
        return respond(request, {"options": None}, headers)
    chain = None if symbol is None else state.options_book.chain(symbol, expiration, now)
    if not chain:
        return respond(request, {"options": None}, headers)
    with_greeks = flag(request, "greeks")
    options = [wire_option(quote, with_greeks=with_greeks) for quote in chain]
    return respond(request, {"options": {"option": collapse(options)}}, headers)
