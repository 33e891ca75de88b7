"""TradierProvider's expirations, chains and bars: the reference's wire shapes, and calls via the emulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest

from tests.support import FakeClock, RunningEmulator, SentRequest, make_gate, recording_trace
from worker.errors import UpstreamAuthError, UpstreamBadPayload
from worker.providers.base import StrikeRange
from worker.providers.tradier import TradierProvider
from worker.providers.tradier_wire import (
    CHAINS_ENDPOINT,
    EXPIRATIONS_ENDPOINT,
    HISTORY_ENDPOINT,
    TIMESALES_ENDPOINT,
    parse_chain,
    parse_daily_history,
    parse_expirations,
    parse_timesales,
)

KEY = "tradier-datasets-key-77"
FRESH_UNTIL = datetime(2026, 11, 24, 15, 1, tzinfo=UTC)
JUNE_18 = date(2026, 6, 18)


def freshness(fetched_at: datetime) -> datetime:
    """A schedule whose next refresh is always FRESH_UNTIL."""
    return FRESH_UNTIL


# --- the reference's payloads (A.2-A.4), copied verbatim ------------------------------------

PLTR_CALL: dict[str, Any] = {
    "symbol": "PLTR260618C00013000",
    "description": "PLTR Jun 18 2026 $13.00 Call",
    "exch": "Z",
    "type": "option",
    "last": None,
    "change": None,
    "volume": 0,
    "open": None,
    "high": None,
    "low": None,
    "close": None,
    "bid": 14.75,
    "ask": 15.25,
    "underlying": "PLTR",
    "strike": 13.0,
    "greeks": {
        "delta": 0.9040,
        "gamma": 0.00744,
        "theta": -0.00372,
        "vega": 0.0614,
        "rho": 0.154,
        "phi": -0.456,
        "bid_iv": 0.575591,
        "mid_iv": 0.609209,
        "ask_iv": 0.642827,
        "smv_vol": 0.57,
        "updated_at": "2024-06-28 14:58:59",
    },
    "change_percentage": None,
    "average_volume": 0,
    "last_volume": 0,
    "trade_date": 0,
    "prevclose": None,
    "week_52_high": 0.0,
    "week_52_low": 0.0,
    "bidsize": 87,
    "bidexch": "Z",
    "bid_date": 1719589763000,
    "asksize": 6,
    "askexch": "T",
    "ask_date": 1719589760000,
    "open_interest": 0,
    "contract_size": 100,
    "expiration_date": "2026-06-18",
    "expiration_type": "weeklys",
    "option_type": "call",
    "root_symbol": "PLTR",
}


def _option(symbol: str, option_type: str, strike: float, **changes: Any) -> dict[str, Any]:
    """A variation of the recorded PLTR contract."""
    return {**PLTR_CALL, "symbol": symbol, "option_type": option_type, "strike": strike, **changes}


def _greeks(**changes: Any) -> dict[str, Any]:
    return {**PLTR_CALL["greeks"], **changes}


EXPIRATIONS_PLAIN = {"expirations": {"date": ["2024-06-28", "2024-07-05", "2024-07-12"]}}
EXPIRATIONS_WITH_STRIKES = {
    "expirations": {
        "expiration": [
            {
                "date": "2023-11-10",
                "contract_size": 100,
                "expiration_type": "weeklys",
                "strikes": {"strike": [12.0, 13.0, 14.0]},
            },
            {
                "date": "2023-11-17",
                "contract_size": 100,
                "expiration_type": "standard",
                "strikes": {"strike": [9.0, 10.0]},
            },
        ]
    }
}
AAPL_DAY = {
    "date": "2024-02-01",
    "open": 183.985,
    "high": 186.95,
    "low": 183.82,
    "close": 186.86,
    "volume": 64885408,
}
SALE = {
    "time": "2019-05-09T09:30:00",
    "timestamp": 1557408600,
    "price": 200.5,
    "open": 200.44,
    "high": 200.56,
    "low": 200.38,
    "close": 200.5,
    "volume": 66817,
    "vwap": 200.48,
}


# --- expirations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "dates"),
    [
        pytest.param(EXPIRATIONS_PLAIN, [date(2024, 6, 28), date(2024, 7, 5), date(2024, 7, 12)], id="dates"),
        pytest.param({"expirations": {"date": "2024-06-28"}}, [date(2024, 6, 28)], id="one-date-as-string"),
        pytest.param(EXPIRATIONS_WITH_STRIKES, [date(2023, 11, 10), date(2023, 11, 17)], id="objects"),
        pytest.param(
            {"expirations": {"expiration": {"date": "2023-11-17", "strikes": {"strike": 9.0}}}},
            [date(2023, 11, 17)],
            id="one-object-scalar-strike",
        ),
        pytest.param(
            {"expirations": {"date": ["2024-07-12", "2024-06-28", "2024-07-12"]}},
            [date(2024, 6, 28), date(2024, 7, 12)],
            id="unsorted-with-duplicates",
        ),
    ],
)
def test_expirations_of_every_shape_parse_sorted_and_unique(payload: Any, dates: list[date]) -> None:
    """Bare dates, a lone string, objects, a lone object: all give ascending unique dates."""
    assert parse_expirations(payload) == dates


@pytest.mark.parametrize("body", [None, "null", {"date": []}], ids=["null", "string-null", "empty"])
def test_no_expirations_is_none(body: Any) -> None:
    """`{"expirations": null}`, its `"null"` form and an empty list mean the underlying has no options."""
    assert parse_expirations({"expirations": body}) is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(
            {"expirations": {"date": ["2024-06-28", "soon"]}},
            r"expirations.date\[1\] = 'soon'",
            id="bad-date",
        ),
        pytest.param(
            {"expirations": {"expiration": [{"contract_size": 100}]}},
            r"expirations.expiration\[0\].date = .*Field required",
            id="no-date",
        ),
        pytest.param({"expirations": {"strikes": []}}, r"expected 'date' or 'expiration'", id="other-key"),
        pytest.param({"options": None}, r"expected an object with 'expirations'", id="wrong-wrapper"),
        pytest.param({"expirations": ["2024-06-28"]}, r"expirations: expected an object", id="list"),
    ],
)
def test_malformed_expirations_are_rejected_naming_the_field(payload: Any, message: str) -> None:
    """A bad date or shape rejects the whole answer, naming the field and the value."""
    with pytest.raises(UpstreamBadPayload, match=message) as raised:
        parse_expirations(payload)
    assert raised.value.endpoint == EXPIRATIONS_ENDPOINT


# --- chains ---------------------------------------------------------------------------------


def test_recorded_chain_element_maps_field_for_field() -> None:
    """The reference's PLTR contract: prices, volume, OI and every greek land in OptionContract."""
    rows = parse_chain({"options": {"option": [PLTR_CALL]}}, JUNE_18)
    assert rows is not None
    (contract,) = rows.contracts
    assert contract._asdict() == {
        "symbol": "PLTR260618C00013000",
        "option_type": "call",
        "strike": 13.0,
        "bid": 14.75,
        "ask": 15.25,
        "last": None,
        "change": None,
        "volume": 0,
        "open_interest": 0,
        "bid_iv": 0.575591,
        "mid_iv": 0.609209,
        "ask_iv": 0.642827,
        "delta": 0.9040,
        "gamma": 0.00744,
        "theta": -0.00372,
        "vega": 0.0614,
        "rho": 0.154,
    }
    assert rows.greeks_updated_at == datetime(2024, 6, 28, 14, 58, 59, tzinfo=UTC)


