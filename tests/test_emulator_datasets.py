"""The emulator's history, intraday, options, clock and Polygon routes: shapes, quirks and consistency."""

from __future__ import annotations

import base64
import itertools
import math
import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yarl
from aiohttp import web

import emulator.__main__ as cli
from emulator.bars import History
from emulator.market import Market
from emulator.options import RATE
from emulator.state import STATE, EmulatorOptions
from tests.support import FakeClock, RunningEmulator

ET_TZ = ZoneInfo("America/New_York")
JSON = {"Authorization": "Bearer t0k", "Accept": "application/json"}
KEY = {"apiKey": "poly-key"}
OCC = re.compile(r"^[A-Z]{1,6}\d{6}[CP]\d{8}$")
CHAIN_FIELDS = {
    "symbol", "description", "exch", "type", "last", "change", "volume", "open", "high", "low", "close",
    "bid", "ask", "underlying", "strike", "greeks", "change_percentage", "average_volume", "last_volume",
    "trade_date", "prevclose", "week_52_high", "week_52_low", "bidsize", "bidexch", "bid_date", "asksize",
    "askexch", "ask_date", "open_interest", "contract_size", "expiration_date", "expiration_type",
    "option_type", "root_symbol",
}  # fmt: skip
GREEK_FIELDS = {
    "delta",
    "gamma",
    "theta",
    "vega",
    "rho",
    "phi",
    "bid_iv",
    "mid_iv",
    "ask_iv",
    "smv_vol",
    "updated_at",
}
CHAINS, STRIKES = "/v1/markets/options/chains", "/v1/markets/options/strikes"
EXPIRATIONS, HISTORY, TIMESALES = (
    "/v1/markets/options/expirations",
    "/v1/markets/history",
    "/v1/markets/timesales",
)
EXPIRATION = "2026-12-18"  # the December monthly, 24 days after the fake clock's Tuesday


