"""Emulator -> arq worker -> real Redis -> Reader: the quotes path end to end."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import redis

from emulator.market import Market
from emulator.state import EmulatorOptions, Fault
from reader import Quote, Reader, keys
from tests.conftest import API_KEY, RunBatches
from tests.support import CommandLog, FakeClock, RunningEmulator, make_config

SYMBOLS_250 = [f"S{i:03d}" for i in range(250)]


async def test_250_symbols_take_three_upstream_calls_and_read_back(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, run_scheduled_batches: RunBatches
) -> None:
    """A 250-symbol watchlist with batch_size 100 costs exactly 3 calls; every quote reads back as served."""
    config = make_config(SYMBOLS_250, redis_url=redis_url, tradier_url=emulator.url)
    worker = await run_scheduled_batches(config)

    assert worker.jobs_complete == 3
    assert worker.jobs_failed == 0
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.url}/_emulator/stats") as response:
        stats = await response.json()
    assert stats["calls"] == {"/v1/markets/quotes": {"200": 3}}
    assert stats["total"] == 3
    market = Market(seed=11)
    async with Reader(redis_url, clock=clock) as reader:
        results = await reader.quotes(SYMBOLS_250)
    assert sorted(results) == SYMBOLS_250
    for symbol, quote in results.items():
        assert isinstance(quote, Quote), quote
        assert quote.trade_date == clock.now  # the emulator's clock is the test's
        expected = market.quote(symbol, clock.now)
        assert expected is not None
        assert (quote.last, quote.bid, quote.ask, quote.volume) == (
            expected.last,
            expected.bid,
            expected.ask,
            expected.volume,
        )
        assert (quote.open, quote.high, quote.low, quote.prevclose) == (
            expected.open,
            expected.high,
            expected.low,
            expected.prevclose,
        )
        assert quote.close is None  # the session is running
        assert quote.source == "tradier"
        assert quote.fetched_at == clock.now
        assert not quote.stale
        assert quote.age_s == 0


async def test_each_batch_is_written_in_one_transaction_with_a_ttl_past_fresh_until(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, run_scheduled_batches: RunBatches
) -> None:
    """Three batches in three atomic scripts hold every quote write; TTL is keep_stale_s past fresh_until."""
    config = make_config(SYMBOLS_250, redis_url=redis_url, tradier_url=emulator.url)
    with CommandLog(redis_url) as log:
        await run_scheduled_batches(config)

    quote_set = re.compile(r"^SET mc:v1:quote:", re.IGNORECASE)
    writes = [[c for c in call if quote_set.match(c)] for call in log.script_calls()]
    assert sorted(len(w) for w in writes if w) == [50, 100, 100]
    # Every quote write ran inside one of those scripts (atomically), none from a client directly.
    assert not [c for client, c in log.commands if quote_set.match(c) and not client.startswith("lua:")]
    client = redis.Redis.from_url(redis_url)
    assert sum(1 for _ in client.scan_iter(keys.quote("*"))) == 250
    raw = client.get(keys.quote("S000"))
    assert raw is not None
    quote = Quote.model_validate_json(raw)
    ttl_s = client.ttl(keys.quote("S000"))
    expected_s = (quote.fresh_until - clock.now).total_seconds() + config.cache.keep_stale_s
    assert expected_s - 5 <= ttl_s <= expected_s
    # fresh until the next 15 s slot begins, plus the configured slack
    assert quote.fresh_until == datetime(2026, 11, 24, 15, 0, 15, tzinfo=UTC) + timedelta(seconds=5)
    client.close()


@pytest.mark.parametrize(
    ("emulator_options", "fault"),
    [
        pytest.param(EmulatorOptions(seed=11, api_keys=frozenset({"another-key"})), None, id="401"),
        pytest.param(
            EmulatorOptions(seed=11), Fault(path="/v1/markets/quotes", status=500, times=10), id="500"
        ),
        pytest.param(
            EmulatorOptions(seed=11),
            Fault(
                path="/v1/markets/quotes",
                status=200,
                body='{"quotes": {"quote": [{"sym',
                times=10,
                content_type="application/json",
            ),
            id="truncated-json",
        ),
    ],
)
async def test_failed_upstream_call_leaves_stored_quotes_byte_for_byte(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    run_scheduled_batches: RunBatches,
    fault: Fault | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401, a 500 or a broken body stores nothing; the previous values survive; no key is logged.
    (Retries are off: one failed call is the subject here; tests/test_upstream_faults.py retries.)"""
    symbols = ["AAPL", "MSFT", "SPY"]
    config = make_config(symbols, redis_url=redis_url, tradier_url=emulator.url, retry={"enabled": False})
    client = redis.Redis.from_url(redis_url)
    previous = {
        s: f'{{"symbol":"{s}","source":"tradier","fetched_at":"2026-11-24T14:59:00Z",'
        f'"fresh_until":"2026-11-24T14:59:20Z","last":1.5}}'.encode()
        for s in symbols
    }
    for symbol, raw in previous.items():
        client.set(keys.quote(symbol), raw)
    if fault is not None:
        emulator.state.arm(fault)

    caplog.set_level(logging.DEBUG)
    clock.advance(60)
    worker = await run_scheduled_batches(config)

    assert worker.jobs_failed == 0  # a failed refresh is reported, not raised
    for symbol, raw in previous.items():
        assert client.get(keys.quote(symbol)) == raw
    failures = [r for r in caplog.records if r.getMessage().startswith("refresh.batch_failed")]
    assert len(failures) == 1
    assert "provider=tradier" in failures[0].getMessage()
    assert API_KEY not in caplog.text
    assert all(API_KEY not in r.getMessage() for r in caplog.records)
    client.close()


async def test_an_upstream_echoing_the_key_gets_it_nowhere_in_redis_or_logs(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    run_scheduled_batches: RunBatches,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A proxy error body that quotes the Authorization header: no key in any Redis value or log
    line, the job's result and the fault counts included; the retry then stores the quote."""
    emulator.state.arm(Fault(path="/v1/markets/quotes", status=502, body=f"upstream said: Bearer {API_KEY}"))
    retry_at_once = {"base_s": 0.01, "cap_s": 0.01}
    config = make_config(["AAPL"], redis_url=redis_url, tradier_url=emulator.url, retry=retry_at_once)
    caplog.set_level(logging.DEBUG)
    await run_scheduled_batches(config)

    assert emulator.calls() == {"502": 1, "200": 1}
    client = redis.Redis.from_url(redis_url)
    stored = {key: client.dump(key) for key in client.scan_iter("*")}
    assert any(key.startswith(b"arq:result:") for key in stored)  # the job's result, with the error text
    assert keys.upstream_faults("tradier").encode() in stored
    assert keys.quote("AAPL").encode() in stored
    assert all(API_KEY.encode() not in key + (value or b"") for key, value in stored.items())
    client.close()
    assert "upstream said: Bearer ***" in caplog.text
    assert API_KEY not in caplog.text