def test_a_single_option_object_parses_like_a_list() -> None:
    """`options.option` as a bare object is one contract."""
    rows = parse_chain({"options": {"option": PLTR_CALL}}, JUNE_18)
    assert rows is not None
    assert [c.symbol for c in rows.contracts] == ["PLTR260618C00013000"]


def test_null_or_absent_greeks_and_zero_ivs_become_none() -> None:
    """Greeks null or absent give None greeks; IV 0.0 is None; mid_iv 0 falls back to smv_vol."""
    no_greeks = {k: v for k, v in _option("PLTR260618P00013000", "put", 13.0).items() if k != "greeks"}
    options = [
        _option("PLTR260618C00014000", "call", 14.0, greeks=None),
        no_greeks,
        _option("PLTR260618C00015000", "call", 15.0, greeks=_greeks(bid_iv=0.0, mid_iv=0.0, smv_vol=0.57)),
        _option("PLTR260618C00016000", "call", 16.0, greeks=_greeks(bid_iv=0.0, mid_iv=0.0, smv_vol=0.0)),
        _option("PLTR260618C00017000", "call", 17.0, greeks=_greeks(mid_iv=None, smv_vol=0.61)),
    ]
    rows = parse_chain({"options": {"option": options}}, JUNE_18)
    assert rows is not None
    by_symbol = {c.symbol: c for c in rows.contracts}
    for symbol in ("PLTR260618C00014000", "PLTR260618P00013000"):
        contract = by_symbol[symbol]
        assert (contract.delta, contract.mid_iv, contract.rho, contract.bid_iv) == (None, None, None, None)
        assert contract.bid == 14.75  # the quote is kept without greeks
    fallback = by_symbol["PLTR260618C00015000"]
    assert (fallback.bid_iv, fallback.mid_iv, fallback.ask_iv) == (None, 0.57, 0.642827)
    assert by_symbol["PLTR260618C00016000"].mid_iv is None  # no usable IV at all
    assert by_symbol["PLTR260618C00017000"].mid_iv == 0.61


