"""Tradier's quotes endpoint, and what every Tradier route shares (auth, limits, formats).

Fidelity points: Bearer auth (401 plain text otherwise), XML unless `Accept: application/json`,
GET query or POST form, one quote as a bare object and several as a list, unknown symbols under
`unmatched_symbols` (a string for one, a list for several), epoch-ms dates with 0 for "never",
the four `X-Ratelimit-*` headers and a 429 once the window's allowance is spent (one window per
token, shared by every /v1/markets route), 400 plain text for a missing parameter.
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
        body["quote"] = collapse(found)
    if unmatched:
        body["unmatched_symbols"] = {"symbol": collapse(unmatched)}
    return respond(request, {"quotes": body}, headers)


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
        "root_symbols": listing.symbol,
    }
