"""PolygonProvider: the reference's wire shapes and units, paging by next_url, errors, via the emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest

from tests.support import FakeClock, RunningEmulator, SentRequest, make_gate, recording_trace
from worker.errors import UpstreamAuthError, UpstreamBadPayload, UpstreamError, UpstreamNotFound
from worker.providers.base import IndicatorSpec, StrikeRange
from worker.providers.polygon import MAX_PAGES, PolygonProvider
from worker.providers.polygon_wire import (
    SNAPSHOT_ENDPOINT,
    AggsPage,
    ChainPage,
    aggs_bars,
    chain_contracts,
    parse_page,
    parse_snapshot,
    to_quote,
)
from worker.providers.wire import from_epoch

KEY = "polygon-test-key-0042"
FRESH_UNTIL = datetime(2026, 11, 24, 15, 1, tzinfo=UTC)
JUNE_16 = date(2023, 6, 16)
STAMP: dict[str, Any] = {
    "source": "polygon",
    "fetched_at": datetime(2026, 11, 24, 15, tzinfo=UTC),
    "fresh_until": FRESH_UNTIL,
}


def freshness(fetched_at: datetime) -> datetime:
    """A schedule whose next refresh is always FRESH_UNTIL."""
    return FRESH_UNTIL


# --- the reference's payloads (B.1, B.3, B.4, B.5), copied verbatim -------------------------

BCAT: dict[str, Any] = {
    "ticker": "BCAT",
    "todaysChange": -0.124,
    "todaysChangePerc": -0.601,
    "updated": 1605192894630916600,
    "fmv": 20.5,
    "day": {"o": 20.64, "h": 20.64, "l": 20.506, "c": 20.506, "v": 37216, "vw": 20.616},
    "prevDay": {"o": 20.79, "h": 21, "l": 20.5, "c": 20.63, "v": 292738, "vw": 20.6939},
    "min": {
        "av": 37216,
        "t": 1684428600000,
        "n": 5,
        "o": 20.506,
        "h": 20.506,
        "l": 20.506,
        "c": 20.506,
        "v": 5000,
        "vw": 20.5105,
    },
    "lastQuote": {"P": 20.6, "S": 22, "p": 20.5, "s": 13, "t": 1605192959994246100},
    "lastTrade": {
        "c": [14, 41],
        "i": "71675577320245",
        "p": 20.506,
        "s": 2416,
        "t": 1605192894630916600,
        "x": 4,
    },
}
SNAPSHOT = {"status": "OK", "count": 1, "tickers": [BCAT]}

AAPL_CALL: dict[str, Any] = {
    "break_even_price": 179.075,
    "day": {
        "change": -2.4,
        "change_percent": -7.64,
        "close": 29,
        "high": 32.25,
        "low": 29,
        "open": 29.99,
        "previous_close": 31.4,
        "volume": 8,
        "vwap": 30.7738,
        "last_updated": 1651204800000000000,
    },
    "details": {
        "contract_type": "call",
        "exercise_style": "american",
        "expiration_date": "2023-06-16",
        "shares_per_contract": 100,
        "strike_price": 150,
        "ticker": "O:AAPL230616C00150000",
    },
    "fmv": 20.5,
    "greeks": {"delta": 0.6437, "gamma": 0.00617, "theta": -0.0282, "vega": 0.6381},
    "implied_volatility": 0.357,
    "last_quote": {
        "ask": 29.25,
        "ask_size": 209,
        "bid": 28.9,
        "bid_size": 294,
        "midpoint": 29.075,
        "last_updated": 1651254260800059648,
        "timeframe": "REAL-TIME",
    },
    "last_trade": {
        "price": 29.25,
        "size": 1,
        "exchange": 309,
        "conditions": [209],
        "sip_timestamp": 1678718527714665700,
        "timeframe": "REAL-TIME",
    },
    "open_interest": 8133,
    "underlying_asset": {
        "ticker": "AAPL",
        "price": 159.9606,
        "change_to_break_even": 19.1144,
        "last_updated": 1651254263172073152,
        "timeframe": "REAL-TIME",
    },
}

AGGS = {
    "ticker": "AAPL",
    "queryCount": 2,
    "resultsCount": 2,
    "adjusted": True,
    "status": "OK",
    "request_id": "6a7e466379af0a71039d60cc78e72282",
    "count": 2,
    "results": [
        {
            "o": 74.06,
            "h": 75.15,
            "l": 73.7975,
            "c": 75.0875,
            "v": 135647456,
            "vw": 74.6099,
            "t": 1577941200000,
            "n": 1,
        },
        {
            "o": 74.2875,
            "h": 75.145,
            "l": 74.125,
            "c": 74.3575,
            "v": 146535512,
            "vw": 74.7026,
            "t": 1578027600000,
            "n": 1,
        },
    ],
    "next_url": "https://api.massive.com/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10?cursor=bGltaXQ9MiZzb3J0PWFzYw",
}
AGGS_EMPTY = {
    "ticker": "XXXX",
    "queryCount": 0,
    "resultsCount": 0,
    "adjusted": True,
    "status": "OK",
    "request_id": "a1",
}
SMA = {
    "status": "OK",
    "request_id": "a47d1beb8c11b6ae897ab76cdbbf35a3",
    "results": {
        "values": [{"timestamp": 1517562000016, "value": 140.139}],
        "underlying": {
            "url": "https://api.massive.com/v2/aggs/ticker/AAPL/range/1/day/2003-01-01/2022-07-25"
        },
    },
    "next_url": "https://api.massive.com/v1/indicators/sma/AAPL?cursor=abc",
}
MACD = {
    "results": {
        "underlying": {"url": "…"},
        "values": [
            {
                "timestamp": 1660881600000,
                "value": 6.912856964275647,
                "signal": 49.504484615884834,
                "histogram": -42.59162765160919,
            }
        ],
    },
    "status": "OK",
    "request_id": "b5163e30-64c6-4298-8217-aab3152ea79f",
}
RATE_LIMITED = {
    "status": "ERROR",
    "request_id": "r1",
    "error": "You've exceeded the maximum requests per minute, please wait or upgrade your subscription "
    "to continue. https://polygon.io/pricing",
}
NOT_AUTHORIZED = {
    "status": "NOT_AUTHORIZED",
    "request_id": "r2",
    "message": "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing",
}
NOT_FOUND = {"status": "NOT_FOUND", "request_id": "r3", "message": "Ticker not found."}


# --- units and the snapshot -----------------------------------------------------------------


def test_epoch_units_are_told_apart_by_size() -> None:
    """The same instant in s, ms and ns gives the same UTC time; ns keep their microseconds."""
    instant = datetime(2020, 11, 12, 14, 55, 59, tzinfo=UTC)
    assert from_epoch(1605192959) == instant
    assert from_epoch(1605192959000) == instant
    assert from_epoch(1605192959994246100) == instant.replace(microsecond=994246)


def test_snapshot_maps_to_a_quote_with_ask_from_capital_p() -> None:
    """lastQuote P/S are the ask, p/s the bid; times are ns; day gives OHLV, prevDay the prevclose."""
    (ticker,), unmatched = parse_snapshot(SNAPSHOT, ["BCAT"])
    assert unmatched == []
    quote = to_quote(ticker, **STAMP)
    assert (quote.bid, quote.bidsize, quote.ask, quote.asksize) == (20.5, 13, 20.6, 22)
    assert quote.bid_date == quote.ask_date == datetime(2020, 11, 12, 14, 55, 59, 994246, tzinfo=UTC)
    assert quote.trade_date == datetime(2020, 11, 12, 14, 54, 54, 630916, tzinfo=UTC)
    assert (quote.last, quote.last_volume) == (20.506, 2416)
    assert (quote.open, quote.high, quote.low, quote.close) == (20.64, 20.64, 20.506, None)
    assert (quote.volume, quote.prevclose) == (37216, 20.63)
    assert (quote.change, quote.change_percentage) == (-0.124, -0.601)
    assert (quote.symbol, quote.source, quote.fresh_until) == ("BCAT", "polygon", FRESH_UNTIL)


def test_last_falls_back_to_the_minute_then_the_day_close() -> None:
    """Without lastTrade (plan without trades) last is min.c, then day.c; no lastQuote: no bid/ask."""
    no_trade = {k: v for k, v in BCAT.items() if k not in ("lastTrade", "lastQuote")}
    minute = to_quote(
        parse_snapshot({"tickers": [{**no_trade, "min": {**BCAT["min"], "c": 20.55}}]}, [])[0][0], **STAMP
    )
    day_only = to_quote(parse_snapshot({"tickers": [{**no_trade, "min": {}}]}, [])[0][0], **STAMP)
    assert (minute.last, day_only.last) == (20.55, 20.506)
    assert (minute.bid, minute.ask, minute.bid_date, minute.trade_date) == (None, None, None, None)


def test_zero_day_bars_before_four_am_are_none() -> None:
    """Snapshot day bars are all zero before 04:00 ET: open/high/low and last become None."""
    zero = {"o": 0, "h": 0, "l": 0, "c": 0, "v": 0, "vw": 0}
    early = {"ticker": "BCAT", "day": zero, "min": zero, "prevDay": BCAT["prevDay"]}
    quote = to_quote(parse_snapshot({"status": "OK", "tickers": [early]}, ["BCAT"])[0][0], **STAMP)
    assert (quote.open, quote.high, quote.low, quote.last) == (None, None, None, None)
    assert (quote.volume, quote.prevclose) == (0, 20.63)


def test_absent_and_inline_error_tickers_are_unmatched() -> None:
    """A requested ticker missing from `tickers`, or there with an error, is unmatched, in request order."""
    payload = {
        "status": "OK",
        "tickers": [BCAT, {"ticker": "APx", "error": "NOT_FOUND", "message": "Ticker not found."}],
    }
    found, unmatched = parse_snapshot(payload, ["NOPE", "BCAT", "APx"])
    assert [t.ticker for t in found] == ["BCAT"]
    assert unmatched == ["NOPE", "APx"]
    assert parse_snapshot({"status": "OK", "count": 0}, ["NOPE"]) == ([], ["NOPE"])


@pytest.mark.parametrize(
    ("ticker", "message"),
    [
        pytest.param(
            {**BCAT, "lastQuote": {**BCAT["lastQuote"], "P": "abc"}},
            r"tickers\[1\].lastQuote.P = 'abc'",
            id="ask",
        ),
        pytest.param({**BCAT, "day": {**BCAT["day"], "v": [1]}}, r"tickers\[1\].day.v = \[1\]", id="volume"),
        pytest.param(
            {k: v for k, v in BCAT.items() if k != "ticker"},
            r"tickers\[1\].ticker = .*Field required",
            id="no-ticker",
        ),
    ],
)
def test_a_bad_snapshot_field_rejects_the_batch(ticker: dict[str, Any], message: str) -> None:
    """A wrong-typed or missing field rejects the whole snapshot, naming path and value."""
    with pytest.raises(UpstreamBadPayload, match=message) as raised:
        parse_snapshot({"status": "OK", "tickers": [BCAT, ticker]}, ["BCAT"])
    assert raised.value.endpoint == SNAPSHOT_ENDPOINT


# --- chains and bars ------------------------------------------------------------------------


def test_chain_snapshot_maps_to_contracts() -> None:
    """O: prefix dropped, IV as mid_iv only, no rho, underlying price from the first contract."""
    page = parse_page(ChainPage, {"status": "OK", "results": [AAPL_CALL]}, "/v3/snapshot/options/AAPL")
    contracts, underlying = chain_contracts(page.results or [], JUNE_16, None)
    assert underlying == 159.9606
    assert [c._asdict() for c in contracts] == [
        {
            "symbol": "AAPL230616C00150000",
            "option_type": "call",
            "strike": 150.0,
            "bid": 28.9,
            "ask": 29.25,
            "last": 29.25,
            "change": -2.4,
            "volume": 8,
            "open_interest": 8133,
            "bid_iv": None,
            "mid_iv": 0.357,
            "ask_iv": None,
            "delta": 0.6437,
            "gamma": 0.00617,
            "theta": -0.0282,
            "vega": 0.6381,
            "rho": None,
        }
    ]


def test_chain_without_greeks_or_trades_and_other_types_skipped() -> None:
    """No greeks/IV: None; no last_trade: day.close; `other` contracts and other dates are dropped."""
    bare = {k: v for k, v in AAPL_CALL.items() if k not in ("greeks", "implied_volatility", "last_trade")}
    put = {
        **bare,
        "details": {**AAPL_CALL["details"], "contract_type": "put", "ticker": "O:AAPL230616P00150000"},
    }
    other = {**AAPL_CALL, "details": {**AAPL_CALL["details"], "contract_type": "other"}}
    later = {**AAPL_CALL, "details": {**AAPL_CALL["details"], "expiration_date": "2023-06-23"}}
    cheap = {
        **AAPL_CALL,
        "details": {**AAPL_CALL["details"], "strike_price": 100, "ticker": "O:AAPL230616C00100000"},
    }
    page = parse_page(ChainPage, {"results": [put, other, later, bare, cheap]}, "/x")
    contracts, _ = chain_contracts(page.results or [], JUNE_16, StrikeRange(120, 180))
    assert [(c.symbol, c.option_type) for c in contracts] == [
        ("AAPL230616C00150000", "call"),
        ("AAPL230616P00150000", "put"),
    ]
    assert (contracts[1].delta, contracts[1].mid_iv, contracts[1].last) == (None, None, 29)


def test_aggs_bars_start_at_t_in_ms_and_empty_is_none() -> None:
    """`t` is epoch ms of the bar start (midnight ET = 05:00 UTC in January); resultsCount 0 is None."""
    bars = aggs_bars([parse_page(AggsPage, AGGS, "/x")])
    assert bars is not None
    assert [(b.start, b.close, b.vwap) for b in bars] == [
        (datetime(2020, 1, 2, 5, tzinfo=UTC), 75.0875, 74.6099),
        (datetime(2020, 1, 3, 5, tzinfo=UTC), 74.3575, 74.7026),
    ]
    assert aggs_bars([parse_page(AggsPage, AGGS_EMPTY, "/x")]) is None


def test_bad_bar_is_rejected_naming_it() -> None:
    """A bar without its close rejects the page, naming `results[1].c`."""
    bad = {**AGGS, "results": [AGGS["results"][0], {k: v for k, v in AGGS["results"][1].items() if k != "c"}]}
    with pytest.raises(UpstreamBadPayload, match=r"results\[1\].c = .*Field required"):
        parse_page(AggsPage, bad, "/v2/aggs/ticker/AAPL/range/1/day/2020-01-01/2020-01-10")


# --- through the emulator -------------------------------------------------------------------


@pytest.fixture
async def sent() -> list[SentRequest]:
    return []


@pytest.fixture
async def session(sent: list[SentRequest]) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trace_configs=[recording_trace(sent)]) as client:
        yield client


def _provider(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock, *, batch_size: int = 100
) -> PolygonProvider:
    return PolygonProvider(
        session,
        base_url=emulator.url,
        api_key=KEY,
        gate=make_gate("polygon", clock),
        batch_size=batch_size,
        timeout_s=5.0,
        clock=clock,
    )


async def _serve(
    session: aiohttp.ClientSession,
    emulator: RunningEmulator,
    path: str,
    body: Any,
    *,
    status: int = 200,
    times: int = 1,
    content_type: str = "application/json",
) -> None:
    """Arm the emulator to answer `path` `times` times with `body` (JSON unless a str), via its controls."""
    text = body if isinstance(body, str) else json.dumps(body)
    fault = {"path": path, "status": status, "body": text, "content_type": content_type, "times": times}
    async with session.post(f"{emulator.url}/_emulator/faults", json=fault) as response:
        assert response.status == 200, await response.text()


def _upstream(sent: list[SentRequest]) -> list[SentRequest]:
    return [s for s in sent if not s.url.path.startswith("/_emulator/")]


def _assert_key_only_in_header(sent: list[SentRequest], emulator: RunningEmulator) -> None:
    for request in _upstream(sent):
        assert KEY not in str(request.url)
        assert request.headers["Authorization"] == f"Bearer {KEY}"
        assert str(request.url).startswith(emulator.url + "/")


async def test_fetch_quotes_sends_tickers_and_the_key_as_a_bearer_header(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """One GET with tickers=A,B; quotes stamped by the clock; absent tickers unmatched."""
    await _serve(session, emulator, SNAPSHOT_ENDPOINT, SNAPSHOT)
    batch = await _provider(session, emulator, clock).fetch_quotes(["BCAT", "NOPE"], freshness=freshness)
    assert [(q.symbol, q.bid, q.ask) for q in batch.quotes] == [("BCAT", 20.5, 20.6)]
    assert batch.unmatched == ("NOPE",)
    assert {(q.source, q.fetched_at, q.fresh_until) for q in batch.quotes} == {
        ("polygon", clock.now, FRESH_UNTIL)
    }
    (request,) = _upstream(sent)
    assert dict(request.url.query) == {"tickers": "BCAT,NOPE"}
    _assert_key_only_in_header(sent, emulator)


async def test_no_symbols_calls_nothing_and_too_many_are_refused(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """An empty list would fetch every ticker: it returns empty without a call; over batch_size raises."""
    provider = _provider(session, emulator, clock, batch_size=2)
    batch = await provider.fetch_quotes([], freshness=freshness)
    assert (batch.quotes, batch.unmatched) == ((), ())
    with pytest.raises(ValueError, match=r"3 symbols exceed batch_size=2"):
        await provider.fetch_quotes(["A", "B", "C"], freshness=freshness)
    assert _upstream(sent) == []


async def test_aggs_pages_are_joined_and_next_url_is_rewritten_onto_base_url(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """next_url naming api.massive.com is followed on our base_url, with the key in the header only."""
    first_path = "/v2/aggs/ticker/AAPL/range/1/day/2020-01-01/2020-01-10"
    next_path = "/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10"
    page_two = {
        **AGGS,
        "results": [{"o": 74.0, "h": 75.0, "l": 73.0, "c": 74.5, "v": 1000, "vw": 74.2, "t": 1578286800000}],
    }
    del page_two["next_url"]
    await _serve(session, emulator, first_path, AGGS)
    await _serve(session, emulator, next_path, page_two)
    history = await _provider(session, emulator, clock).fetch_history(
        "AAPL", "1d", date(2020, 1, 1), date(2020, 1, 10), freshness=freshness
    )
    assert history is not None
    assert [b.close for b in history.bars] == [75.0875, 74.3575, 74.5]
    first, second = _upstream(sent)
    assert first.url.path == first_path
    assert dict(first.url.query) == {"adjusted": "true", "sort": "asc", "limit": "50000"}
    assert second.url.path == next_path
    assert dict(second.url.query) == {"cursor": "bGltaXQ9MiZzb3J0PWFzYw"}
    assert "massive" not in str(second.url)
    _assert_key_only_in_header(sent, emulator)


@pytest.mark.parametrize(
    ("interval", "span"), [("1d", "1/day"), ("1m", "1/minute"), ("5m", "5/minute"), ("15m", "15/minute")]
)
async def test_history_paths_name_the_bar_length(
    emulator: RunningEmulator,
    session: aiohttp.ClientSession,
    sent: list[SentRequest],
    clock: FakeClock,
    interval: Any,
    span: str,
) -> None:
    """Each bar length maps to its multiplier/timespan; an empty result (resultsCount 0) is None."""
    path = f"/v2/aggs/ticker/XXXX/range/{span}/2024-06-03/2024-06-07"
    await _serve(session, emulator, path, AGGS_EMPTY)
    history = await _provider(session, emulator, clock).fetch_history(
        "XXXX", interval, date(2024, 6, 3), date(2024, 6, 7), freshness=freshness
    )
    assert history is None
    assert [s.url.path for s in _upstream(sent)] == [path]


async def test_chain_pages_are_followed_with_the_strike_filter(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """The chain asks for the date, 250 a page and the strike bounds; pages are joined and sorted."""
    path = "/v3/snapshot/options/AAPL"
    put = {
        **AAPL_CALL,
        "details": {**AAPL_CALL["details"], "contract_type": "put", "ticker": "O:AAPL230616P00150000"},
    }
    await _serve(
        session,
        emulator,
        path,
        {"status": "OK", "results": [put], "next_url": f"https://api.massive.com{path}?cursor=p2"},
    )
    await _serve(session, emulator, path, {"status": "DELAYED", "results": [AAPL_CALL]})
    chain = await _provider(session, emulator, clock).fetch_chain(
        "AAPL", JUNE_16, freshness=freshness, strikes=StrikeRange(140, 160)
    )
    assert chain is not None
    assert [(c.strike, c.option_type) for c in chain.contracts] == [(150.0, "call"), (150.0, "put")]
    assert (chain.symbol, chain.underlying_price, chain.greeks_updated_at) == ("AAPL", 159.9606, None)
    first, second = _upstream(sent)
    assert dict(first.url.query) == {
        "expiration_date": "2023-06-16",
        "limit": "250",
        "strike_price.gte": "140.0",
        "strike_price.lte": "160.0",
    }
    assert dict(second.url.query) == {"cursor": "p2"}
    _assert_key_only_in_header(sent, emulator)


async def test_empty_chain_is_none(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A chain snapshot with no results is no chain."""
    await _serve(session, emulator, "/v3/snapshot/options/NOPE", {"status": "OK", "results": []})
    assert await _provider(session, emulator, clock).fetch_chain("NOPE", JUNE_16, freshness=freshness) is None