def test_chain_keeps_the_asked_date_and_strikes_sorted_calls_first() -> None:
    """Other roots' dates are dropped, strikes filtered, and rows sorted by strike, call before put."""
    options = [
        _option("PLTR260618P00020000", "put", 20.0),
        _option("PLTR260618C00020000", "call", 20.0),
        _option("PLTR260618C00013000", "call", 13.0),
        _option("PLTR1260618C00015000", "call", 15.0),
        _option("PLTR260625C00015000", "call", 15.0, expiration_date="2026-06-25"),
        _option("PLTR260618C00050000", "call", 50.0),
    ]
    rows = parse_chain({"options": {"option": options}}, JUNE_18, StrikeRange(10.0, 20.0))
    assert rows is not None
    assert [(c.strike, c.option_type, c.symbol) for c in rows.contracts] == [
        (13.0, "call", "PLTR260618C00013000"),
        (15.0, "call", "PLTR1260618C00015000"),
        (20.0, "call", "PLTR260618C00020000"),
        (20.0, "put", "PLTR260618P00020000"),
    ]


def test_greeks_updated_at_is_the_latest_read_as_utc() -> None:
    """The chain's greeks time is the newest `updated_at` of its contracts, read as UTC."""
    options = [
        _option("A", "call", 1.0, greeks=_greeks(updated_at="2024-06-28 13:00:00")),
        _option("B", "call", 2.0, greeks=_greeks(updated_at="2024-06-28 14:59:10")),
        _option("C", "call", 3.0, greeks=None),
    ]
    rows = parse_chain({"options": {"option": options}}, JUNE_18)
    assert rows is not None
    assert rows.greeks_updated_at == datetime(2024, 6, 28, 14, 59, 10, tzinfo=UTC)
    only_null = parse_chain({"options": {"option": [options[2]]}}, JUNE_18)
    assert only_null is not None
    assert only_null.greeks_updated_at is None


