"""Polygon (Massive): what every route shares, the stock snapshots and the market status.

Fidelity points:
- auth by the `apiKey` query parameter or `Authorization: Bearer`; none: 401 `{"status":"ERROR",
  "request_id", "error":"API Key was not provided"}`; a key outside `--api-key` (when set): 401
  "Unknown API Key"; `polygon_rate_per_min` > 0: a fixed 60 s window per key, then 429 with the
  exact "You've exceeded the maximum requests per minute..." body; plan "basic": the snapshot
  endpoints answer 403 `{"status":"NOT_AUTHORIZED", "message":...}`. JSON only; `request_id` is
  random hex; `next_url`s point at this server, carry a base64 `cursor` and never the key.
- `/v2/snapshot/locale/us/markets/stocks/tickers?tickers=`: `{"status":"OK","count","tickers":[...]}`,
  unknown tickers simply absent (no `tickers`: the well-known names); `.../tickers/{t}`:
  `{"status","request_id","ticker":{...}}`, unknown: 404 NOT_FOUND "Ticker not found.". A ticker
  holds the Tradier quote of the same instant: `lastTrade.p` = last, `lastQuote` P/S = ask, p/s =
  bid, `prevDay` = the previous daily bar (`c` = prevclose), `day` o/h/l/v = the session's, `c` =
  last (all 0 before the open), `min` = the current 1-minute bar (`av` = the day's volume);
  `updated` and `t` of quotes and trades in ns, bar `t` in ms; `todaysChangePerc` in percent.
- tickers: class shares `BRK.B` (`BRK/B` unknown), indices `I:SPX` (bare `SPX` is no stock:
  unknown), options `O:AAPL261204C00150000`; the stocks snapshot lists no index.
- `/v3/snapshot/indices?ticker.any_of=I:SPX,...`: `{"status":"OK","request_id","results":[{ticker,
  name, type "indices", market_status, value, session {change, change_percent, open, high, low,
  close, previous_close}, last_updated (ns), timeframe}]}`; an unknown ticker comes inline as
  `{"ticker", "error": "NOT_FOUND", "message": "Ticker not found."}` (as the universal snapshot
  does; unconfirmed here).
- `/v1/marketstatus/now` (`market` open / extended-hours / closed, `earlyHours`, `afterHours`,
  `serverTime` RFC 3339 with the ET offset) and `/v1/marketstatus/upcoming` (a bare array of the
  closures and early closes of NYSE and NASDAQ in the next 90 days; `open`/`close` in UTC for an
  early close).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from emulator.bars import Bar, ms, ns
from emulator.market import INDICES, WELL_KNOWN, hash64
from emulator.sessions import phase_at, upcoming_closures
from emulator.state import STATE, EmulatorState
from reader.calendar import EXCHANGE_TZ

STOCKS_SNAPSHOT_PATH = "/v2/snapshot/locale/us/markets/stocks/tickers"
INDICES_SNAPSHOT_PATH = "/v3/snapshot/indices"
MARKET_NOW_PATH = "/v1/marketstatus/now"
MARKET_UPCOMING_PATH = "/v1/marketstatus/upcoming"
RATE_LIMITED = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to "
    "continue. https://polygon.io/pricing"
)
NOT_ENTITLED = "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"
_EXCHANGE_IDS = {"Q": 12, "N": 10, "P": 11, "Z": 19}
_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    429: web.HTTPTooManyRequests,
}


def add_routes(app: web.Application) -> None:
    app.router.add_get(STOCKS_SNAPSHOT_PATH, stocks_snapshot)
    app.router.add_get(STOCKS_SNAPSHOT_PATH + "/{ticker}", ticker_snapshot)
    app.router.add_get(INDICES_SNAPSHOT_PATH, indices_snapshot)
    app.router.add_get(MARKET_NOW_PATH, market_now)
    app.router.add_get(MARKET_UPCOMING_PATH, market_upcoming)


INDEX_PREFIX = "I:"


def market_symbol(ticker: str) -> str | None:
    """The simulated market's key of a Polygon ticker (`I:SPX` -> `SPX`), None for one Polygon
    does not list (a bare index name, `BRK/B`, an `I:` name that is no index)."""
    if ticker.startswith(INDEX_PREFIX):
        name = ticker.removeprefix(INDEX_PREFIX)
        return name if name in INDICES else None
    if ticker in INDICES or "/" in ticker:
        return None
    return ticker


def is_index(ticker: str) -> bool:
    """True for an index ticker Polygon lists (`I:SPX`)."""
    return ticker.startswith(INDEX_PREFIX) and market_symbol(ticker) is not None


def request_id() -> str:
    return uuid.uuid4().hex


def ok(**body: Any) -> web.Response:
    """A 200 `{"status": "OK", "request_id": ..., **body}`."""
    return web.json_response({"status": "OK", "request_id": request_id(), **body})


def fail(status: int, kind: str, **body: str) -> web.HTTPException:
    """An error to raise: `{"status": kind, "request_id": ..., **body}` with HTTP `status`."""
    text = json.dumps({"status": kind, "request_id": request_id(), **body})
    return _ERRORS[status](text=text, content_type="application/json")


def bad_request(message: str) -> web.HTTPException:
    return fail(400, "ERROR", error=message)


def admit(request: web.Request, *, snapshot: bool = False) -> tuple[EmulatorState, datetime]:
    """Check the key, spend one request of its window and check the plan: (state, now)."""
    state = request.app[STATE]
    key = request.query.get("apiKey", "").strip()
    if not key:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise fail(401, "ERROR", error="API Key was not provided")
    if state.options.api_keys and key not in state.options.api_keys:
        raise fail(401, "ERROR", error="Unknown API Key")
    now = state.clock()
    if state.options.polygon_rate_per_min > 0 and not state.polygon_limiter.take(key, now).granted:
        raise fail(429, "ERROR", error=RATE_LIMITED)
    if snapshot and state.options.polygon_plan == "basic":
        raise fail(403, "NOT_AUTHORIZED", message=NOT_ENTITLED)
    return state, now


def query(request: web.Request) -> dict[str, str]:
    """The request's parameters without the key; a `cursor` is replaced by the query it encodes."""
    params = {k: v for k, v in request.query.items() if k != "apiKey"}
    cursor = params.pop("cursor", None)
    if cursor:
        try:
            decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except ValueError as e:
            raise bad_request(f"invalid cursor: {cursor}") from e
        params.update(parse_qsl(decoded))
    return params


