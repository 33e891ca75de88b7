"""Tradier's history, timesales and clock endpoints over the simulated market.

Fidelity points (auth, formats and the shared rate window as in `emulator.tradier`):
- `/v1/markets/history`: `{"history":{"day":[{date, open, high, low, close, volume}]}}`, one bar as a
  bare object, no bar or an unknown symbol `{"history": null}`; weekly and monthly bars aggregate
  the daily ones, are dated by their first session and still sit under `day`. `start` defaults to
  a year before `end`, `end` to today (choices: the reference gives no defaults).
- `/v1/markets/timesales`: `{"series":{"data":[{time, timestamp, price, open, high, low, close,
  volume, vwap}]}}` for 1/5/15-minute bars from 04:00 ET to the end of the post-market (or the
  regular session only with `session_filter=open`); `time` is the bar's start on the ET wall clock
  without an offset, `timestamp` its epoch seconds, `price` its close (unconfirmed); one bar bare,
  none `{"series": null}`. `start`/`end` are `YYYY-MM-DD HH:MM` in ET, by default today's session
  up to now; `interval` defaults to 1min (`tick` is not simulated: 400).
- an index (bare `SPX`) has volume 0 in both; class shares are `BRK/B` (`BRK.B` gives null).
- `/v1/markets/clock`: `{"clock":{date, description, state, timestamp (epoch s), next_change
  ("HH:MM" ET), next_state}}` with the states premarket/open/postmarket/closed of the calendar.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from emulator.bars import Bar, aggregate, minute_bucket, trading_days
from emulator.sessions import phase_at
from emulator.state import EmulatorState
from emulator.tradier import admit, collapse, invalid, market_symbol, missing, respond
from reader.calendar import EXCHANGE_TZ

HISTORY_PATH = "/v1/markets/history"
TIMESALES_PATH = "/v1/markets/timesales"
CLOCK_PATH = "/v1/markets/clock"
_MINUTES = {"1min": 1, "5min": 5, "15min": 15}
_TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def add_routes(app: web.Application) -> None:
    app.router.add_get(HISTORY_PATH, history)
    app.router.add_get(TIMESALES_PATH, timesales)
    app.router.add_get(CLOCK_PATH, clock)


async def history(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    symbol = market_symbol(request.query.get("symbol", ""))
    if symbol == "":
        return missing("symbol", headers)
    interval = request.query.get("interval") or "daily"
    if interval not in ("daily", "weekly", "monthly"):
        return invalid("interval", interval, headers)
    try:
        end = _date(request.query.get("end")) or now.astimezone(EXCHANGE_TZ).date()
        start = _date(request.query.get("start")) or end - timedelta(days=365)
    except ValueError as e:
        return invalid("start/end", str(e), headers)
    bars = [] if symbol is None else state.history.daily_range(symbol, start, end, now)
    index = symbol is not None and _is_index(state, symbol)
    if interval == "weekly":
        bars = aggregate(bars, lambda bar: _local_date(bar).isocalendar()[:2], lambda bar: bar.start)
    elif interval == "monthly":
        bars = aggregate(bars, lambda bar: _local_date(bar).replace(day=1), lambda bar: bar.start)
    days = [
        {
            "date": _local_date(bar).isoformat(),
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": 0 if index else bar.volume,
        }
        for bar in bars
    ]
    return respond(request, {"history": {"day": collapse(days)} if days else None}, headers)


async def timesales(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    symbol = market_symbol(request.query.get("symbol", ""))
    if symbol == "":
        return missing("symbol", headers)
    interval = request.query.get("interval") or "1min"
    session_filter = request.query.get("session_filter") or "all"
    if interval not in _MINUTES:
        return invalid("interval", interval, headers)
    if session_filter not in ("all", "open"):
        return invalid("session_filter", session_filter, headers)
    today = state.market.calendar.latest_trading_day(now)
    try:
        start = _instant(request.query.get("start"), end_of_day=False) or (
            today.open if session_filter == "open" else today.pre_open
        )
        end = _instant(request.query.get("end"), end_of_day=True) or now
    except ValueError as e:
        return invalid("start/end", str(e), headers)
    first, last = start.astimezone(EXCHANGE_TZ).date(), end.astimezone(EXCHANGE_TZ).date()
    bars: list[Bar] = []
    for day in trading_days(state.market, first, last):
        if symbol is None:
            break
        minutes = state.history.intraday(symbol, day, now)
        if session_filter == "open":
            minutes = [bar for bar in minutes if day.open <= bar.start < day.close]
        if _MINUTES[interval] > 1:
            bucket = minute_bucket(_MINUTES[interval])
            minutes = aggregate(minutes, bucket, bucket)
        bars += [bar for bar in minutes if start <= bar.start <= end]
    index = symbol is not None and _is_index(state, symbol)
    data = [_series_point(bar, index=index) for bar in bars]
    return respond(request, {"series": {"data": collapse(data)} if data else None}, headers)


async def clock(request: web.Request) -> web.Response:
    state, now, headers = admit(request)
    phase = phase_at(state.market.calendar, now)
    session = phase.session
    if session is None:
        description = "Market is closed"
    elif phase.state == "premarket":
        description = f"Market is in premarket hours from {_hhmm(session.pre_open)} to {_hhmm(session.open)}"
    elif phase.state == "open":
        description = f"Market is open from {_hhmm(session.open)} to {_hhmm(session.close)}"
    else:
        description = (
            f"Market is in postmarket hours from {_hhmm(session.close)} to {_hhmm(session.post_close)}"
        )
    body = {
        "date": now.astimezone(EXCHANGE_TZ).date().isoformat(),
        "description": description,
        "state": phase.state,
        "timestamp": int(now.timestamp()),
        "next_change": _hhmm(phase.next_change),
        "next_state": phase.next_state,
    }
    return respond(request, {"clock": body}, headers)


def _is_index(state: EmulatorState, symbol: str) -> bool:
    listing = state.market.listing(symbol)
    return listing is not None and listing.type == "index"


def _series_point(bar: Bar, *, index: bool) -> dict[str, Any]:
    return {
        "time": bar.start.astimezone(EXCHANGE_TZ).strftime("%Y-%m-%dT%H:%M:%S"),
        "timestamp": int(bar.start.timestamp()),
        "price": bar.close,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": 0 if index else bar.volume,
        "vwap": bar.vwap,
    }


def _local_date(bar: Bar) -> date:
    return bar.start.astimezone(EXCHANGE_TZ).date()


def _hhmm(at: datetime) -> str:
    return at.astimezone(EXCHANGE_TZ).strftime("%H:%M")


def _date(raw: str | None) -> date | None:
    return date.fromisoformat(raw.strip()) if raw and raw.strip() else None


def _instant(raw: str | None, *, end_of_day: bool) -> datetime | None:
    """`YYYY-MM-DD HH:MM` (or a bare date: its first or last minute) on the ET wall clock."""
    if not raw or not raw.strip():
        return None
    raw = raw.strip()
    for layout in _TIME_FORMATS:
        try:
            return datetime.strptime(raw, layout).replace(tzinfo=EXCHANGE_TZ)
        except ValueError:
            continue
    day = date.fromisoformat(raw)
    local = datetime.combine(day, datetime.max.time() if end_of_day else datetime.min.time())
    return local.replace(tzinfo=EXCHANGE_TZ)