@pytest.mark.parametrize(
    "payload",
    [
        {"options": None},
        {"options": "null"},
        {"options": {"option": _option("X", "call", 1.0, expiration_date="2026-06-25")}},
    ],
    ids=["null", "string-null", "other-date-only"],
)
def test_no_chain_for_the_date_is_none(payload: Any) -> None:
    """A null wrapper, or only contracts of other dates, is no chain."""
    assert parse_chain(payload, JUNE_18) is None


@pytest.mark.parametrize(
    ("option", "message"),
    [
        pytest.param({**PLTR_CALL, "strike": "13,0"}, r"options.option\[1\].strike = '13,0'", id="strike"),
        pytest.param({**PLTR_CALL, "option_type": "straddle"}, r"option_type = 'straddle'", id="type"),
        pytest.param(
            _option("X", "call", 1.0, greeks=_greeks(updated_at="yesterday")), r"updated_at", id="time"
        ),
        pytest.param({**PLTR_CALL, "greeks": {"delta": "high"}}, r"greeks.delta = 'high'", id="greek"),
    ],
)
def test_a_bad_contract_rejects_the_whole_chain(option: dict[str, Any], message: str) -> None:
    """One wrong-typed field anywhere rejects the chain, naming the field and value."""
    with pytest.raises(UpstreamBadPayload, match=message) as raised:
        parse_chain({"options": {"option": [PLTR_CALL, option]}}, JUNE_18)
    assert raised.value.endpoint == CHAINS_ENDPOINT


# --- bars -----------------------------------------------------------------------------------


def test_daily_bars_start_at_midnight_new_york_in_utc() -> None:
    """The recorded AAPL day starts 05:00 UTC in winter; a summer day at 04:00 UTC; sorted, unique."""
    summer = {**AAPL_DAY, "date": "2024-07-01", "close": 190.0}
    again = {**AAPL_DAY, "close": 187.0}
    bars = parse_daily_history({"history": {"day": [summer, AAPL_DAY, again]}})
    assert bars is not None
    assert [(b.start, b.close) for b in bars] == [
        (datetime(2024, 2, 1, 5, tzinfo=UTC), 187.0),
        (datetime(2024, 7, 1, 4, tzinfo=UTC), 190.0),
    ]
    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].volume, bars[0].vwap) == (
        183.985,
        186.95,
        183.82,
        64885408,
        None,
    )


def test_one_day_comes_as_an_object_and_none_as_null() -> None:
    """`history.day` as a bare object is one bar; `{"history": null}` (or "null") is no history."""
    bars = parse_daily_history({"history": {"day": AAPL_DAY}})
    assert bars is not None
    assert [b.close for b in bars] == [186.86]
    assert parse_daily_history({"history": None}) is None
    assert parse_daily_history({"history": "null"}) is None


def test_daily_bar_with_a_bad_field_is_rejected() -> None:
    """A string volume rejects the history, naming `history.day[0].volume`."""
    with pytest.raises(UpstreamBadPayload, match=r"history.day\[0\].volume = 'lots'"):
        parse_daily_history({"history": {"day": [{**AAPL_DAY, "volume": "lots"}]}})


def test_timesales_bars_start_at_their_epoch_second() -> None:
    """`timestamp` is epoch seconds (09:30 ET = 13:30 UTC in May); OHLC, volume and vwap carry over."""
    later = {**SALE, "time": "2019-05-09T09:31:00", "timestamp": 1557408660, "close": 200.7}
    bars = parse_timesales({"series": {"data": [later, SALE]}})
    assert bars is not None
    assert [b.start for b in bars] == [
        datetime(2019, 5, 9, 13, 30, tzinfo=UTC),
        datetime(2019, 5, 9, 13, 31, tzinfo=UTC),
    ]
    assert bars[0]._asdict() == {
        "start": datetime(2019, 5, 9, 13, 30, tzinfo=UTC),
        "open": 200.44,
        "high": 200.56,
        "low": 200.38,
        "close": 200.5,
        "volume": 66817,
        "vwap": 200.48,
    }