def next_url(request: web.Request, path: str, params: dict[str, str]) -> str:
    """An absolute URL on this server for `path` whose only parameter is a cursor encoding `params`."""
    cursor = base64.urlsafe_b64encode(urlencode(params).encode()).decode().rstrip("=")
    return str(request.url.origin().with_path(path).with_query({"cursor": cursor}))


def integer(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer parameter, clamped to [low, high]; 400 if it is not an integer."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return min(max(int(raw), low), high)
    except ValueError as e:
        raise bad_request(f"{name} must be an integer, got {raw!r}") from e


def wire_bar(bar: Bar) -> dict[str, Any]:
    """A bar as aggregates and snapshots send it: o h l c v vw, `t` (start, ms) and `n`."""
    return {
        "o": bar.open,
        "h": bar.high,
        "l": bar.low,
        "c": bar.close,
        "v": bar.volume,
        "vw": bar.vwap,
        "t": ms(bar.start),
        "n": bar.trades,
    }


async def stocks_snapshot(request: web.Request) -> web.Response:
    state, now = admit(request, snapshot=True)
    raw = request.query.get("tickers", "")
    tickers = [t.strip() for t in raw.split(",") if t.strip()] if raw.strip() else list(WELL_KNOWN)
    found = [snapshot for t in dict.fromkeys(tickers) if (snapshot := _ticker(state, t, now)) is not None]
    return web.json_response({"status": "OK", "count": len(found), "tickers": found})


async def ticker_snapshot(request: web.Request) -> web.Response:
    state, now = admit(request, snapshot=True)
    snapshot = _ticker(state, request.match_info["ticker"], now)
    if snapshot is None:
        raise fail(404, "NOT_FOUND", message="Ticker not found.")
    return ok(ticker=snapshot)


async def indices_snapshot(request: web.Request) -> web.Response:
    state, now = admit(request, snapshot=True)
    raw = request.query.get("ticker.any_of") or request.query.get("ticker", "")
    tickers = [t.strip() for t in raw.split(",") if t.strip()]
    if not tickers:
        tickers = [INDEX_PREFIX + name for name in sorted(INDICES)]
    return ok(results=[_index(state, ticker, now) for ticker in dict.fromkeys(tickers)])


def _index(state: EmulatorState, ticker: str, now: datetime) -> dict[str, Any]:
    key = market_symbol(ticker) if is_index(ticker) else None
    q = None if key is None else state.market.quote(key, now)
    if q is None:
        return {"ticker": ticker, "error": "NOT_FOUND", "message": "Ticker not found."}
    session: dict[str, float | None] = {
        "change": q.change,
        "change_percent": q.change_percentage,
        "close": q.last,
    }
    session |= {"open": q.open, "high": q.high, "low": q.low} if q.open is not None else {}
    phase = phase_at(state.market.calendar, now).polygon_market
    return {
        "ticker": ticker,
        "name": q.listing.description,
        "type": "indices",
        "market_status": "open" if phase == "open" else "closed",
        "value": q.last,
        "session": {**session, "previous_close": q.prevclose},
        "last_updated": ns(q.trade_time),
        "timeframe": "REAL-TIME",
    }


def _ticker(state: EmulatorState, ticker: str, now: datetime) -> dict[str, Any] | None:
    market, history = state.market, state.history
    if is_index(ticker):  # indices are not in the stocks snapshot
        return None
    key = market_symbol(ticker)
    q = None if key is None else market.quote(key, now)
    if q is None or key is None:
        return None
    ticker = key
    session = market.calendar.latest_trading_day(now)
    today = history.daily(ticker, session, q.trade_time)
    previous = history.daily(ticker, market.calendar.previous_trading_day(session), now)
    minute = history.minute(ticker, session, q.trade_time)
    day = {"o": 0.0, "h": 0.0, "l": 0.0, "c": 0.0, "v": 0, "vw": 0.0}
    # A new listing has no bars yet: Polygon zeroes what it has not got, as in `day` before the open.
    previous_bar = (
        day if previous is None else {k: v for k, v in wire_bar(previous).items() if k not in ("t", "n")}
    )
    minute_bar = {**day, "t": 0, "n": 0} if minute is None else wire_bar(minute)
    if today is not None:
        day = {"o": today.open, "h": today.high, "l": today.low, "c": q.last, "v": q.volume, "vw": today.vwap}
    regular = session.open <= q.trade_time < session.close
    return {
        "ticker": ticker,
        "todaysChange": q.change,
        "todaysChangePerc": round((q.last - q.prevclose) / q.prevclose * 100, 4),
        "updated": ns(q.trade_time),
        "day": day,
        "prevDay": previous_bar,
        "min": {"av": q.volume, **minute_bar},
        "lastQuote": {"P": q.ask, "S": q.asksize, "p": q.bid, "s": q.bidsize, "t": ns(q.quote_time)},
        "lastTrade": {
            "c": None if regular else [12],
            "i": str(hash64(market.seed, ticker, ns(q.trade_time)) % 10**14),
            "p": q.last,
            "s": q.last_volume,
            "t": ns(q.trade_time),
            "x": _EXCHANGE_IDS.get(q.listing.exch, 4),
        },
    }


async def market_now(request: web.Request) -> web.Response:
    state, now = admit(request)
    phase = phase_at(state.market.calendar, now)
    market = phase.polygon_market
    return web.json_response(
        {
            "market": market,
            "earlyHours": phase.state == "premarket",
            "afterHours": phase.state == "postmarket",
            "serverTime": now.astimezone(EXCHANGE_TZ).isoformat(timespec="seconds"),
            "exchanges": {"nyse": market, "nasdaq": market, "otc": market},
            "currencies": {"fx": "open", "crypto": "open"},
        }
    )


async def market_upcoming(request: web.Request) -> web.Response:
    state, now = admit(request)
    entries: list[dict[str, Any]] = []
    for closure in upcoming_closures(state.market.calendar, now.astimezone(EXCHANGE_TZ).date()):
        for exchange in ("NYSE", "NASDAQ"):
            entry: dict[str, Any] = {
                "exchange": exchange,
                "name": closure.name,
                "date": closure.date.isoformat(),
            }
            if closure.session is None:
                entry["status"] = "closed"
            else:
                entry["status"] = "early-close"
                entry["open"] = closure.session.open.strftime("%Y-%m-%dT%H:%M:%S.000Z")
                entry["close"] = closure.session.close.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            entries.append(entry)
    return web.json_response(entries)


_RANGE_SUFFIXES: dict[str, Callable[[Any, Any], bool]] = {
    "": lambda a, b: a == b,
    ".gte": lambda a, b: a >= b,
    ".gt": lambda a, b: a > b,
    ".lte": lambda a, b: a <= b,
    ".lt": lambda a, b: a < b,
}


def range_filter(params: dict[str, str], name: str, parse: Callable[[str], Any]) -> Callable[[Any], bool]:
    """A test of `name`'s value against Polygon's `name`, `name.gte/.gt/.lte/.lt` query parameters,
    each read once with `parse`."""
    bounds = []
    for suffix, compare in _RANGE_SUFFIXES.items():
        raw = params.get(name + suffix)
        if raw is not None:
            try:
                bounds.append((compare, parse(raw)))
            except ValueError as e:
                raise bad_request(f"{name}{suffix}: cannot read {raw!r}") from e
    return lambda value: all(compare(value, bound) for compare, bound in bounds)
