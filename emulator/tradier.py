"""Tradier's quotes endpoint, and what every Tradier route shares (auth, limits, formats).

Fidelity points: Bearer auth (401 plain text otherwise), XML unless `Accept: application/json`,
GET query or POST form, one quote as a bare object and several as a list, unknown symbols under
`unmatched_symbols` (a string for one, a list for several), epoch-ms dates with 0 for "never",
the four `X-Ratelimit-*` headers and a 429 once the window's allowance is spent (one window per
token, shared by every /v1/markets route), 400 plain text for a missing parameter.
Symbols as public clients report Tradier wants them: class shares as `BRK/B` (`BRK.B` and
`BRK-B` are unmatched), indices bare (`SPX`: `bid`/`ask`/`bidexch`/`askexch` null, `bid_date`
0, volume 0), OCC option symbols in the same batch as stocks (the chain's option fields, greeks
with `greeks=true`; a malformed or unlisted one unmatched; a class share's contract by its OCC
root without the dot, `BRKB261204C00480000`, whose `underlying` is `BRK/B`).
The other routes: `emulator.tradier_markets` (history, timesales, clock) and
`emulator.tradier_options` (expirations, strikes, chains).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from emulator.market import QuoteState
from emulator.options import CONTRACT_SIZE, OptionGreeks, OptionQuote
from emulator.state import STATE, EmulatorState

QUOTES_PATH = "/v1/markets/quotes"


def add_routes(app: web.Application) -> None:
    app.router.add_get(QUOTES_PATH, quotes)
    app.router.add_post(QUOTES_PATH, quotes)


def admit(request: web.Request) -> tuple[EmulatorState, datetime, dict[str, str]]:
    """Check the Bearer token and spend one request of its window: (state, now, rate-limit headers).

    Raises the 401 (plain text) or the 429 Tradier would answer.
    """
    state = request.app[STATE]
    token = _bearer_token(request, state)
    now = state.clock()
    allowance = state.tradier_limiter.take(token, now)
    if not allowance.granted:
        raise web.HTTPTooManyRequests(
            text=json.dumps(
                {"fault": {"faultstring": "Rate limit quota violation", "detail": {"errorcode": "ratelimit"}}}
            ),
            content_type="application/json",
            headers=allowance.headers(),
        )
    return state, now, allowance.headers()


def missing(name: str, headers: dict[str, str]) -> web.Response:
    """The 400 for a missing required parameter."""
    return web.Response(status=400, text=f"Missing required parameter: {name}", headers=headers)


def invalid(name: str, value: str, headers: dict[str, str]) -> web.Response:
    """The 400 for a parameter Tradier would not accept."""
    return web.Response(status=400, text=f"Invalid parameter: {name}={value}", headers=headers)


def flag(request: web.Request, name: str) -> bool:
    """A Tradier boolean query parameter (`true`/`false`, default false)."""
    return request.query.get(name, "").strip().lower() == "true"


def collapse(items: list[Any]) -> Any:
    """Tradier's quirk: one element is sent bare, several as a list."""
    return items[0] if len(items) == 1 else items


async def quotes(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    form = await request.post() if request.method == "POST" else request.query
    raw = str(form.get("symbols", ""))
    symbols = list(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    if not symbols:
        return missing("symbols", headers)
    state.quoted.update(symbols)

    with_greeks = str(form.get("greeks", "")).strip().lower() == "true"
    found: list[dict[str, Any]] = []
    unmatched: list[str] = []
    for symbol in symbols:
        if len(symbol) > _MAX_TICKER:  # an OCC option symbol
            option = state.options_book.contract(symbol, now)
            if option is None:
                unmatched.append(symbol)
            else:
                found.append(wire_option(option, with_greeks=with_greeks))
            continue
        key = market_symbol(symbol)
        quote = None if key is None else state.market.quote(key, now)
        if quote is None:
            unmatched.append(symbol)
        else:
            found.append(_wire_quote(quote, symbol))
    body: dict[str, Any] = {}
    if found:
        body["quote"] = collapse(found)
    if unmatched:
        body["unmatched_symbols"] = {"symbol": collapse(unmatched)}
    return respond(request, {"quotes": body}, headers)


_MAX_TICKER = 10


def market_symbol(symbol: str) -> str | None:
    """The simulated market's key of a symbol in Tradier's form (`BRK/B` -> `BRK.B`), or None for
    a form Tradier does not know (`BRK.B`, `BRK-B`: it writes class shares with a slash); "" for
    an empty one."""
    symbol = symbol.strip().upper()
    if not symbol:
        return ""
    base, slash, share_class = symbol.partition("/")
    if slash:
        return f"{base}.{share_class}" if base.isalpha() and share_class.isalpha() else None
    if "." in symbol or "-" in symbol:
        return None
    return symbol


def _bearer_token(request: web.Request, state: EmulatorState) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme != "Bearer" or not token or (state.options.api_keys and token not in state.options.api_keys):
        raise web.HTTPUnauthorized(text="Invalid Access Token", content_type="plain/text")
    return token


def respond(request: web.Request, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
    """JSON if the client accepts it, else Tradier's default, XML."""
    if "application/json" in request.headers.get("Accept", ""):
        return web.Response(
            text=json.dumps(body), content_type="application/json", charset="UTF-8", headers=headers
        )
    root, content = next(iter(body.items()))
    xml = '<?xml version="1.0" encoding="UTF-8"?>' + _xml(root, content)
    return web.Response(text=xml, content_type="application/xml", charset="UTF-8", headers=headers)


def _xml(tag: str, value: object) -> str:
    if isinstance(value, list):
        return "".join(_xml(tag, item) for item in value)
    if isinstance(value, dict):
        return f"<{tag}>{''.join(_xml(k, v) for k, v in value.items())}</{tag}>"
    if value is None:
        return f"<{tag}/>"
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"<{tag}>{escape(text)}</{tag}>"


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _wire_quote(q: QuoteState, symbol: str) -> dict[str, Any]:
    listing = q.listing
    body = {
        "symbol": symbol,
        "description": listing.description,
        "exch": listing.exch,
        "type": listing.type,
        "last": q.last,
        "change": q.change,
        "volume": q.volume,
        "open": q.open,
        "high": q.high,
        "low": q.low,
        "close": q.close,
        "bid": q.bid,
        "ask": q.ask,
        "change_percentage": q.change_percentage,
        "average_volume": listing.average_volume,
        "last_volume": q.last_volume,
        "trade_date": epoch_ms(q.trade_time),
        "prevclose": q.prevclose,
        "week_52_high": q.week_52_high,
        "week_52_low": q.week_52_low,
        "bidsize": q.bidsize,
        "bidexch": "PQZN"[q.bidsize % 4],
        "bid_date": epoch_ms(q.quote_time),
        "asksize": q.asksize,
        "askexch": "PQZN"[q.asksize % 4],
        "ask_date": epoch_ms(q.quote_time),
        "root_symbols": symbol,
    }
    if listing.type == "index":  # no bid, ask or volume: null bid/ask, 0 dates and volume, as recorded
        body |= {
            "symbol": listing.symbol, "exch": "C", "volume": 0, "bid": None, "ask": None,
            "average_volume": 0, "last_volume": 0, "bidsize": 0, "bidexch": None, "bid_date": 0,
            "asksize": 0, "askexch": None, "ask_date": 0,
            "root_symbols": f"{listing.symbol},{listing.symbol}W",
        }  # fmt: skip
    return body


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
        "underlying": q.underlying.replace(".", "/"),  # Tradier's form: BRK/B
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