def et(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """An ET wall-clock instant, in UTC."""
    return datetime(year, month, day, hour, minute, second, tzinfo=ET_TZ).astimezone(UTC)


async def call(
    url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """GET `url`: (status, JSON body or text, response)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params=params, headers=headers) as response,
    ):
        text = await response.text()
        body = await response.json(content_type=None) if response.content_type == "application/json" else text
        return response.status, body, response


async def tradier(emulator: RunningEmulator, path: str, **params: str) -> Any:
    status, body, _ = await call(f"{emulator.url}{path}", params, JSON)
    assert status == 200, body
    return body


async def polygon(emulator: RunningEmulator, path: str, **params: Any) -> Any:
    status, body, _ = await call(f"{emulator.url}{path}", {**KEY, **params})
    assert status == 200, body
    return body


def _without_key(url: str) -> None:
    """`url` carries a cursor and neither the key nor a cursor that hides it."""
    parsed = yarl.URL(url)
    cursor = parsed.query["cursor"]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert "apiKey" not in parsed.query
    assert "apiKey" not in decoded
    assert KEY["apiKey"] not in url + decoded


async def follow(first: dict[str, Any], key: str) -> list[Any]:
    """Every element of `key` over `first` and the pages its `next_url`s lead to (the key re-added)."""
    items, page = list(first[key] if key != "values" else first["results"]["values"]), first
    while "next_url" in page:
        _without_key(page["next_url"])
        status, page, _ = await call(page["next_url"], KEY)
        assert status == 200, page
        items += page.get(key, []) if key != "values" else page["results"]["values"]
    return items


# --- Tradier options --------------------------------------------------------------------------


async def test_expirations_are_weeklies_and_monthlies_moved_off_holidays(emulator: RunningEmulator) -> None:
    """Plain dates by default; Fridays for 8 weeks, third Fridays for a year, holiday Fridays a day early."""
    dates = (await tradier(emulator, EXPIRATIONS, symbol="AAPL"))["expirations"]["date"]
    assert dates[:7] == [
        "2026-11-27",
        "2026-12-04",
        "2026-12-11",
        "2026-12-18",
        "2026-12-24",
        "2026-12-31",
        "2027-01-08",
    ]
    assert dates[-1] == "2027-11-19"
    assert "2027-03-26" not in dates  # Good Friday has no monthly and is past the weeklies anyway
    assert len(dates) == len(set(dates)) == 18
    flagged = await tradier(emulator, EXPIRATIONS, symbol="AAPL", strikes="true")
    entries = flagged["expirations"]["expiration"]
    assert [e["date"] for e in entries] == dates
    assert {e["expiration_type"] for e in entries if e["date"] in ("2026-12-18", "2027-01-15")} == {
        "standard"
    }
    assert entries[0]["expiration_type"] == "weeklys"
    assert all(e["contract_size"] == 100 for e in entries)
    strikes = entries[0]["strikes"]["strike"]
    steps = {round(b - a, 2) for a, b in itertools.pairwise(strikes)}
    assert steps == {2.5}  # AAPL trades between $100 and $250
    assert 60 <= len(strikes) <= 100
    sized = await tradier(emulator, EXPIRATIONS, symbol="AAPL", contractSize="true")
    assert "strikes" not in sized["expirations"]["expiration"][0]
    for symbol in ("NOPE", "ZZTOP"):
        assert await tradier(emulator, EXPIRATIONS, symbol=symbol) == {"expirations": None}


async def test_one_expiration_and_one_strike_collapse_to_bare_values(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single date is a string, a single expiration an object and a single strike a number."""
    book = emulator.state.options_book
    only = book.expirations("AAPL", emulator.state.clock())[3]
    monkeypatch.setattr(book, "expirations", lambda symbol, at: [only])
    monkeypatch.setattr(book, "strikes", lambda symbol, at: [230.0])
    plain = await tradier(emulator, EXPIRATIONS, symbol="AAPL")
    assert plain == {"expirations": {"date": EXPIRATION}}
    flagged = await tradier(emulator, EXPIRATIONS, symbol="AAPL", strikes="true")
    expected = {
        "date": EXPIRATION,
        "contract_size": 100,
        "expiration_type": "standard",
        "strikes": {"strike": 230.0},
    }
    assert flagged == {"expirations": {"expiration": expected}}


async def test_chain_interleaves_calls_and_puts_with_every_field(emulator: RunningEmulator) -> None:
    """Every A.2 field; call/put pairs by strike; OCC symbols; Greeks only on request, null for a few."""
    chain = (await tradier(emulator, CHAINS, symbol="AAPL", expiration=EXPIRATION))["options"]
    plain = chain["option"]
    assert all(set(o) == CHAIN_FIELDS - {"greeks"} for o in plain)
    options = (await tradier(emulator, CHAINS, symbol="AAPL", expiration=EXPIRATION, greeks="true"))[
        "options"
    ]["option"]
    assert all(set(o) == CHAIN_FIELDS for o in options)
    assert [o["option_type"] for o in options[:4]] == ["call", "put", "call", "put"]
    strikes = [o["strike"] for o in options[::2]]
    assert strikes == sorted(strikes) == [o["strike"] for o in options[1::2]]
    first = options[0]
    assert OCC.match(first["symbol"])
    assert first["symbol"] == f"AAPL261218C{round(first['strike'] * 1000):08d}"
    assert first["description"] == f"AAPL Dec 18 2026 ${first['strike']:.2f} Call"
    assert {(o["type"], o["underlying"], o["root_symbol"], o["contract_size"]) for o in options} == {
        ("option", "AAPL", "AAPL", 100)
    }
    assert {(o["average_volume"], o["week_52_high"], o["week_52_low"]) for o in options} == {(0, 0.0, 0.0)}
    assert {o["expiration_type"] for o in options} == {"standard"}
    no_greeks = [o for o in options if o["greeks"] is None]
    assert 0 < len(no_greeks) < len(options) / 10
    with_greeks = [o for o in options if o["greeks"] is not None]
    assert all(set(o["greeks"]) == GREEK_FIELDS for o in with_greeks)
    assert {o["greeks"]["updated_at"] for o in with_greeks} == {
        "2026-11-24 15:00:00"
    }  # 10:00 ET, on the hour
    assert all(o["greeks"]["bid_iv"] == 0.0 for o in with_greeks if o["bid"] == 0)
    assert any(o["bid"] == 0 for o in with_greeks)
    never = [o for o in options if o["trade_date"] == 0]
    assert never, "some contracts never traded"
    assert all(o["last"] is None and o["prevclose"] is None and o["change"] is None for o in never)
    assert all(0 <= o["bid"] < o["ask"] for o in options)
    assert all(o["bid_date"] == int(emulator.state.clock().timestamp() * 1000) for o in options)


async def test_chain_prices_obey_parity_and_greek_signs(emulator: RunningEmulator, clock: FakeClock) -> None:
    """Near the money: mid(call) - mid(put) = S - K e^-rT within ~a cent; deltas in range, gamma > 0."""
    quote = (await tradier(emulator, "/v1/markets/quotes", symbols="AAPL"))["quotes"]["quote"]
    spot = quote["last"]
    options = (await tradier(emulator, CHAINS, symbol="AAPL", expiration=EXPIRATION, greeks="true"))[
        "options"
    ]["option"]
    years = (et(2026, 12, 18, 16) - clock.now).total_seconds() / (365 * 86_400)
    near = [
        (c, p) for c, p in zip(options[::2], options[1::2], strict=True) if abs(c["strike"] / spot - 1) < 0.15
    ]
    assert len(near) > 10
    for c, p in near:
        parity = (c["bid"] + c["ask"]) / 2 - (p["bid"] + p["ask"]) / 2
        assert parity == pytest.approx(spot - c["strike"] * math.exp(-RATE * years), abs=0.015)
        assert 0 < c["greeks"]["delta"] < 1
        assert -1 < p["greeks"]["delta"] < 0
        assert c["greeks"]["delta"] - p["greeks"]["delta"] == pytest.approx(1, abs=1e-5)
        assert c["greeks"]["gamma"] > 0
        assert c["greeks"]["gamma"] == p["greeks"]["gamma"]
        assert c["greeks"]["vega"] > 0
        assert c["greeks"]["theta"] < 0
        assert c["greeks"]["rho"] > 0 > p["greeks"]["rho"]
        assert 0.18 * 0.8 < c["greeks"]["smv_vol"] < 0.6 * 1.5
        assert c["greeks"]["bid_iv"] <= c["greeks"]["mid_iv"] <= c["greeks"]["ask_iv"]
    smiles = [c["greeks"]["smv_vol"] for c, _ in near]
    assert smiles[0] > smiles[len(smiles) // 2]  # skew: low strikes carry more volatility


async def test_chain_null_for_unlisted_expirations_and_400_without_parameters(
    emulator: RunningEmulator,
) -> None:
    """Not an expiration, or not a symbol: {"options": null}; no expiration: 400 plain text."""
    for params in (
        {"symbol": "AAPL", "expiration": "2026-12-17"},
        {"symbol": "NOPE", "expiration": EXPIRATION},
    ):
        assert await tradier(emulator, CHAINS, **params) == {"options": None}
    status, body, response = await call(f"{emulator.url}/v1/markets/options/chains", {"symbol": "AAPL"}, JSON)
    assert (status, body, response.content_type) == (
        400,
        "Missing required parameter: expiration",
        "text/plain",
    )
    strikes = await tradier(emulator, STRIKES, symbol="AAPL", expiration=EXPIRATION)
    assert len(strikes["strikes"]["strike"]) > 60
    assert await tradier(emulator, STRIKES, symbol="AAPL", expiration="2026-12-17") == {"strikes": None}


# --- Tradier history, timesales, clock -------------------------------------------------------


async def test_history_skips_thanksgiving_and_matches_polygon_daily_aggs(
    emulator: RunningEmulator, clock: FakeClock
) -> None:
    """Daily bars exist for sessions only; the same bars come from Polygon, `t` at midnight ET."""
    clock.now = et(2026, 12, 1, 12)
    days = (await tradier(emulator, HISTORY, symbol="AAPL", start="2026-11-20", end="2026-11-30"))["history"][
        "day"
    ]
    assert [d["date"] for d in days] == [
        "2026-11-20",
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
        "2026-11-27",
        "2026-11-30",
    ]
    assert all(
        d["low"] <= min(d["open"], d["close"]) <= max(d["open"], d["close"]) <= d["high"] for d in days
    )
    assert days[4]["volume"] > 0
    market = Market(seed=11)
    assert days[-1]["close"] == market.price("AAPL", et(2026, 11, 30, 16))
    assert days[4]["close"] == market.price("AAPL", et(2026, 11, 27, 13))  # the early close
    aggs = await polygon(emulator, "/v2/aggs/ticker/AAPL/range/1/day/2026-11-20/2026-11-30")
    assert aggs["resultsCount"] == aggs["count"] == aggs["queryCount"] == 6
    for day, bar in zip(days, aggs["results"], strict=True):
        assert (bar["o"], bar["h"], bar["l"], bar["c"], bar["v"]) == (
            day["open"], day["high"], day["low"], day["close"], day["volume"]
        )  # fmt: skip
        assert bar["t"] == int(datetime.fromisoformat(day["date"]).replace(tzinfo=ET_TZ).timestamp() * 1000)
        assert bar["l"] <= bar["vw"] <= bar["h"]
    one = await tradier(emulator, HISTORY, symbol="AAPL", start="2026-11-27", end="2026-11-27")
    assert one["history"]["day"] == days[4]
    assert await tradier(emulator, HISTORY, symbol="AAPL", start="2026-11-26", end="2026-11-26") == {
        "history": None
    }
    assert await tradier(emulator, HISTORY, symbol="NOPE") == {"history": None}
    weeks = (
        await tradier(
            emulator, HISTORY, symbol="AAPL", interval="weekly", start="2026-11-23", end="2026-11-30"
        )
    )["history"]["day"]
    assert weeks[0] == {
        "date": "2026-11-23",
        "open": days[1]["open"],
        "high": max(d["high"] for d in days[1:5]),
        "low": min(d["low"] for d in days[1:5]),
        "close": days[4]["close"],
        "volume": sum(d["volume"] for d in days[1:5]),
    }
    assert weeks[1]["date"] == "2026-11-30"


async def test_quote_snapshot_daily_and_minute_bars_agree_at_one_instant(
    emulator: RunningEmulator, clock: FakeClock
) -> None:
    """Tradier quote = Polygon snapshot = today's daily bar = the 1-minute bars so far, at 10:07:23 ET."""
    clock.now = et(2026, 11, 24, 10, 7, 23)
    quote = (await tradier(emulator, "/v1/markets/quotes", symbols="MSFT"))["quotes"]["quote"]
    snap = (await polygon(emulator, "/v2/snapshot/locale/us/markets/stocks/tickers/MSFT"))["ticker"]
    assert snap["lastTrade"]["p"] == snap["day"]["c"] == quote["last"]
    assert (snap["lastQuote"]["p"], snap["lastQuote"]["P"]) == (quote["bid"], quote["ask"])
    assert (snap["lastQuote"]["s"], snap["lastQuote"]["S"]) == (quote["bidsize"], quote["asksize"])
    assert (snap["day"]["o"], snap["day"]["h"], snap["day"]["l"]) == (
        quote["open"],
        quote["high"],
        quote["low"],
    )
    assert snap["day"]["v"] == snap["min"]["av"] == quote["volume"]
    assert snap["prevDay"]["c"] == quote["prevclose"]
    assert snap["todaysChange"] == quote["change"]
    assert snap["todaysChangePerc"] == pytest.approx(quote["change_percentage"], abs=0.005)
    assert snap["updated"] == snap["lastTrade"]["t"] == quote["trade_date"] * 1_000_000
    assert isinstance(snap["lastTrade"]["i"], str)
    today = (await tradier(emulator, HISTORY, symbol="MSFT", start="2026-11-23"))["history"]["day"]
    assert today[-1] == {
        "date": "2026-11-24",
        "open": quote["open"],
        "high": quote["high"],
        "low": quote["low"],
        "close": quote["last"],
        "volume": quote["volume"],
    }
    assert today[0]["close"] == quote["prevclose"]
    assert (snap["prevDay"]["o"], snap["prevDay"]["h"], snap["prevDay"]["v"]) == (
        today[0]["open"], today[0]["high"], today[0]["volume"]
    )  # fmt: skip
    bars = (await tradier(emulator, TIMESALES, symbol="MSFT", session_filter="open"))["series"]["data"]
    assert bars[0]["time"] == "2026-11-24T09:30:00"
    assert bars[0]["timestamp"] == int(et(2026, 11, 24, 9, 30).timestamp())
    assert bars[-1]["time"] == "2026-11-24T10:07:00"  # the current, partial bar
    assert max(b["high"] for b in bars) == quote["high"]
    assert min(b["low"] for b in bars) == quote["low"]
    assert sum(b["volume"] for b in bars) == quote["volume"]
    assert (bars[0]["open"], bars[-1]["close"], bars[-1]["price"]) == (
        quote["open"],
        quote["last"],
        quote["last"],
    )
    assert snap["min"]["t"] == bars[-1]["timestamp"] * 1000
    assert (snap["min"]["o"], snap["min"]["h"], snap["min"]["l"], snap["min"]["c"], snap["min"]["v"]) == (
        bars[-1]["open"], bars[-1]["high"], bars[-1]["low"], bars[-1]["close"], bars[-1]["volume"]
    )  # fmt: skip
    market = Market(seed=11)
    for bar in bars[:-1:6]:
        start = datetime.fromtimestamp(bar["timestamp"], UTC)
        seconds = [market.price("MSFT", start + timedelta(seconds=s)) for s in range(60)]
        assert (bar["open"], max(seconds), min(seconds), bar["close"]) == (
            seconds[0], bar["high"], bar["low"], seconds[-1]
        )  # fmt: skip
        assert bar["low"] <= bar["vwap"] <= bar["high"]
        assert bar["volume"] > 0


async def test_timesales_bars_aggregate_and_match_polygon_minute_aggs(emulator: RunningEmulator) -> None:
    """5/15-minute bars merge 1-minute ones; pre-market is included by default; Polygon agrees."""
    ones = (await tradier(emulator, TIMESALES, symbol="AAPL", interval="1min"))["series"]["data"]
    assert ones[0]["time"] == "2026-11-24T04:00:00"
    assert len(ones) == 6 * 60 + 1  # 04:00 to the 10:00 bar, which has just begun
    fives = (await tradier(emulator, TIMESALES, symbol="AAPL", interval="5min"))["series"]["data"]
    assert [b["time"][11:] for b in fives[:2]] == ["04:00:00", "04:05:00"]
    for five, group in zip(fives, [ones[i : i + 5] for i in range(0, len(ones), 5)], strict=True):
        assert five["open"] == group[0]["open"]
        assert five["close"] == group[-1]["close"]
        assert five["high"] == max(b["high"] for b in group)
        assert five["low"] == min(b["low"] for b in group)
        assert five["volume"] == sum(b["volume"] for b in group)
    aggs = await polygon(emulator, "/v2/aggs/ticker/AAPL/range/5/minute/2026-11-24/2026-11-24")
    assert [(r["t"], r["o"], r["h"], r["l"], r["c"], r["v"], r["vw"]) for r in aggs["results"]] == [
        (b["timestamp"] * 1000, b["open"], b["high"], b["low"], b["close"], b["volume"], b["vwap"])
        for b in fives
    ]
    assert aggs["queryCount"] == len(ones)
    hours = await polygon(emulator, "/v2/aggs/ticker/AAPL/range/1/hour/2026-11-24/2026-11-24")
    assert hours["results"][0]["h"] == max(b["high"] for b in ones[:60])
    assert hours["results"][0]["v"] == sum(b["volume"] for b in ones[:60])
    one = await tradier(emulator, TIMESALES, symbol="AAPL", start="2026-11-24 09:31", end="2026-11-24 09:31")
    assert one["series"]["data"]["time"] == "2026-11-24T09:31:00"
    quarter = (await tradier(emulator, TIMESALES, symbol="AAPL", interval="15min", start="2026-11-23 19:30"))[
        "series"
    ]["data"]
    assert [b["time"] for b in quarter[:3]] == [
        "2026-11-23T19:30:00",
        "2026-11-23T19:45:00",
        "2026-11-24T04:00:00",
    ]
    assert await tradier(emulator, TIMESALES, symbol="NOPE") == {"series": None}
    night = await tradier(emulator, TIMESALES, symbol="AAPL", start="2026-11-26", end="2026-11-26")
    assert night == {"series": None}


@pytest.mark.parametrize(
    ("now", "clock_body", "status_body"),
    [
        (
            et(2026, 11, 24, 10),
            ("2026-11-24", "open", "16:00", "postmarket", "Market is open from 09:30 to 16:00"),
            ("open", False, False, "2026-11-24T10:00:00-05:00"),
        ),
        (
            et(2026, 11, 24, 5, 30),
            ("2026-11-24", "premarket", "09:30", "open", "Market is in premarket hours from 04:00 to 09:30"),
            ("extended-hours", True, False, "2026-11-24T05:30:00-05:00"),
        ),
        (
            et(2026, 11, 26, 12),
            ("2026-11-26", "closed", "04:00", "premarket", "Market is closed"),
            ("closed", False, False, "2026-11-26T12:00:00-05:00"),
        ),
        (
            et(2026, 11, 27, 14),
            (
                "2026-11-27",
                "postmarket",
                "17:00",
                "closed",
                "Market is in postmarket hours from 13:00 to 17:00",
            ),
            ("extended-hours", False, True, "2026-11-27T14:00:00-05:00"),
        ),
    ],
)
async def test_clock_and_market_status_follow_the_calendar(
    emulator: RunningEmulator,
    clock: FakeClock,
    now: datetime,
    clock_body: tuple[str, ...],
    status_body: tuple[Any, ...],
) -> None:
    """Tuesday open, pre-market, Thanksgiving closed, the Friday after it post-market past its 13:00 close."""
    clock.now = now
    body = (await tradier(emulator, "/v1/markets/clock"))["clock"]
    assert (
        body["date"],
        body["state"],
        body["next_change"],
        body["next_state"],
        body["description"],
    ) == clock_body
    assert body["timestamp"] == int(now.timestamp())
    status = await polygon(emulator, "/v1/marketstatus/now")
    assert (status["market"], status["earlyHours"], status["afterHours"], status["serverTime"]) == status_body
    assert status["exchanges"] == dict.fromkeys(("nyse", "nasdaq", "otc"), status_body[0])
    assert status["currencies"] == {"fx": "open", "crypto": "open"}
    assert "status" not in status


async def test_upcoming_lists_closures_and_early_closes_per_exchange(emulator: RunningEmulator) -> None:
    """A bare array: Thanksgiving closed, the day after closing at 13:00 ET, Christmas; no regular days."""
    upcoming = await polygon(emulator, "/v1/marketstatus/upcoming")
    assert isinstance(upcoming, list)
    assert upcoming[:4] == [
        {"exchange": "NYSE", "name": "Thanksgiving", "date": "2026-11-26", "status": "closed"},
        {"exchange": "NASDAQ", "name": "Thanksgiving", "date": "2026-11-26", "status": "closed"},
        {
            "exchange": "NYSE",
            "name": "Thanksgiving",
            "date": "2026-11-27",
            "status": "early-close",
            "open": "2026-11-27T14:30:00.000Z",
            "close": "2026-11-27T18:00:00.000Z",
        },
        {
            "exchange": "NASDAQ",
            "name": "Thanksgiving",
            "date": "2026-11-27",
            "status": "early-close",
            "open": "2026-11-27T14:30:00.000Z",
            "close": "2026-11-27T18:00:00.000Z",
        },
    ]
    closed = {(e["date"], e["name"]) for e in upcoming if e["status"] == "closed"}
    assert closed == {
        ("2026-11-26", "Thanksgiving"),
        ("2026-12-25", "Christmas"),
        ("2027-01-01", "New Years Day"),
        ("2027-01-18", "Martin Luther King, Jr. Day"),
        ("2027-02-15", "Washington's Birthday"),
    }
    assert {e["date"] for e in upcoming if e["status"] == "early-close"} == {"2026-11-27", "2026-12-24"}


# --- Polygon ---------------------------------------------------------------------------------


async def test_options_snapshot_matches_the_tradier_chain(emulator: RunningEmulator) -> None:
    """Same bid/ask, Greeks, IV (= mid_iv), open interest and last trade per contract; B.5 shape."""
    options = (await tradier(emulator, CHAINS, symbol="AAPL", expiration=EXPIRATION, greeks="true"))[
        "options"
    ]["option"]
    tradier_by_symbol = {o["symbol"]: o for o in options}
    spot = (await tradier(emulator, "/v1/markets/quotes", symbols="AAPL"))["quotes"]["quote"]["last"]
    first = await polygon(emulator, "/v3/snapshot/options/AAPL", expiration_date=EXPIRATION, limit=250)
    results = await follow(first, "results")
    assert sorted(r["details"]["ticker"] for r in results) == sorted(f"O:{s}" for s in tradier_by_symbol)
    assert [r["details"]["ticker"] for r in results] == sorted(r["details"]["ticker"] for r in results)
    for result in results:
        t = tradier_by_symbol[result["details"]["ticker"][2:]]
        quote = result["last_quote"]
        assert (quote["bid"], quote["ask"], quote["bid_size"], quote["ask_size"]) == (
            t["bid"], t["ask"], t["bidsize"], t["asksize"]
        )  # fmt: skip
        assert quote["midpoint"] == pytest.approx((t["bid"] + t["ask"]) / 2)
        assert quote["last_updated"] == t["bid_date"] * 1_000_000
        assert quote["timeframe"] == "REAL-TIME"
        assert result["open_interest"] == t["open_interest"]
        assert result["details"] == {
            "contract_type": t["option_type"],
            "exercise_style": "american",
            "expiration_date": EXPIRATION,
            "shares_per_contract": 100,
            "strike_price": t["strike"],
            "ticker": f"O:{t['symbol']}",
        }
        sign = 1 if t["option_type"] == "call" else -1
        assert result["break_even_price"] == pytest.approx(t["strike"] + sign * quote["midpoint"])
        assert result["underlying_asset"]["price"] == spot
        assert result["underlying_asset"]["change_to_break_even"] == pytest.approx(
            result["break_even_price"] - spot
        )
        if t["greeks"] is None:
            assert "greeks" not in result
            assert "implied_volatility" not in result
            assert t["strike"] < 0.8 * spot if t["option_type"] == "call" else t["strike"] > 1.2 * spot
        else:
            assert result["greeks"] == {k: t["greeks"][k] for k in ("delta", "gamma", "theta", "vega")}
            assert result["implied_volatility"] == t["greeks"]["mid_iv"]
        if t["trade_date"]:
            assert result["last_trade"]["price"] == t["last"]
            assert result["last_trade"]["sip_timestamp"] == t["trade_date"] * 1_000_000
        else:
            assert "last_trade" not in result
        if t["volume"]:
            assert (result["day"]["volume"], result["day"]["close"], result["day"]["previous_close"]) == (
                t["volume"], t["last"], t["prevclose"]
            )  # fmt: skip
        else:
            assert result["day"] == {}
    some = results[len(results) // 2]
    single = await polygon(emulator, f"/v3/snapshot/options/AAPL/{some['details']['ticker']}")
    assert single["results"] == some
    status, body, _ = await call(f"{emulator.url}/v3/snapshot/options/AAPL/O:AAPL261218C00001000", KEY)
    assert (status, body["status"], body["message"]) == (404, "NOT_FOUND", "Ticker not found.")


async def test_options_snapshot_filters_sorts_and_pages_once(emulator: RunningEmulator) -> None:
    """Filters and sort apply across pages; following next_url (key re-added) yields each contract once."""
    params = {
        "expiration_date.gte": "2026-12-01",
        "expiration_date.lte": "2026-12-31",
        "strike_price.gte": 200,
        "strike_price.lt": 215,
        "contract_type": "put",
        "sort": "strike_price",
        "order": "desc",
        "limit": 7,
    }
    first = await polygon(emulator, "/v3/snapshot/options/AAPL", **params)
    assert len(first["results"]) == 7
    results = await follow(first, "results")
    keys = [(r["details"]["strike_price"], r["details"]["ticker"]) for r in results]
    assert keys == sorted(keys, reverse=True)
    assert len(keys) == len(set(keys)) == 6 * 5 * 1  # 6 strikes x 5 December expirations, puts only
    assert {r["details"]["contract_type"] for r in results} == {"put"}
    assert {r["details"]["expiration_date"] for r in results} == {
        "2026-12-04", "2026-12-11", "2026-12-18", "2026-12-24", "2026-12-31"
    }  # fmt: skip
    default = await polygon(emulator, "/v3/snapshot/options/AAPL", expiration_date=EXPIRATION)
    assert len(default["results"]) == 10
    assert "next_url" in default
    empty = await polygon(emulator, "/v3/snapshot/options/NOPE")
    assert (empty["status"], empty["results"]) == ("OK", [])
    assert "next_url" not in empty


async def test_stock_snapshots_list_known_tickers_and_404_unknown_ones(emulator: RunningEmulator) -> None:
    """Several tickers: unknown ones absent, `count` matching; one unknown ticker: 404 NOT_FOUND."""
    body = await polygon(
        emulator, "/v2/snapshot/locale/us/markets/stocks/tickers", tickers="AAPL,NOPE,SPY,aapl"
    )
    assert (body["status"], body["count"]) == ("OK", 2)
    assert [t["ticker"] for t in body["tickers"]] == ["AAPL", "SPY"]
    status, error, _ = await call(f"{emulator.url}/v2/snapshot/locale/us/markets/stocks/tickers/NOPE", KEY)
    assert status == 404
    assert (error["status"], error["message"]) == ("NOT_FOUND", "Ticker not found.")
    assert re.fullmatch(r"[0-9a-f]{32}", error["request_id"])


async def test_aggs_pages_by_base_bars_without_the_key_and_empty_ranges_have_no_results(
    emulator: RunningEmulator,
) -> None:
    """`limit` counts 1-minute bars; next_url rewrites `from`; no bars: resultsCount 0 and no `results`."""
    path = "/v2/aggs/ticker/AAPL/range/15/minute/2026-11-23/2026-11-24"
    whole = await polygon(emulator, path)
    first = await polygon(emulator, path, limit=100)
    assert first["queryCount"] == 90  # six 15-minute bars; a seventh would pass 100
    assert first["resultsCount"] == len(first["results"]) == 6
    assert "/range/15/minute/" + str(whole["results"][6]["t"]) + "/2026-11-24?" in first["next_url"]
    assert [r["t"] for r in await follow(first, "results")] == [r["t"] for r in whole["results"]]
    newest_first = await polygon(emulator, path, limit=300, sort="desc")
    assert [r["t"] for r in await follow(newest_first, "results")] == [r["t"] for r in whole["results"]][::-1]
    for empty in (
        "/v2/aggs/ticker/AAPL/range/1/day/2026-11-28/2026-11-29",
        "/v2/aggs/ticker/NOPE/range/1/day/2026-11-01/2026-11-24",
    ):
        body = await polygon(emulator, empty)
        assert (body["status"], body["resultsCount"], body["queryCount"]) == ("OK", 0, 0)
        assert "results" not in body
        assert "next_url" not in body
    status, error, _ = await call(
        f"{emulator.url}/v2/aggs/ticker/AAPL/range/1/fortnight/2026-11-01/2026-11-24", KEY
    )
    assert (status, error["status"]) == (400, "ERROR")


def _sma(values: list[float], n: int) -> float:
    return sum(values[-n:]) / n


def _ema(values: list[float], n: int) -> list[float]:
    alpha, out = 2 / (n + 1), [sum(values[:n]) / n]
    for value in values[n:]:
        out.append(alpha * value + (1 - alpha) * out[-1])
    return out  # out[i] belongs to values[n - 1 + i]


def _rsi(values: list[float], n: int) -> float:
    changes = [b - a for a, b in itertools.pairwise(values)]
    gain = sum(max(c, 0) for c in changes[:n]) / n
    loss = sum(max(-c, 0) for c in changes[:n]) / n
    for c in changes[n:]:
        gain, loss = (gain * (n - 1) + max(c, 0)) / n, (loss * (n - 1) + max(-c, 0)) / n
    return 100 - 100 / (1 + gain / loss)


async def test_indicators_are_textbook_values_of_the_daily_closes(emulator: RunningEmulator) -> None:
    """SMA, EMA, RSI (Wilder) and MACD of the aggs' closes; newest first, paged without the key."""
    bars = (await polygon(emulator, "/v2/aggs/ticker/AAPL/range/1/day/2024-11-24/2026-11-24", limit=50000))[
        "results"
    ]
    closes = [b["c"] for b in bars]
    sma = await polygon(emulator, "/v1/indicators/sma/AAPL", window=20, limit=3)
    assert [v["timestamp"] for v in sma["results"]["values"]] == [b["t"] for b in bars[-3:]][::-1]
    assert sma["results"]["values"][0]["value"] == pytest.approx(_sma(closes, 20), rel=1e-12)
    assert sma["results"]["values"][2]["value"] == pytest.approx(_sma(closes[:-2], 20), rel=1e-12)
    assert sma["results"]["underlying"]["url"] == (
        f"{emulator.url}/v2/aggs/ticker/AAPL/range/1/day/2003-01-01/2026-11-24?limit=50000&sort=desc"
    )
    ema = await polygon(emulator, "/v1/indicators/ema/AAPL", window=10, limit=1)
    assert ema["results"]["values"][0]["value"] == pytest.approx(_ema(closes, 10)[-1], rel=1e-9)
    rsi = await polygon(emulator, "/v1/indicators/rsi/AAPL", limit=1)
    assert rsi["results"]["values"][0]["value"] == pytest.approx(_rsi(closes, 14), rel=1e-9)
    macd = (await polygon(emulator, "/v1/indicators/macd/AAPL", limit=1))["results"]["values"][0]
    line = [s - long for s, long in zip(_ema(closes, 12)[14:], _ema(closes, 26), strict=True)]
    signal = _ema(line, 9)[-1]
    assert (macd["value"], macd["signal"], macd["histogram"]) == pytest.approx(
        (line[-1], signal, line[-1] - signal), rel=1e-9
    )
    paged = await polygon(emulator, "/v1/indicators/sma/AAPL", window=5, limit=100, order="asc")
    values = await follow(paged, "values")
    assert [v["timestamp"] for v in values] == [b["t"] for b in bars[4:]]
    lte = await polygon(emulator, "/v1/indicators/sma/AAPL", window=5, **{"timestamp.lte": "2026-11-20"})
    assert lte["results"]["values"][0]["timestamp"] == bars[-3]["t"]
    unknown = await polygon(emulator, "/v1/indicators/rsi/NOPE")
    assert (unknown["status"], unknown["results"]) == ("OK", {"values": []})


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, api_keys=frozenset({"poly-key"}))])
async def test_polygon_takes_the_key_as_apikey_or_bearer_and_names_what_is_wrong(
    emulator: RunningEmulator,
) -> None:
    """apiKey or Bearer both work; none: 401 "API Key was not provided"; another: 401 "Unknown API Key"."""
    url = f"{emulator.url}/v1/marketstatus/now"
    assert (await call(url, KEY))[0] == 200
    assert (await call(url, None, {"Authorization": "Bearer poly-key"}))[0] == 200
    status, body, response = await call(url)
    assert (status, response.content_type) == (401, "application/json")
    assert (body["status"], body["error"]) == ("ERROR", "API Key was not provided")
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    status, body, _ = await call(url, {"apiKey": "stolen"})
    assert (status, body["status"], body["error"]) == (401, "ERROR", "Unknown API Key")
    assert emulator.calls("/v1/marketstatus/now") == {"200": 2, "401": 2}


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, polygon_rate_per_min=2)])
async def test_polygon_rate_limit_is_a_fixed_window_per_key_reset_by_the_control(
    emulator: RunningEmulator, clock: FakeClock
) -> None:
    """The 3rd call in a minute is a 429 with Polygon's message; a new window, or a reset, admits again."""
    url = f"{emulator.url}/v1/marketstatus/now"
    assert [(await call(url, KEY))[0] for _ in range(2)] == [200, 200]
    assert (await call(url, {"apiKey": "other"}))[0] == 200  # windows are per key
    status, body, _ = await call(url, KEY)
    assert status == 429
    assert body["status"] == "ERROR"
    assert body["error"] == (
        "You've exceeded the maximum requests per minute, please wait or upgrade your subscription to "
        "continue. https://polygon.io/pricing"
    )
    clock.advance(60)
    assert (await call(url, KEY))[0] == 200
    assert (await call(url, KEY))[0] == 200
    assert (await call(url, KEY))[0] == 429
    async with aiohttp.ClientSession() as session:
        await session.post(f"{emulator.url}/_emulator/reset")
    assert (await call(url, KEY))[0] == 200


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, polygon_plan="basic")])
async def test_basic_plan_refuses_snapshots_only(emulator: RunningEmulator) -> None:
    """Stock and option snapshots: 403 NOT_AUTHORIZED with a `message`; aggregates still answer."""
    for path in ("/v2/snapshot/locale/us/markets/stocks/tickers/AAPL", "/v3/snapshot/options/AAPL"):
        status, body, _ = await call(f"{emulator.url}{path}", KEY)
        assert status == 403
        assert (body["status"], body["message"]) == (
            "NOT_AUTHORIZED",
            "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing",
        )
    assert (await call(f"{emulator.url}/v2/aggs/ticker/AAPL/range/1/day/2026-11-20/2026-11-24", KEY))[
        0
    ] == 200


