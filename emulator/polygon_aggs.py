"""Polygon's aggregate bars and technical indicators over the emulator's own bars.

Fidelity points (auth, limits, cursors as in `emulator.polygon`):
- `/v2/aggs/ticker/{t}/range/{multiplier}/{minute|hour|day}/{from}/{to}`: `from`/`to` a date or
  epoch ms, inclusive; bars `{o,h,l,c,v,vw,t,n}` with `t` the start in ms (midnight ET for days),
  from 04:00 ET to the end of the post-market for minutes and hours, the current bar partial;
  the same values as Tradier's history and timesales. `limit` (default 5000, max 50000) caps the
  base bars (1-minute or daily) used; when it cuts, `next_url` = this server's URL with `from`
  (with `sort=desc`: `to`, a choice) rewritten to the next bar's ms and a `cursor`, no key.
  `queryCount`/`resultsCount`/`count`; no bar or an unknown ticker: 200, `resultsCount` 0 and no
  `results` key. Other timespans: 400. An index (`I:SPX`) has bars without `v`, `vw` and `n`,
  daily bars stamped 01:00 New York time, and no `resultsCount` or `adjusted` (as recorded).
- `/v1/indicators/{sma|ema|rsi|macd}/{t}` with `timespan=day` only (else 400): computed by
  `emulator.indicators` over two years of the ticker's daily bars (today's, partial, included);
  `values` newest first by default, `timestamp` = the last bar's `t`, `timestamp[.gte|.gt|.lte|.lt]`
  filters, `limit` (default 10, max 5000), a `next_url` when more values exist, and
  `underlying.url` pointing at this server's aggs. An unknown ticker gives 200 with
  `{"values": []}` (a choice: the reference leaves it open).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web

from emulator import indicators
from emulator.bars import Bar, aggregate, et_midnight, minute_bucket, ms, trading_days
from emulator.polygon import (
    admit,
    bad_request,
    integer,
    is_index,
    market_symbol,
    next_url,
    ok,
    query,
    range_filter,
    request_id,
    wire_bar,
)
from emulator.state import EmulatorState
from reader.calendar import EXCHANGE_TZ

AGGS_PATH = "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{start}/{end}"
INDICATORS_PATH = "/v1/indicators/{name:sma|ema|rsi|macd}/{ticker}"
_HISTORY_DAYS = 730
_DEFAULT_WINDOWS = {"sma": 50, "ema": 50, "rsi": 14}


def add_routes(app: web.Application) -> None:
    app.router.add_get(AGGS_PATH, aggs)
    app.router.add_get(INDICATORS_PATH, indicator)


async def aggs(request: web.Request) -> web.Response:
    state, now = admit(request)
    params = query(request)
    info = request.match_info
    ticker, timespan = info["ticker"], info["timespan"]
    try:
        multiplier = int(info["multiplier"])
    except ValueError as e:
        raise bad_request(f"multiplier must be an integer, got {info['multiplier']!r}") from e
    if multiplier < 1 or timespan not in ("minute", "hour", "day"):
        raise bad_request(f"timespan {timespan!r} x {multiplier} is not simulated (minute, hour or day)")
    first_ms, last_ms = _ms(info["start"], end_of_day=False), _ms(info["end"], end_of_day=True)
    descending = params.get("sort", "asc") == "desc"
    limit = integer(params, "limit", 5000, 1, 50_000)
    key = market_symbol(ticker)
    index = is_index(ticker)
    bars = [] if key is None else _bars(state, key, multiplier, timespan, first_ms, last_ms, now)
    if index and timespan == "day":
        bars = [dataclasses.replace(bar, start=bar.start + timedelta(hours=1)) for bar in bars]
    if descending:
        bars.reverse()
    page: list[Bar] = []
    used = 0
    for bar in bars:
        if page and used + bar.base > limit:
            break
        page.append(bar)
        used += bar.base
    body: dict[str, Any] = {
        "ticker": ticker,
        "queryCount": used,
        "resultsCount": len(page),
        "adjusted": params.get("adjusted", "true").lower() != "false",
        "status": "OK",
        "request_id": request_id(),
    }
    if index:
        del body["resultsCount"], body["adjusted"]
    if page:
        body["results"] = [_index_bar(bar) if index else wire_bar(bar) for bar in page]
        body["count"] = len(page)
    if len(page) < len(bars):
        resume = str(ms(bars[len(page)].start))
        first, last = (info["start"], resume) if descending else (resume, info["end"])
        path = f"/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{first}/{last}"
        body["next_url"] = next_url(request, path, {k: v for k, v in params.items() if k != "cursor"})
    return web.json_response(body)


def _index_bar(bar: Bar) -> dict[str, Any]:
    return {k: v for k, v in wire_bar(bar).items() if k not in ("v", "vw", "n")}


def _bars(
    state: EmulatorState,
    ticker: str,
    multiplier: int,
    timespan: str,
    first_ms: int,
    last_ms: int,
    now: datetime,
) -> list[Bar]:
    """The bars, oldest first, whose start lies in [first_ms, last_ms]."""
    first = datetime.fromtimestamp(first_ms / 1000, UTC).astimezone(EXCHANGE_TZ).date()
    last = datetime.fromtimestamp(last_ms / 1000, UTC).astimezone(EXCHANGE_TZ).date()
    if timespan == "day":
        daily = [
            dataclasses.replace(bar, start=et_midnight(bar.start.astimezone(EXCHANGE_TZ).date()))
            for bar in state.history.daily_range(ticker, first, last, now)
        ]
        daily = [bar for bar in daily if first_ms <= ms(bar.start) <= last_ms]
        chunks = (daily[i : i + multiplier] for i in range(0, len(daily), multiplier))
        return [aggregate(chunk, lambda _: 0, lambda bar: bar.start)[0] for chunk in chunks]
    bucket = minute_bucket(multiplier * (60 if timespan == "hour" else 1))
    bars: list[Bar] = []
    for day in trading_days(state.market, first, last):
        merged = aggregate(state.history.intraday(ticker, day, now), bucket, bucket)
        bars += [bar for bar in merged if first_ms <= ms(bar.start) <= last_ms]
    return bars


async def indicator(request: web.Request) -> web.Response:
    state, now = admit(request)
    params = query(request)
    name, ticker = request.match_info["name"], request.match_info["ticker"]
    if params.get("timespan", "day") != "day":
        raise bad_request("only timespan=day is simulated")
    series_type = params.get("series_type", "close")
    if series_type not in ("open", "high", "low", "close"):
        raise bad_request(f"series_type must be open, high, low or close, got {series_type!r}")
    limit = integer(params, "limit", 10, 1, 5000)
    descending = params.get("order", "desc") != "asc"
    key = market_symbol(ticker)
    listing = None if key is None else state.market.listing(key)
    if key is None or listing is None or not listing.has_bars:
        return ok(results={"values": []})
    stamps, series = _series(state, key, series_type, now)
    kept = range_filter(params, "timestamp", lambda raw: _ms(raw, end_of_day=False))
    values = [value for value in _compute(name, series, params, stamps) if kept(value["timestamp"])]
    if descending:
        values.reverse()
    today = now.astimezone(EXCHANGE_TZ).date().isoformat()
    underlying = str(
        request.url.origin()
        .with_path(f"/v2/aggs/ticker/{ticker}/range/1/day/2003-01-01/{today}")
        .with_query({"limit": "50000", "sort": "desc"})
    )
    page = values[:limit]
    body: dict[str, Any] = {"results": {"values": page, "underlying": {"url": underlying}}}
    if len(values) > limit:
        bound = "timestamp.lt" if descending else "timestamp.gt"
        resume = {k: v for k, v in params.items() if k != "cursor"} | {bound: str(page[-1]["timestamp"])}
        body["next_url"] = next_url(request, request.path, resume)
    return ok(**body)


def _series(
    state: EmulatorState, ticker: str, series_type: str, now: datetime
) -> tuple[list[int], list[float]]:
    """(bar `t` in ms, value) of the daily bars of the last two years, oldest first."""
    first = now.astimezone(EXCHANGE_TZ).date() - timedelta(days=_HISTORY_DAYS)
    series = state.history.series(ticker, series_type, first, now)
    return [ms(et_midnight(day)) for day, _ in series], [value for _, value in series]


def _compute(
    name: str, series: list[float], params: dict[str, str], stamps: list[int]
) -> list[dict[str, Any]]:
    if name == "macd":
        short = integer(params, "short_window", 12, 1, 5000)
        long = integer(params, "long_window", 26, 1, 5000)
        signal = integer(params, "signal_window", 9, 1, 5000)
        return [
            {"timestamp": t, "value": v[0], "signal": v[1], "histogram": v[2]}
            for t, v in zip(stamps, indicators.macd(series, short, long, signal), strict=True)
            if v is not None
        ]
    window = integer(params, "window", _DEFAULT_WINDOWS[name], 1, 5000)
    compute: Callable[[list[float], int], list[float | None]] = getattr(indicators, name)
    return [
        {"timestamp": t, "value": v}
        for t, v in zip(stamps, compute(series, window), strict=True)
        if v is not None
    ]


def _ms(raw: str, *, end_of_day: bool) -> int:
    """A date (its first or last millisecond, ET) or epoch milliseconds."""
    if raw.isdigit() and len(raw) > 8:
        return int(raw)
    try:
        day = date.fromisoformat(raw)
    except ValueError as e:
        raise bad_request(f"{raw!r} is neither a date (YYYY-MM-DD) nor epoch milliseconds") from e
    return ms(et_midnight(day + timedelta(days=1))) - 1 if end_of_day else ms(et_midnight(day))
