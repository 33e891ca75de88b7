"""TradierProvider against the emulator: parsing quirks, batching, rate windows, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from emulator.state import EmulatorOptions, Fault
from reader import Quote
from tests.support import FakeClock, RunningEmulator
from worker.errors import (
    UpstreamAuthError,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from worker.providers.tradier import QUOTES_ENDPOINT, TradierProvider, parse_quotes
from worker.ratelimit import RateGate

KEY = "provider-test-key-42"
FRESH_UNTIL = datetime(2026, 11, 24, 15, 0, 20, tzinfo=UTC)


def freshness(fetched_at: datetime) -> datetime:
    """A schedule whose next refresh is always FRESH_UNTIL."""
    return FRESH_UNTIL


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _provider(
    session: aiohttp.ClientSession,
    base_url: str,
    clock: FakeClock,
    *,
    rate_per_min: int = 1000,
    concurrency: int = 4,
    timeout_s: float = 5.0,
    batch_size: int = 100,
    max_wait_s: float = 3600,  # tests of pacing queue many requests: let them wait as they need
) -> TradierProvider:
    gate = RateGate(
        "tradier", rate_per_min, concurrency, max_wait_s=max_wait_s, clock=clock, sleep=clock.sleep
    )
    return TradierProvider(
        session,
        base_url=base_url,
        api_key=KEY,
        gate=gate,
        batch_size=batch_size,
        timeout_s=timeout_s,
        clock=clock,
    )


# --- parsing the reference's shapes --------------------------------------------------------


SPY = {
    "symbol": "SPY",
    "description": "SPDR S&P 500",
    "exch": "P",
    "type": "etf",
    "last": 547.94,
    "change": 1.57,
    "volume": 16616657,
    "open": 547.16,
    "high": 550.28,
    "low": 546.67,
    "close": None,
    "bid": 547.95,
    "ask": 547.96,
    "change_percentage": 0.29,
    "average_volume": 57774558,
    "last_volume": 100,
    "trade_date": 1719589860990,
    "prevclose": 546.37,
    "week_52_high": 550.12,
    "week_52_low": 409.21,
    "bidsize": 2,
    "bidexch": "P",
    "bid_date": 1719589861000,
    "asksize": 2,
    "askexch": "Q",
    "ask_date": 1719589860000,
    "root_symbols": "SPY",
}


def test_parses_the_recorded_sandbox_quote() -> None:
    """The reference's recorded SPY quote parses field for field, dates from epoch ms."""
    quotes, unmatched = parse_quotes({"quotes": {"quote": [SPY]}})
    assert unmatched == []
    assert quotes[0].symbol == "SPY"
    assert quotes[0].last == 547.94
    assert quotes[0].trade_date == 1719589860990


@pytest.mark.parametrize(
    ("payload", "symbols", "unmatched"),
    [
        pytest.param({"quotes": {"quote": SPY}}, ["SPY"], [], id="single-object"),
        pytest.param(
            {"quotes": {"quote": {"symbol": "SPY", "last": 690.0}, "unmatched_symbols": {"symbol": "NOPE"}}},
            ["SPY"],
            ["NOPE"],
            id="one-unmatched-as-string",
        ),
        pytest.param(
            {"quotes": {"unmatched_symbols": {"symbol": ["NOPE", "ZZX"]}}},
            [],
            ["NOPE", "ZZX"],
            id="all-unmatched",
        ),
        pytest.param({"quotes": None}, [], [], id="null-wrapper"),
        pytest.param({"quotes": "null"}, [], [], id="string-null-wrapper"),
    ],
)
def test_quirky_shapes_parse(payload: Any, symbols: list[str], unmatched: list[str]) -> None:
    """Bare objects, null wrappers and unmatched symbols as string or list all parse."""
    quotes, got_unmatched = parse_quotes(payload)
    assert [q.symbol for q in quotes] == symbols
    assert got_unmatched == unmatched


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(
            {"quotes": {"quote": [SPY, {**SPY, "last": "abc"}]}}, r"quotes.quote\[1\].last = 'abc'", id="type"
        ),
        pytest.param({"quotes": {"quote": [{"last": 1.0}]}}, r"quotes.quote\[0\].symbol", id="no-symbol"),
        pytest.param(
            {"fault": {"faultstring": "x"}}, r"expected an object with 'quotes'", id="gateway-fault"
        ),
        pytest.param([SPY], r"expected an object with 'quotes'", id="bare-list"),
        pytest.param({"quotes": [SPY]}, r"quotes: expected an object", id="quotes-list"),
    ],
)
def test_malformed_payloads_are_rejected_whole_naming_the_field(payload: Any, message: str) -> None:
    """A wrong type or shape anywhere rejects the batch, naming the field."""
    with pytest.raises(UpstreamBadPayload, match=message):
        parse_quotes(payload)