# --- what every route shares -----------------------------------------------------------------


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, rate_per_min=3)])
async def test_tradier_routes_share_auth_xml_and_one_rate_window(emulator: RunningEmulator) -> None:
    """XML without Accept: application/json; 401 plain text; quotes and the new routes spend one window."""
    bearer = {"Authorization": "Bearer t0k"}
    status, text, response = await call(f"{emulator.url}/v1/markets/clock", None, bearer)
    assert (status, response.content_type) == (200, "application/xml")
    root = ET.fromstring(text)  # noqa: S314 - our own emulator's output
    assert (root.tag, root.findtext("state"), root.findtext("next_change")) == ("clock", "open", "16:00")
    params = {"symbol": "AAPL", "start": "2026-11-23", "end": "2026-11-24"}
    status, text, _ = await call(f"{emulator.url}/v1/markets/history", params, bearer)
    assert [day.findtext("date") for day in ET.fromstring(text).iter("day")] == ["2026-11-23", "2026-11-24"]  # noqa: S314
    status, text, response = await call(f"{emulator.url}/v1/markets/options/chains", params, None)
    assert (status, text, response.content_type) == (401, "Invalid Access Token", "plain/text")
    await call(f"{emulator.url}/v1/markets/quotes", {"symbols": "AAPL"}, JSON)
    status, _, response = await call(
        f"{emulator.url}/v1/markets/options/expirations", {"symbol": "AAPL"}, JSON
    )
    assert status == 429
    assert response.headers["X-Ratelimit-Available"] == "0"