async def test_paging_stops_after_the_cap(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """A next_url that never ends fails after MAX_PAGES requests instead of looping."""
    path = "/v3/snapshot/options/LOOP"
    endless = {
        "status": "OK",
        "results": [AAPL_CALL],
        "next_url": f"https://api.massive.com{path}?cursor=again",
    }
    await _serve(session, emulator, path, endless, times=MAX_PAGES + 5)
    with pytest.raises(UpstreamBadPayload, match=rf"still a next_url after {MAX_PAGES} pages"):
        await _provider(session, emulator, clock).fetch_chain("LOOP", JUNE_16, freshness=freshness)
    assert len(_upstream(sent)) == MAX_PAGES


async def test_a_next_url_without_a_path_is_refused(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """A next_url like `@evil.example/x` would change our host when appended: it is refused."""
    path = "/v3/snapshot/options/AAPL"
    await _serve(
        session, emulator, path, {"status": "OK", "results": [AAPL_CALL], "next_url": "@evil.example/x"}
    )
    with pytest.raises(UpstreamBadPayload, match=r"next_url = '@evil.example/x'"):
        await _provider(session, emulator, clock).fetch_chain("AAPL", JUNE_16, freshness=freshness)
    assert len(_upstream(sent)) == 1


async def test_a_429_is_waited_out_then_retried(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Polygon's 429 has no rate headers: the gate backs off its default minute, then the retry succeeds."""
    await _serve(session, emulator, SNAPSHOT_ENDPOINT, RATE_LIMITED, status=429)
    await _serve(session, emulator, SNAPSHOT_ENDPOINT, SNAPSHOT)
    batch = await _provider(session, emulator, clock).fetch_quotes(["BCAT"], freshness=freshness)
    assert [q.symbol for q in batch.quotes] == ["BCAT"]
    assert emulator.calls(SNAPSHOT_ENDPOINT) == {"429": 1, "200": 1}
    assert clock.slept_s
    assert clock.slept_s[0] >= 60


async def test_a_403_is_an_auth_error_quoting_polygon_without_the_key(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """403 NOT_AUTHORIZED: UpstreamAuthError with Polygon's message and the plan/key hint; no key."""
    echoing = {**NOT_AUTHORIZED, "message": f"{NOT_AUTHORIZED['message']} (key {KEY})"}
    await _serve(session, emulator, SNAPSHOT_ENDPOINT, echoing, status=403)
    with pytest.raises(UpstreamAuthError) as raised:
        await _provider(session, emulator, clock).fetch_quotes(["BCAT"], freshness=freshness)
    text = str(raised.value)
    assert text.startswith(f"polygon {SNAPSHOT_ENDPOINT}: HTTP 403 'You are not entitled to this data.")
    assert "plan may not include this endpoint" in text
    assert "POLYGON_API_KEY" in text
    assert KEY not in text


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        pytest.param(
            {"status": "ERROR", "request_id": "x", "error": f"bad key {KEY}"},
            UpstreamError,
            r"HTTP 200 with status 'ERROR': 'bad key \*\*\*'",
            id="error",
        ),
        pytest.param(
            NOT_AUTHORIZED, UpstreamAuthError, r"status 'NOT_AUTHORIZED': 'You are not entitled", id="auth"
        ),
    ],
)
async def test_a_200_with_an_error_status_is_an_error(
    emulator: RunningEmulator,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    body: dict[str, Any],
    error: type[UpstreamError],
    message: str,
) -> None:
    """status ERROR or NOT_AUTHORIZED on a 200 raises, quoting the message with the key cut out."""
    await _serve(session, emulator, SNAPSHOT_ENDPOINT, body)
    with pytest.raises(error, match=message) as raised:
        await _provider(session, emulator, clock).fetch_quotes(["BCAT"], freshness=freshness)
    assert KEY not in str(raised.value)


async def test_a_json_404_is_no_data_but_a_plain_404_is_an_error(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """404 "Ticker not found." gives None; a plain-text 404 (wrong base URL) raises UpstreamNotFound."""
    path = "/v2/aggs/ticker/NOPE/range/1/day/2024-06-03/2024-06-07"
    provider = _provider(session, emulator, clock)
    await _serve(session, emulator, path, NOT_FOUND, status=404)
    days = (date(2024, 6, 3), date(2024, 6, 7))
    assert await provider.fetch_history("NOPE", "1d", *days, freshness=freshness) is None
    await _serve(session, emulator, path, "404 page not found", status=404, content_type="text/plain")
    with pytest.raises(UpstreamNotFound, match=r"HTTP 404 '404 page not found'"):
        await provider.fetch_history("NOPE", "1d", *days, freshness=freshness)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param('{"status":"OK","tickers":[{"ticker":"BC', r"answer is not JSON", id="truncated"),
        pytest.param(
            {"status": "OK", "tickers": {"ticker": "BCAT"}}, r"tickers = .*valid list", id="not-a-list"
        ),
        pytest.param(["BCAT"], r"expected an object, got a JSON list", id="bare-list"),
    ],
)
async def test_bad_snapshot_bodies_are_bad_payloads(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock, body: Any, message: str
) -> None:
    """A truncated or mis-shaped snapshot raises UpstreamBadPayload naming the endpoint and field."""
    await _serve(session, emulator, SNAPSHOT_ENDPOINT, body)
    with pytest.raises(UpstreamBadPayload, match=message) as raised:
        await _provider(session, emulator, clock).fetch_quotes(["BCAT"], freshness=freshness)
    assert str(raised.value).startswith(f"polygon {SNAPSHOT_ENDPOINT}: ")


def _values(*pairs: tuple[int, float]) -> dict[str, Any]:
    return {"status": "OK", "results": {"values": [{"timestamp": t, "value": v} for t, v in pairs]}}


EMPTY_VALUES: dict[str, Any] = {"status": "OK", "results": {"values": []}}


async def test_indicators_take_the_newest_value_of_each_window(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """One call per window; values[0] of each; a window with no values is absent; as_of the newest."""
    spec = IndicatorSpec(sma=(20, 200), ema=(12,), rsi=(14,), macd=(12, 26, 9))
    await _serve(session, emulator, "/v1/indicators/sma/AAPL", SMA)  # window 20
    await _serve(session, emulator, "/v1/indicators/sma/AAPL", EMPTY_VALUES)  # window 200: too little history
    await _serve(
        session, emulator, "/v1/indicators/ema/AAPL", _values((1660881600000, 170.5), (1660795200000, 1.0))
    )
    await _serve(session, emulator, "/v1/indicators/rsi/AAPL", _values((1660881600000, 61.2)))
    await _serve(session, emulator, "/v1/indicators/macd/AAPL", MACD)
    indicators = await _provider(session, emulator, clock).fetch_indicators("aapl", spec, freshness=freshness)
    assert indicators is not None
    assert (indicators.symbol, indicators.interval, indicators.close) == ("AAPL", "1d", None)
    assert (indicators.sma, indicators.ema, indicators.rsi) == ({20: 140.139}, {12: 170.5}, {14: 61.2})
    assert indicators.macd is not None
    assert indicators.macd.model_dump() == {
        "fast": 12,
        "slow": 26,
        "signal_window": 9,
        "macd": 6.912856964275647,
        "signal": 49.504484615884834,
        "histogram": -42.59162765160919,
    }
    assert indicators.as_of == datetime(2022, 8, 19, 4, tzinfo=UTC)  # 1660881600000 ms
    assert (indicators.fetched_at, indicators.fresh_until) == (clock.now, FRESH_UNTIL)
    requests = _upstream(sent)
    assert len(requests) == 5  # next_url of the first SMA page is not followed: limit=1 is all we need
    assert dict(requests[1].url.query) == {
        "timespan": "day",
        "adjusted": "true",
        "series_type": "close",
        "order": "desc",
        "limit": "1",
        "window": "200",
    }
    macd_query = dict(requests[4].url.query)
    assert (macd_query["short_window"], macd_query["long_window"], macd_query["signal_window"]) == (
        "12",
        "26",
        "9",
    )
    assert "window" not in macd_query
    _assert_key_only_in_header(sent, emulator)


async def test_indicators_of_an_unknown_ticker_are_none(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Every call answering empty values (or a JSON 404) means the ticker is unknown: None."""
    spec = IndicatorSpec(sma=(20,), ema=(), rsi=(14,), macd=(12, 26, 9))
    await _serve(session, emulator, "/v1/indicators/sma/NOPE", EMPTY_VALUES)
    await _serve(session, emulator, "/v1/indicators/rsi/NOPE", {"status": "OK", "results": {}})
    await _serve(session, emulator, "/v1/indicators/macd/NOPE", NOT_FOUND, status=404)
    assert (
        await _provider(session, emulator, clock).fetch_indicators("NOPE", spec, freshness=freshness) is None
    )


async def test_a_macd_value_without_its_signal_is_a_bad_payload(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """MACD needs signal and histogram: a value without them rejects the fetch."""
    spec = IndicatorSpec(sma=(), ema=(), rsi=(), macd=(12, 26, 9))
    await _serve(session, emulator, "/v1/indicators/macd/AAPL", _values((1660881600000, 6.9)))
    with pytest.raises(UpstreamBadPayload, match=r"/v1/indicators/macd/AAPL: .*no signal or histogram"):
        await _provider(session, emulator, clock).fetch_indicators("AAPL", spec, freshness=freshness)