def test_timesales_without_timestamp_read_time_as_new_york() -> None:
    """No `timestamp`: `time` is New York wall-clock; a bar with only `price` uses it for OHLC."""
    no_stamp = {k: v for k, v in SALE.items() if k != "timestamp"}
    price_only = {"time": "2019-12-02T09:35:00", "price": 264.1, "volume": 1000}
    bars = parse_timesales({"series": {"data": [no_stamp, price_only]}})
    assert bars is not None
    assert bars[0].start == datetime(2019, 5, 9, 13, 30, tzinfo=UTC)  # EDT
    assert bars[1].start == datetime(2019, 12, 2, 14, 35, tzinfo=UTC)  # EST
    assert (bars[1].open, bars[1].high, bars[1].low, bars[1].close) == (264.1, 264.1, 264.1, 264.1)


def test_one_sale_as_an_object_and_null_series() -> None:
    """`series.data` as a bare object is one bar; `{"series": null}` is no bars."""
    bars = parse_timesales({"series": {"data": SALE}})
    assert bars is not None
    assert len(bars) == 1
    assert parse_timesales({"series": None}) is None
    assert parse_timesales({"series": "null"}) is None


@pytest.mark.parametrize(
    ("sale", "message"),
    [
        pytest.param(
            {"price": 1.0, "volume": 1}, r"series.data\[0\] = .*neither 'timestamp' nor 'time'", id="no-time"
        ),
        pytest.param({"timestamp": 1557408600, "volume": 1}, r"no 'price'", id="no-prices"),
        pytest.param({**SALE, "volume": None}, r"series.data\[0\].volume = None", id="no-volume"),
    ],
)
def test_incomplete_sales_are_rejected(sale: dict[str, Any], message: str) -> None:
    """A sale without a time, without prices or without volume rejects the series."""
    with pytest.raises(UpstreamBadPayload, match=message):
        parse_timesales({"series": {"data": [sale]}})


# --- through the emulator -------------------------------------------------------------------


@pytest.fixture
async def sent() -> list[SentRequest]:
    return []


@pytest.fixture
async def session(sent: list[SentRequest]) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trace_configs=[recording_trace(sent)]) as client:
        yield client


def _provider(session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock) -> TradierProvider:
    return TradierProvider(
        session,
        base_url=emulator.url,
        api_key=KEY,
        gate=make_gate("tradier", clock),
        batch_size=100,
        timeout_s=5.0,
        clock=clock,
    )


async def _serve(
    session: aiohttp.ClientSession, emulator: RunningEmulator, path: str, body: Any, *, status: int = 200
) -> None:
    """Arm the emulator to answer `path` once with `body` (JSON unless a str), via its control API."""
    text = body if isinstance(body, str) else json.dumps(body)
    fault = {"path": path, "status": status, "body": text, "content_type": "application/json", "times": 1}
    async with session.post(f"{emulator.url}/_emulator/faults", json=fault) as response:
        assert response.status == 200, await response.text()


def _only_call(sent: list[SentRequest], path: str) -> SentRequest:
    calls = [s for s in sent if s.url.path == path]
    assert len(calls) == 1
    return calls[0]