async def test_faults_latency_and_stats_cover_the_new_routes(emulator: RunningEmulator) -> None:
    """An armed fault replaces a chain answer once; stats count Polygon and Tradier paths alike."""
    async with aiohttp.ClientSession() as session:
        await session.post(
            f"{emulator.url}/_emulator/faults", json={"path": CHAINS, "status": 503, "body": "busy"}
        )
    params = {"symbol": "AAPL", "expiration": EXPIRATION}
    assert (await call(f"{emulator.url}/v1/markets/options/chains", params, JSON))[:2] == (503, "busy")
    assert (await call(f"{emulator.url}/v1/markets/options/chains", params, JSON))[0] == 200
    await call(f"{emulator.url}/v1/marketstatus/upcoming", KEY)
    assert emulator.calls(CHAINS) == {"200": 1, "503": 1}
    assert emulator.calls("/v1/marketstatus/upcoming") == {"200": 1}
    status, text, _ = await call(f"{emulator.url}/v9/nowhere", KEY)
    assert (status, text) == (404, "404: Not Found")


def test_command_line_sets_the_polygon_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """--polygon-rate-per-min and --polygon-plan reach the emulator's options."""
    served = []
    monkeypatch.setattr(web, "run_app", lambda app, **kwargs: served.append(app))
    cli.main(["--polygon-rate-per-min", "5", "--polygon-plan", "basic"])
    options = served[0][STATE].options
    assert (options.polygon_rate_per_min, options.polygon_plan) == (5, "basic")
    assert EmulatorOptions().polygon_rate_per_min == 0
    with pytest.raises(ValueError, match="polygon_plan"):
        EmulatorOptions(polygon_plan="gold")


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, latency_ms=150)])
async def test_latency_holds_back_polygon_and_tradier_routes(emulator: RunningEmulator) -> None:
    """--latency-ms delays the new routes too."""
    for url, params, headers in (
        (f"{emulator.url}/v1/marketstatus/now", KEY, None),
        (f"{emulator.url}{HISTORY}", {"symbol": "AAPL", "start": "2026-11-24"}, JSON),
    ):
        started = time.perf_counter()
        assert (await call(url, params, headers))[0] == 200
        assert time.perf_counter() - started >= 0.15


