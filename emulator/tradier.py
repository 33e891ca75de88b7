"""Tradier's market-data endpoints as the reference describes them (quotes so far).

Fidelity points: Bearer auth (401 plain text otherwise), XML unless `Accept: application/json`,
GET query or POST form, one quote as a bare object and several as a list, unknown symbols under
`unmatched_symbols` (a string for one, a list for several), epoch-ms dates with 0 for "never",
the four `X-Ratelimit-*` headers and a 429 once the window's allowance is spent.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from emulator.market import QuoteState
from emulator.state import STATE, EmulatorState

QUOTES_PATH = "/v1/markets/quotes"


def add_routes(app: web.Application) -> None:
    app.router.add_get(QUOTES_PATH, quotes)
    app.router.add_post(QUOTES_PATH, quotes)


async def quotes(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = _bearer_token(request, state)
    now = state.clock()
    allowance = state.tradier_limiter.take(token, now)
    if not allowance.granted:
        return web.json_response(
            {"fault": {"faultstring": "Rate limit quota violation", "detail": {"errorcode": "ratelimit"}}},
            status=429,
            headers=allowance.headers(),
        )
    form = await request.post() if request.method == "POST" else request.query
    raw = str(form.get("symbols", ""))
    symbols = list(dict.fromkeys(s.strip().upper() for s in raw.split(",") if s.strip()))
    if not symbols:
        return web.Response(
            status=400, text="Missing required parameter: symbols", headers=allowance.headers()
        )

    found: list[dict[str, Any]] = []
    unmatched: list[str] = []
    for symbol in symbols:
        quote = state.market.quote(symbol, now)
        if quote is None:
            unmatched.append(symbol)
        else:
            found.append(_wire_quote(quote))
    body: dict[str, Any] = {}
    if found:
        body["quote"] = found[0] if len(found) == 1 else found
    if unmatched:
        body["unmatched_symbols"] = {"symbol": unmatched[0] if len(unmatched) == 1 else unmatched}
    return _respond(request, {"quotes": body}, allowance.headers())


def _bearer_token(request: web.Request, state: EmulatorState) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme != "Bearer" or not token or (state.options.api_keys and token not in state.options.api_keys):
        raise web.HTTPUnauthorized(text="Invalid Access Token", content_type="plain/text")
    return token


def _respond(request: web.Request, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
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


def _epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _wire_quote(q: QuoteState) -> dict[str, Any]:
    listing = q.listing
    return {
        "symbol": listing.symbol,
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
        "trade_date": _epoch_ms(q.trade_time),
        "prevclose": q.prevclose,
        "week_52_high": q.week_52_high,
        "week_52_low": q.week_52_low,
        "bidsize": q.bidsize,
        "bidexch": "PQZN"[q.bidsize % 4],
        "bid_date": _epoch_ms(q.quote_time),
        "asksize": q.asksize,
        "askexch": "PQZN"[q.asksize % 4],
        "ask_date": _epoch_ms(q.quote_time),
        "root_symbols": listing.symbol,
    }