async def test_fetch_expirations_asks_for_all_roots_and_stamps_the_answer(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """One GET with includeAllRoots=true and the Bearer key; dates ascending, envelope from the clock."""
    await _serve(session, emulator, EXPIRATIONS_ENDPOINT, EXPIRATIONS_PLAIN)
    result = await _provider(session, emulator, clock).fetch_expirations("pltr", freshness=freshness)
    assert result is not None
    assert result.symbol == "PLTR"
    assert result.dates == (date(2024, 6, 28), date(2024, 7, 5), date(2024, 7, 12))
    assert (result.source, result.fetched_at, result.fresh_until) == ("tradier", clock.now, FRESH_UNTIL)
    call = _only_call(sent, EXPIRATIONS_ENDPOINT)
    assert dict(call.url.query) == {"symbol": "PLTR", "includeAllRoots": "true"}
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.headers["Accept"] == "application/json"


async def test_fetch_expirations_null_is_none(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """`{"expirations": null}` over HTTP gives None, not an empty item."""
    await _serve(session, emulator, EXPIRATIONS_ENDPOINT, {"expirations": None})
    assert await _provider(session, emulator, clock).fetch_expirations("NOPE", freshness=freshness) is None


async def test_fetch_chain_asks_for_greeks_and_builds_the_chain(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """The chain call sends expiration and greeks=true; the chain has no underlying price from Tradier."""
    put = _option("PLTR260618P00013000", "put", 13.0, bid=0.01, greeks=None)
    await _serve(session, emulator, CHAINS_ENDPOINT, {"options": {"option": [put, PLTR_CALL]}})
    chain = await _provider(session, emulator, clock).fetch_chain("pltr", JUNE_18, freshness=freshness)
    assert chain is not None
    assert (chain.symbol, chain.expiration, chain.underlying_price) == ("PLTR", JUNE_18, None)
    assert chain.greeks_updated_at == datetime(2024, 6, 28, 14, 58, 59, tzinfo=UTC)
    assert [(c.option_type, c.bid) for c in chain.contracts] == [("call", 14.75), ("put", 0.01)]
    assert (chain.source, chain.fetched_at, chain.fresh_until) == ("tradier", clock.now, FRESH_UNTIL)
    call = _only_call(sent, CHAINS_ENDPOINT)
    assert dict(call.url.query) == {"symbol": "PLTR", "expiration": "2026-06-18", "greeks": "true"}


async def test_fetch_chain_null_options_is_none(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """`{"options": null}` (no chain for that date) gives None."""
    await _serve(session, emulator, CHAINS_ENDPOINT, {"options": None})
    assert await _provider(session, emulator, clock).fetch_chain("PLTR", JUNE_18, freshness=freshness) is None


async def test_fetch_daily_history_uses_the_history_endpoint(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """interval 1d: /v1/markets/history with interval=daily and the dates; bars at midnight ET."""
    await _serve(session, emulator, HISTORY_ENDPOINT, {"history": {"day": AAPL_DAY}})
    history = await _provider(session, emulator, clock).fetch_history(
        "aapl", "1d", date(2024, 2, 1), date(2024, 2, 2), freshness=freshness
    )
    assert history is not None
    assert (history.symbol, history.interval) == ("AAPL", "1d")
    assert [(b.start, b.close) for b in history.bars] == [(datetime(2024, 2, 1, 5, tzinfo=UTC), 186.86)]
    call = _only_call(sent, HISTORY_ENDPOINT)
    assert dict(call.url.query) == {
        "symbol": "AAPL",
        "interval": "daily",
        "start": "2024-02-01",
        "end": "2024-02-02",
    }


@pytest.mark.parametrize(("interval", "wire_interval"), [("1m", "1min"), ("5m", "5min"), ("15m", "15min")])
async def test_fetch_intraday_history_uses_timesales_over_the_whole_extended_session(
    emulator: RunningEmulator,
    session: aiohttp.ClientSession,
    sent: list[SentRequest],
    clock: FakeClock,
    interval: Any,
    wire_interval: str,
) -> None:
    """Intraday: /v1/markets/timesales from 04:00 to 20:00 ET with session_filter=all."""
    await _serve(session, emulator, TIMESALES_ENDPOINT, {"series": {"data": [SALE]}})
    history = await _provider(session, emulator, clock).fetch_history(
        "AAPL", interval, date(2019, 5, 9), date(2019, 5, 10), freshness=freshness
    )
    assert history is not None
    assert history.interval == interval
    assert [b.start for b in history.bars] == [datetime(2019, 5, 9, 13, 30, tzinfo=UTC)]
    call = _only_call(sent, TIMESALES_ENDPOINT)
    assert dict(call.url.query) == {
        "symbol": "AAPL",
        "interval": wire_interval,
        "start": "2019-05-09 04:00",
        "end": "2019-05-10 20:00",
        "session_filter": "all",
    }


async def test_fetch_history_null_is_none(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """`{"history": null}` and `{"series": null}` give None."""
    provider = _provider(session, emulator, clock)
    await _serve(session, emulator, HISTORY_ENDPOINT, {"history": None})
    await _serve(session, emulator, TIMESALES_ENDPOINT, {"series": None})
    day, start = date(2024, 2, 1), date(2024, 2, 1)
    assert await provider.fetch_history("NOPE", "1d", start, day, freshness=freshness) is None
    assert await provider.fetch_history("NOPE", "5m", start, day, freshness=freshness) is None


async def test_an_unknown_interval_is_refused_before_any_call(
    emulator: RunningEmulator, session: aiohttp.ClientSession, sent: list[SentRequest], clock: FakeClock
) -> None:
    """A bar length the cache does not know raises ValueError and calls nothing."""
    day = date(2024, 2, 1)
    with pytest.raises(ValueError, match=r"interval='1h'"):
        await _provider(session, emulator, clock).fetch_history("AAPL", "1h", day, day, freshness=freshness)  # type: ignore[arg-type]
    assert sent == []


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        pytest.param(
            CHAINS_ENDPOINT, '{"options": {"option": [{"symbol": "PLTR', r"answer is not JSON", id="truncated"
        ),
        pytest.param(
            CHAINS_ENDPOINT,
            {"options": {"option": [{**PLTR_CALL, "bid": "n/a"}]}},
            r"options.option\[0\].bid = 'n/a'",
            id="wrong-type",
        ),
    ],
)
async def test_bad_chain_payloads_raise_bad_payload_naming_endpoint(
    emulator: RunningEmulator,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    path: str,
    body: Any,
    message: str,
) -> None:
    """A truncated body or a wrong-typed field raises UpstreamBadPayload for the chains endpoint."""
    await _serve(session, emulator, path, body)
    with pytest.raises(UpstreamBadPayload, match=message) as raised:
        await _provider(session, emulator, clock).fetch_chain("PLTR", JUNE_18, freshness=freshness)
    assert str(raised.value).startswith(f"tradier {CHAINS_ENDPOINT}: ")


@pytest.mark.parametrize(
    ("endpoint", "fetch"),
    [
        (EXPIRATIONS_ENDPOINT, lambda p: p.fetch_expirations("PLTR", freshness=freshness)),
        (CHAINS_ENDPOINT, lambda p: p.fetch_chain("PLTR", JUNE_18, freshness=freshness)),
        (HISTORY_ENDPOINT, lambda p: p.fetch_history("PLTR", "1d", JUNE_18, JUNE_18, freshness=freshness)),
        (TIMESALES_ENDPOINT, lambda p: p.fetch_history("PLTR", "5m", JUNE_18, JUNE_18, freshness=freshness)),
    ],
)
async def test_a_bad_token_on_any_dataset_is_an_auth_error_without_the_key(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock, endpoint: str, fetch: Any
) -> None:
    """401 on every dataset's call: UpstreamAuthError with the hint; the key the body echoes is cut out."""
    fault = {
        "path": endpoint,
        "status": 401,
        "body": f"Invalid Access Token {KEY}",
        "content_type": "text/plain",
    }
    async with session.post(f"{emulator.url}/_emulator/faults", json=fault) as response:
        assert response.status == 200
    with pytest.raises(
        UpstreamAuthError, match=r"HTTP 401 'Invalid Access Token \*\*\*'; check TRADIER_API_KEY"
    ) as raised:
        await fetch(_provider(session, emulator, clock))
    assert KEY not in str(raised.value)