def test_market_is_defined_to_the_second_in_every_bar() -> None:
    """Any second's price lies within its 1-minute bar; a quote's range spans every second so far."""
    market = Market(seed=5)
    history = History(market)
    day = market.calendar.trading_day(date(2026, 11, 24))
    assert day is not None
    bars = history.intraday("NVDA", day, et(2026, 11, 24, 10))
    for bar in bars[::37]:
        for second in range(0, 60, 7):
            quote = market.quote("NVDA", bar.start + timedelta(seconds=second))
            assert quote is not None
            assert bar.low <= quote.last <= bar.high
    now = et(2026, 11, 24, 9, 52, 41)
    seconds = [market.price("NVDA", day.open + timedelta(seconds=s)) for s in range(22 * 60 + 42)]
    quote = market.quote("NVDA", now)
    assert quote is not None
    assert (quote.open, quote.high, quote.low, quote.last) == (
        seconds[0],
        max(seconds),
        min(seconds),
        seconds[-1],
    )
    assert history.daily("NVDA", day, now) == history.daily_range("NVDA", day.date, day.date, now)[0]
    partial = history.intraday("NVDA", day, now)[-1]
    assert partial.start == et(2026, 11, 24, 9, 52)
    assert (partial.open, partial.high, partial.low, partial.close) == (
        seconds[-42], max(seconds[-42:]), min(seconds[-42:]), seconds[-1]
    )  # fmt: skip
