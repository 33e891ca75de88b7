"""Non-finite and absurd numbers from upstream are refused like any other bad field, and the store
never writes an item that the reader's model cannot read back."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from pydantic import ValidationError

from emulator.state import Fault
from reader import Reader, keys
from reader.models import Bar, OptionChain, OptionContract, PriceHistory, Quote
from tests.support import FakeClock, RunningEmulator, make_config
from worker.config import Secrets
from worker.runtime import Runtime
from worker.store import Store

TODAY_ET = date(2026, 11, 24)
AGGS = f"/v2/aggs/ticker/AAPL/range/1/day/{TODAY_ET - timedelta(days=399)}/{TODAY_ET}"
QUOTES = "/v1/markets/quotes"


@pytest.fixture
async def polygon_runtime(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> AsyncIterator[Runtime]:
    config = make_config(
        ["AAPL"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        polygon_url=emulator.url,
        datasets={"history": {"provider": "polygon", "intraday": None}},
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        yield runtime
    await client.aclose()


async def _upstream_body(emulator: RunningEmulator, path: str, **params: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            emulator.url + path,
            params=params,
            headers={
                "Authorization": "Bearer test-key",
                "Accept": "application/json",
                "Date": _http_date(emulator),
            },
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.text()


def _http_date(emulator: RunningEmulator) -> str:
    from email.utils import format_datetime

    return format_datetime(emulator.state.clock(), usegmt=True)


@pytest.mark.parametrize(
    ("token", "shown"),
    [
        pytest.param("NaN", "nan", id="bare-NaN-token"),
        pytest.param('"NaN"', "'NaN'", id="NaN-string"),
        pytest.param("Infinity", "inf", id="bare-Infinity"),
        pytest.param("-3.5", "-3.5", id="negative-price"),
    ],
)
async def test_a_bad_close_in_daily_bars_keeps_the_good_history_and_indicators_readable(
    polygon_runtime: Runtime,
    emulator: RunningEmulator,
    clock: FakeClock,
    redis_url: str,
    token: str,
    shown: str,
) -> None:
    """A daily bar with `"c": NaN` (or "NaN", Infinity, a negative close) fails the symbol's refresh
    naming the field and the value; the stored 400-day history and its indicators stay readable."""
    first = await polygon_runtime.refresh("history", ["AAPL"])
    assert first.complete, first.errors
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        good = await reader.history("AAPL")
        good_indicators = await reader.indicators("AAPL")
    assert len(good.bars) > 250

    clock.advance(3600)
    body = await _upstream_body(emulator, AGGS, adjusted="true", sort="asc", limit="50000")
    poisoned, replaced = re.subn(r"\"c\":\s*[-0-9.eE+]+", f'"c":{token}', body, count=1)
    assert replaced == 1
    emulator.state.arm(Fault(path=AGGS, status=200, body=poisoned, content_type="application/json"))
    report = await polygon_runtime.refresh("history", ["AAPL"])

    assert report.failed == ("AAPL",), report
    # The wire model names Polygon's field (a NaN); the reader's model names its own (a negative close).
    assert re.search(r"(results\[0\]\.c|bars\[0\]\.close) = " + re.escape(shown), report.errors[0]), (
        report.errors
    )
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        assert (await reader.history("AAPL")).bars == good.bars
        assert (await reader.indicators("AAPL")).sma == good_indicators.sma


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        pytest.param("last", "NaN", "nan", id="last-NaN"),
        pytest.param("bid", "-1.25", "-1.25", id="negative-bid"),
        pytest.param("volume", "-100", "-100", id="negative-volume"),
        pytest.param("ask", "1e999", "inf", id="infinite-ask"),
        pytest.param("last", "1e300", "1e+300", id="absurd-last"),
        pytest.param("bid", "250.0", "250.0", id="bid-above-ask"),
    ],
)
async def test_an_absurd_quote_field_is_refused_naming_field_and_value(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    secrets: Secrets,
    field: str,
    value: str,
    shown: str,
) -> None:
    """NaN, infinite and negative prices or volumes, and a bid above the ask by more than a tick,
    reject the quotes answer with the field and its value; the stored quote stays."""
    config = make_config(["AAPL"], redis_url=redis_url, tradier_url=emulator.url)
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        assert (await runtime.refresh("quotes", ["AAPL"])).complete
        before = await client.get(keys.quote("AAPL"))
        clock.advance(60)
        body = json.loads(await _upstream_body(emulator, QUOTES, symbols="AAPL"))
        quote: dict[str, Any] = body["quotes"]["quote"]
        quote["ask"] = 200.0 if field == "bid" and value == "250.0" else quote["ask"]
        text = json.dumps(body).replace(f'"{field}": {json.dumps(quote[field])}', f'"{field}": {value}', 1)
        emulator.state.arm(Fault(path=QUOTES, status=200, body=text, content_type="application/json"))
        report = await runtime.refresh("quotes", ["AAPL"])
        after = await client.get(keys.quote("AAPL"))
    await client.aclose()
    assert report.failed == ("AAPL",), report
    assert field in report.errors[0], report.errors
    assert shown in report.errors[0], report.errors
    assert after == before


def _chain(bid: float, ask: float) -> dict[str, Any]:
    now = datetime(2026, 11, 24, 15, tzinfo=UTC)
    contract = OptionContract("AAPL261127C00150000", "call", 150.0, bid, ask)
    return {
        "source": "tradier",
        "fetched_at": now,
        "fresh_until": now + timedelta(minutes=1),
        "symbol": "AAPL",
        "expiration": date(2026, 11, 27),
        "contracts": (contract,),
    }


def test_a_contract_bid_above_its_ask_by_more_than_a_tick_is_refused() -> None:
    """A locked market or a one-cent cross is accepted; a wider cross names the contract and values."""
    assert OptionChain(**_chain(1.01, 1.00)).contracts[0].bid == 1.01
    assert OptionChain(**_chain(2.0, 0)).contracts[0].ask == 0  # no ask quoted
    with pytest.raises(ValidationError, match=r"AAPL261127C00150000: bid=1.2 is above ask=1.0"):
        OptionChain(**_chain(1.2, 1.0))


async def test_the_store_never_writes_what_the_reader_cannot_read_back(
    redis_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An item built around validation (a NaN close) is refused by the store, logged with its key;
    the good item under that key stays, and the other items of the batch are written."""
    client = redis.asyncio.Redis.from_url(redis_url)
    store = Store(client, keep_stale_s=3600, clock=clock)
    now = clock()
    envelope = {"source": "polygon", "fetched_at": now, "fresh_until": now + timedelta(hours=1)}
    bar = Bar(now, 1.0, 2.0, 0.5, 1.5, 100.0)
    good = PriceHistory(symbol="AAPL", interval="1d", bars=(bar,), **envelope)
    assert await store.put([(keys.history("AAPL", "1d"), good)]) == 1

    later = {**envelope, "fetched_at": now + timedelta(seconds=1)}
    poisoned = PriceHistory.model_construct(
        symbol="AAPL", interval="1d", bars=(bar._replace(close=float("nan")),), **later
    )
    quote = Quote(symbol="MSFT", last=1.0, **later)
    with caplog.at_level(logging.ERROR, logger="worker.store"):
        written = await store.put([(keys.history("AAPL", "1d"), poisoned), (keys.quote("MSFT"), quote)])
    assert written == 1
    assert "store.refused key=mc:v1:history:AAPL:1d" in caplog.text
    assert await store.get(PriceHistory, keys.history("AAPL", "1d")) == good
    assert await store.get(Quote, keys.quote("MSFT")) == quote
    await client.aclose()


