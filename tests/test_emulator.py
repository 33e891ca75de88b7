"""The emulator speaks Tradier's /v1/markets/quotes as the upstream reference describes it."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from devtools.redis_server import free_port, port_open
from emulator.market import Market
from emulator.state import EmulatorOptions
from tests.support import TUESDAY_10_ET, FakeClock, RunningEmulator, start_emulator

JSON = {"Authorization": "Bearer t0k", "Accept": "application/json"}


async def _get(
    emulator: RunningEmulator, symbols: str, headers: dict[str, str] = JSON
) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        response = await session.get(
            f"{emulator.url}/v1/markets/quotes", params={"symbols": symbols}, headers=headers
        )
        await response.read()
        return response


async def _json(emulator: RunningEmulator, symbols: str) -> Any:
    response = await _get(emulator, symbols)
    assert response.status == 200
    return json.loads(await response.read())


async def test_one_symbol_is_a_bare_object_and_several_a_list(emulator: RunningEmulator) -> None:
    """`quote` is an object for one symbol and a list for several, in request order."""
    one = await _json(emulator, "AAPL")
    assert isinstance(one["quotes"]["quote"], dict)
    assert one["quotes"]["quote"]["symbol"] == "AAPL"
    assert "unmatched_symbols" not in one["quotes"]
    several = await _json(emulator, "aapl,MSFT,SPY")
    assert [q["symbol"] for q in several["quotes"]["quote"]] == ["AAPL", "MSFT", "SPY"]


async def test_unknown_symbols_go_under_unmatched_symbols(emulator: RunningEmulator) -> None:
    """One unknown is a string, several a list; all unknown drops the `quote` key."""
    mixed = await _json(emulator, "AAPL,NOPE")
    assert mixed["quotes"]["unmatched_symbols"] == {"symbol": "NOPE"}
    assert mixed["quotes"]["quote"]["symbol"] == "AAPL"
    several = await _json(emulator, "ZZA,AAPL,ZZB")
    assert several["quotes"]["unmatched_symbols"] == {"symbol": ["ZZA", "ZZB"]}
    none = await _json(emulator, "NOPE")
    assert none == {"quotes": {"unmatched_symbols": {"symbol": "NOPE"}}}


async def test_quote_fields_follow_the_market_with_epoch_ms_dates(
    emulator: RunningEmulator, clock: FakeClock
) -> None:
    """Values are the seeded market's at the emulator's clock; dates are epoch milliseconds."""
    quote = (await _json(emulator, "AAPL"))["quotes"]["quote"]
    expected = Market(seed=11).quote("AAPL", clock.now)
    assert expected is not None
    assert quote["last"] == expected.last
    assert quote["prevclose"] == expected.prevclose
    assert quote["trade_date"] == int(clock.now.timestamp() * 1000)
    assert quote["close"] is None  # during the session
    assert quote["change_percentage"] == round(
        (expected.last - expected.prevclose) / expected.prevclose * 100, 2
    )
    assert quote["bid"] < quote["ask"]
    for field in ("description", "exch", "type", "volume", "open", "high", "low", "week_52_high", "bidsize"):
        assert quote[field] is not None, field


def test_market_is_deterministic_and_moves_between_seconds() -> None:
    """Same seed and instant, same price; a second later it moves a little; another seed differs."""
    at = TUESDAY_10_ET
    prices = [Market(seed=3).price("AAPL", at + timedelta(seconds=s)) for s in range(120)]
    assert prices[0] == Market(seed=3).price("AAPL", at)
    assert len(set(prices)) > 10  # it moves...
    steps = [abs(b - a) / a for a, b in itertools.pairwise(prices)]
    assert max(steps) < 0.005  # ...but by realistic amounts per second
    assert Market(seed=4).price("AAPL", at) != prices[0]


def test_market_freezes_the_last_trade_while_closed() -> None:
    """On Thanksgiving the last trade is the Wednesday post-market's; the close is set."""
    market = Market(seed=1)
    thanksgiving_noon = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    quote = market.quote("MSFT", thanksgiving_noon)
    assert quote is not None
    wednesday_post_end = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)  # 20:00 ET
    assert quote.trade_time == wednesday_post_end - timedelta(seconds=1)
    assert quote.close == market.price("MSFT", datetime(2026, 11, 25, 21, 0, tzinfo=UTC))
    later = market.quote("MSFT", thanksgiving_noon + timedelta(hours=3))
    assert later is not None
    assert later.last == quote.last