async def test_zero_means_none_for_dates_and_52_week_figures(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Tradier's 0 for 'never' and 'unknown' becomes None; epoch ms becomes aware UTC."""
    body = {"quotes": {"quote": {**SPY, "trade_date": 0, "week_52_high": 0.0, "average_volume": 0}}}
    emulator.state.arm(
        Fault(path=QUOTES_ENDPOINT, status=200, body=_json(body), content_type="application/json")
    )
    batch = await _provider(session, emulator.url, clock).fetch_quotes(["SPY"], freshness=freshness)
    (quote,) = batch.quotes
    assert quote.trade_date is None
    assert quote.week_52_high is None
    assert quote.average_volume is None
    assert quote.week_52_low == 409.21
    assert quote.bid_date == datetime(2024, 6, 28, 15, 51, 1, tzinfo=UTC)


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


# --- against the emulator -------------------------------------------------------------------


async def test_fetch_stamps_quotes_and_reports_unmatched(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Quotes carry source, fetched_at (the clock) and fresh_until; unknown symbols are listed."""
    batch = await _provider(session, emulator.url, clock).fetch_quotes(
        ["AAPL", "NOPE", "MSFT"], freshness=freshness
    )
    assert [q.symbol for q in batch.quotes] == ["AAPL", "MSFT"]
    assert batch.unmatched == ("NOPE",)
    assert all(isinstance(q, Quote) for q in batch.quotes)
    assert {(q.source, q.fetched_at, q.fresh_until) for q in batch.quotes} == {
        ("tradier", clock.now, FRESH_UNTIL)
    }
    assert emulator.calls() == {"200": 1}


async def test_short_lists_use_get_and_long_lists_post(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Up to 50 symbols go in the query; more go in a form body, still one call per batch."""
    provider = _provider(session, emulator.url, clock)
    for size in (50, 51, 100):
        batch = await provider.fetch_quotes([f"S{i:03d}" for i in range(size)], freshness=freshness)
        assert len(batch.quotes) == size
    assert emulator.calls() == {"200": 3}
    assert emulator.state.stats()["methods"][QUOTES_ENDPOINT] == {"GET": 1, "POST": 2}
    with pytest.raises(ValueError, match=r"101 symbols exceed batch_size=100"):
        await provider.fetch_quotes([f"S{i:03d}" for i in range(101)], freshness=freshness)


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, rate_per_min=3)])
async def test_waits_for_the_announced_window_instead_of_drawing_a_429(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """With 3 calls per window and 7 to make, the provider sleeps to each window's end: no 429."""
    provider = _provider(session, emulator.url, clock, concurrency=1)
    started = clock.now
    for _ in range(7):
        batch = await provider.fetch_quotes(["AAPL"], freshness=lambda at: at + timedelta(seconds=15))
    assert emulator.calls() == {"200": 7}
    assert provider.gate.waits == 2
    assert clock.now - started >= timedelta(minutes=2)
    # fresh_until follows from when the answer came, after the waits, not from when the fetch began
    (quote,) = batch.quotes
    assert quote.fetched_at == clock.now
    assert quote.fresh_until == clock.now + timedelta(seconds=15)


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, rate_per_min=3)])
async def test_concurrent_batches_hold_back_for_requests_in_flight(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Several batches at once still stay inside the window; a 429 from elsewhere is waited out."""
    provider = _provider(session, emulator.url, clock, concurrency=3)
    await asyncio.gather(*(provider.fetch_quotes([f"S{i:03d}"], freshness=freshness) for i in range(9)))
    assert emulator.calls() == {"200": 9}  # no 429
    assert provider.gate.waits >= 2
    # A 429 (the budget spent by another process) is waited out, then the call succeeds.
    emulator.state.arm(Fault(path=QUOTES_ENDPOINT, status=429, body="quota", times=1))
    batch = await provider.fetch_quotes(["AAPL"], freshness=freshness)
    assert len(batch.quotes) == 1


async def test_a_429_whose_window_already_ended_by_our_clock_still_backs_off(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Clock skew: a 429 announcing a window end in our past waits at least a second, not zero."""
    provider = _provider(session, emulator.url, clock)
    past_ms = int((clock.now - timedelta(seconds=5)).timestamp() * 1000)
    headers = {"X-Ratelimit-Available": "0", "X-Ratelimit-Expiry": str(past_ms)}
    emulator.state.arm(Fault(path=QUOTES_ENDPOINT, status=429, body="quota", headers=headers))
    batch = await provider.fetch_quotes(["AAPL"], freshness=freshness)
    assert len(batch.quotes) == 1
    assert emulator.calls() == {"429": 1, "200": 1}
    assert clock.slept_s
    assert clock.slept_s[0] >= 1.0


async def test_a_window_too_far_away_fails_fast_instead_of_outwaiting_the_job(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A 429 whose window reopens past max_wait_s gives up at once with the time it reopens."""
    provider = _provider(session, emulator.url, clock, max_wait_s=30)
    emulator.state.arm(Fault(path=QUOTES_ENDPOINT, status=429, body="quota", times=5))
    with pytest.raises(UpstreamRateLimited, match=r"reopens at .* past the 30 s a request may wait"):
        await provider.fetch_quotes(["AAPL"], freshness=freshness)
    assert emulator.calls() == {"429": 1}
    assert clock.slept_s == []


async def test_the_configured_rate_holds_requests_beyond_the_burst(clock: FakeClock) -> None:
    """At 120/min the gate lets a burst of 4 through at once and holds the 5th for the refill."""
    gate = RateGate("tradier", 120, 50, clock=clock, sleep=clock.sleep)
    assert gate.burst == 4
    entered = 0
    release = asyncio.Event()

    async def one_request() -> None:
        nonlocal entered
        async with gate.slot():
            entered += 1
            await release.wait()

    tasks = [asyncio.create_task(one_request()) for _ in range(6)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert entered == 4  # the other two wait for the budget, not for a window
    release.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_pause_announced_while_queued_for_the_budget_still_holds(clock: FakeClock) -> None:
    """A request that was waiting for the budget when a 429 arrived waits out the window too."""
    gate = RateGate("tradier", 1200, 5, clock=clock, sleep=clock.sleep)  # burst 60, then one per 54 ms
    for _ in range(gate.burst):
        async with gate.slot():
            pass
    queued = asyncio.create_task(_enter(gate))
    await asyncio.sleep(0)
    await gate.throttled(clock.now + timedelta(seconds=30))
    await queued
    assert clock.slept_s
    assert clock.slept_s[0] >= 30


async def _enter(gate: RateGate) -> None:
    async with gate.slot():
        pass


async def test_persistent_429_gives_up_with_rate_limited(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Three 429s in a row raise UpstreamRateLimited after waiting between them."""
    emulator.state.arm(Fault(path=QUOTES_ENDPOINT, status=429, body="quota", times=3))
    provider = _provider(session, emulator.url, clock)
    with pytest.raises(UpstreamRateLimited, match=r"429 after 2 waits"):
        await provider.fetch_quotes(["AAPL"], freshness=freshness)
    assert emulator.calls() == {"429": 3}
    assert clock.slept_s  # it waited instead of hammering


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        pytest.param(
            Fault(path=QUOTES_ENDPOINT, status=401, body="Invalid Access Token", content_type="plain/text"),
            UpstreamAuthError,
            r"HTTP 401 'Invalid Access Token'; check TRADIER_API_KEY",
            id="401",
        ),
        pytest.param(
            Fault(path=QUOTES_ENDPOINT, status=502, body="<html>bad gateway</html>"),
            UpstreamUnavailable,
            r"HTTP 502",
            id="502",
        ),
        pytest.param(
            Fault(path=QUOTES_ENDPOINT, status=400, body="Missing symbols"),
            UpstreamError,
            r"HTTP 400",
            id="400",
        ),
        pytest.param(
            Fault(
                path=QUOTES_ENDPOINT,
                status=200,
                body="<quotes><quote/></quotes>",
                content_type="application/xml",
            ),
            UpstreamBadPayload,
            r"answer is not JSON: XML \(is Accept: application/json honoured\?\): '<quotes>",
            id="xml",
        ),
        pytest.param(
            Fault(path=QUOTES_ENDPOINT, status=200, body="", content_type="application/json"),
            UpstreamBadPayload,
            r"\(empty body\)",
            id="empty",
        ),
        pytest.param(
            Fault(path=QUOTES_ENDPOINT, status=200, delay_ms=800, body="{}"),
            UpstreamUnavailable,
            r"no answer within 0.3 s",
            id="timeout",
        ),
    ],
)
async def test_failures_map_to_errors_that_name_the_endpoint_and_never_the_key(
    emulator: RunningEmulator,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    fault: Fault,
    error: type[UpstreamError],
    message: str,
) -> None:
    """Each failure raises its error class with the provider, endpoint and reason; no key inside."""
    emulator.state.arm(fault)
    provider = _provider(session, emulator.url, clock, timeout_s=0.3)
    with pytest.raises(error, match=message) as raised:
        await provider.fetch_quotes(["AAPL"], freshness=freshness)
    assert str(raised.value).startswith(f"tradier {QUOTES_ENDPOINT}: ")
    assert KEY not in str(raised.value)
    assert KEY not in repr(provider)


async def test_an_upstream_echoing_the_key_does_not_put_it_in_the_error(
    emulator: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A proxy that echoes the Authorization header in its error body: the key is cut from the message."""
    emulator.state.arm(Fault(path=QUOTES_ENDPOINT, status=502, body=f"bad upstream for Bearer {KEY}"))
    emulator.state.arm(Fault(path=QUOTES_ENDPOINT, status=200, body=f"<html>{KEY}</html>"))
    provider = _provider(session, emulator.url, clock)
    for _ in range(2):
        with pytest.raises(UpstreamError) as raised:
            await provider.fetch_quotes(["AAPL"], freshness=freshness)
        assert KEY not in str(raised.value)
        assert "***" in str(raised.value)


async def test_connection_refused_is_unavailable(session: aiohttp.ClientSession, clock: FakeClock) -> None:
    """Nothing listening: UpstreamUnavailable naming the failure, not a traceback."""
    from devtools.redis_server import free_port

    provider = _provider(session, f"http://127.0.0.1:{free_port()}", clock, timeout_s=2)
    with pytest.raises(UpstreamUnavailable, match=r"connection failed"):
        await provider.fetch_quotes(["AAPL"], freshness=freshness)