async def test_one_absurd_quote_in_a_batch_keeps_its_old_value_and_the_others_are_stored(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """A negative volume for MSFT in a batch of three: MSFT keeps its stored quote, named with the
    field and value; AAPL and SPY are refreshed (it refused the whole batch)."""
    config = make_config(["AAPL", "MSFT", "SPY"], redis_url=redis_url, tradier_url=emulator.url)
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        assert (await runtime.refresh("quotes", ["AAPL", "MSFT", "SPY"])).complete
        before = {s: await client.get(keys.quote(s)) for s in ("AAPL", "MSFT", "SPY")}
        clock.advance(60)
        body = json.loads(await _upstream_body(emulator, QUOTES, symbols="AAPL,MSFT,SPY"))
        for quote in body["quotes"]["quote"]:
            if quote["symbol"] == "MSFT":
                quote["volume"] = -1
        text = json.dumps(body)
        emulator.state.arm(Fault(path=QUOTES, status=200, body=text, content_type="application/json"))
        report = await runtime.refresh("quotes", ["AAPL", "MSFT", "SPY"])
        after = {s: await client.get(keys.quote(s)) for s in ("AAPL", "MSFT", "SPY")}
    await client.aclose()
    assert report.failed == ("MSFT",), report
    assert sorted(report.stored) == ["AAPL", "SPY"]
    assert "MSFT" in report.errors[0]
    assert "volume = -1" in report.errors[0], report.errors
    assert after["MSFT"] == before["MSFT"]
    assert after["AAPL"] != before["AAPL"]
    assert after["SPY"] != before["SPY"]


def test_a_crossed_contract_loses_its_quote_not_the_chain() -> None:
    """The providers clear the bid and ask of a contract crossed by more than a tick (a stale side
    of a far strike is common in options data), so the chain is stored; the others are untouched."""
    from worker.providers.wire import uncrossed

    good = OptionContract("AAPL261127C00150000", "call", 150.0, 1.0, 1.1)
    locked = OptionContract("AAPL261127C00155000", "call", 155.0, 1.01, 1.0)
    crossed = OptionContract("AAPL261127P00317500", "put", 317.5, 109.98, 109.93, 110.0)
    cleaned = uncrossed([good, locked, crossed])
    assert cleaned[:2] == (good, locked)
    assert (cleaned[2].bid, cleaned[2].ask, cleaned[2].last) == (None, None, 110.0)
    chain = OptionChain(**{**_chain(1.0, 1.1), "contracts": cleaned})
    assert len(chain.contracts) == 3