async def test_post_form_body_is_the_same_endpoint(emulator: RunningEmulator) -> None:
    """POST with a form body answers like GET."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{emulator.url}/v1/markets/quotes", data={"symbols": "AAPL,MSFT"}, headers=JSON
        ) as response,
    ):
        body = await response.json()
    assert [q["symbol"] for q in body["quotes"]["quote"]] == ["AAPL", "MSFT"]


@pytest.mark.parametrize("authorization", [None, "Bearer ", "Basic abc", "bearer t0k"])
async def test_missing_or_malformed_bearer_is_a_plain_text_401(
    emulator: RunningEmulator, authorization: str | None
) -> None:
    """No valid Bearer header: 401, plain text 'Invalid Access Token', counted in stats."""
    headers = {"Accept": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await _get(emulator, "AAPL", headers)
    assert response.status == 401
    assert response.content_type == "plain/text"
    assert (await response.read()) == b"Invalid Access Token"
    assert emulator.calls() == {"401": 1}


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, api_keys=frozenset({"good"}))])
async def test_configured_api_keys_refuse_other_tokens(emulator: RunningEmulator) -> None:
    """With --api-key set, only that token is accepted."""
    assert (await _get(emulator, "AAPL")).status == 401
    assert (await _get(emulator, "AAPL", {**JSON, "Authorization": "Bearer good"})).status == 200


async def test_xml_is_the_default_without_accept_json(emulator: RunningEmulator) -> None:
    """Without Accept: application/json the answer is XML, as Tradier's default."""
    response = await _get(emulator, "AAPL,NOPE", {"Authorization": "Bearer t0k"})
    assert response.content_type == "application/xml"
    root = ET.fromstring(await response.read())  # noqa: S314 - our own emulator's output
    assert root.tag == "quotes"
    assert root.findtext("quote/symbol") == "AAPL"
    assert root.findtext("unmatched_symbols/symbol") == "NOPE"


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, rate_per_min=3)])
async def test_rate_limit_headers_count_down_then_429_until_the_window_ends(
    emulator: RunningEmulator, clock: FakeClock
) -> None:
    """X-Ratelimit-* count the window; the 4th call of 3 is a 429; the next window starts fresh."""
    first_call = clock.now
    seen = []
    for _ in range(3):
        response = await _get(emulator, "AAPL")
        seen.append((response.status, response.headers["X-Ratelimit-Available"]))
        clock.advance(1)
    assert seen == [(200, "2"), (200, "1"), (200, "0")]
    assert response.headers["X-Ratelimit-Allowed"] == "3"
    assert response.headers["X-Ratelimit-Used"] == "3"
    expiry_ms = int(response.headers["X-Ratelimit-Expiry"])
    assert expiry_ms == int((first_call + timedelta(minutes=1)).timestamp() * 1000)
    assert (await _get(emulator, "AAPL")).status == 429
    clock.now = first_call + timedelta(minutes=1)
    renewed = await _get(emulator, "AAPL")
    assert renewed.status == 200
    assert renewed.headers["X-Ratelimit-Available"] == "2"
    assert emulator.calls() == {"200": 4, "429": 1}


async def test_missing_symbols_is_a_400(emulator: RunningEmulator) -> None:
    """An empty symbol list is a bad request."""
    assert (await _get(emulator, " , ")).status == 400


async def test_faults_replace_answers_then_disarm_and_reset_clears_stats(emulator: RunningEmulator) -> None:
    """An armed fault answers `times` times, then the real endpoint answers again; reset zeroes stats."""
    async with aiohttp.ClientSession() as session:
        armed = await session.post(
            f"{emulator.url}/_emulator/faults",
            json={"path": "/v1/markets/quotes", "status": 503, "body": "busy", "times": 2},
        )
        assert armed.status == 200
        bad = await session.post(f"{emulator.url}/_emulator/faults", json={"status": 500})
        assert bad.status == 400
    statuses = [(await _get(emulator, "AAPL")).status for _ in range(3)]
    assert statuses == [503, 503, 200]
    async with aiohttp.ClientSession() as session:
        stats = await (await session.get(f"{emulator.url}/_emulator/stats")).json()
        assert stats["calls"] == {"/v1/markets/quotes": {"200": 1, "503": 2}}
        assert stats["methods"] == {"/v1/markets/quotes": {"GET": 3}}
        assert stats["total"] == 3
        await session.post(f"{emulator.url}/_emulator/reset")
        assert (await (await session.get(f"{emulator.url}/_emulator/stats")).json())["total"] == 0


async def test_latency_option_delays_every_answer(clock: FakeClock) -> None:
    """--latency-ms holds each API answer that long."""
    running = await start_emulator(EmulatorOptions(latency_ms=150), clock)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(_get(running, "AAPL") for _ in range(3)))
        assert time.perf_counter() - started >= 0.15
    finally:
        await running.server.close()


def test_command_line_serves_on_the_given_port() -> None:
    """`python -m emulator --port N` serves the API and its stats."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port), "--seed", "5", "--rate-per-min", "7"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.05)

        async def probe() -> tuple[int, str, Any]:
            async with aiohttp.ClientSession() as session:
                api = await session.get(
                    f"http://127.0.0.1:{port}/v1/markets/quotes", params={"symbols": "SPY"}, headers=JSON
                )
                stats = await session.get(f"http://127.0.0.1:{port}/_emulator/stats")
                return api.status, api.headers["X-Ratelimit-Allowed"], await stats.json()

        status, allowed, stats = asyncio.run(probe())
        assert (status, allowed) == (200, "7")
        assert stats["calls"] == {"/v1/markets/quotes": {"200": 1}}
    finally:
        process.terminate()
        process.wait(timeout=10)
