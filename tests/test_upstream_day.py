"""Upstream day counters in Redis (`worker.usage`): what every worker process asked each upstream
on one exchange-local day, as `python -m worker status` reads it (`reader.telemetry.UpstreamDay`)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio

from devtools.redis_server import free_port
from reader import Reader, keys
from reader.jobs import refresh_job
from reader.telemetry import UpstreamDay
from tests.conftest import StartWorker
from tests.support import FakeClock, RunningEmulator, create_job_pool
from worker.usage import KEPT_S, UpstreamUsage, flush_usage

QUOTES = "/v1/markets/quotes"
# 03:30 UTC on Wednesday is 22:30 on Tuesday in New York: the counters' day is the exchange's.
LATE_TUESDAY_ET = datetime(2026, 11, 25, 3, 30, tzinfo=UTC)
TUESDAY = date(2026, 11, 24)


def _day(redis_url: str, provider: str, day: date) -> UpstreamDay:
    client = redis.Redis.from_url(redis_url)
    try:
        return UpstreamDay.from_hash(provider, day, client.hgetall(keys.upstream_day(provider, day)))
    finally:
        client.close()


async def _emulator(emulator: RunningEmulator, method: str, control: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{emulator.url}/_emulator/{control}", json=body) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def _refresh(redis_url: str, job_id: str, symbols: list[str]) -> dict[str, Any]:
    pool = await create_job_pool(redis_url)
    try:
        job = await pool.enqueue_job(refresh_job("quotes"), symbols, _job_id=job_id, _queue_name=keys.QUEUE)
        assert job is not None
        result: dict[str, Any] = await job.result(timeout=10, poll_delay=0.02)
        return result
    finally:
        await pool.aclose()


async def test_day_counters_match_the_emulators_calls_and_count_an_armed_fault(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """An on-demand fetch and two refreshes, one answered 503 by a fault armed through the emulator:
    the day's hash counts the calls the emulator served, by status, the fault by kind and the calls
    by exchange-local minute, under the exchange's date, kept 8 days."""
    clock.now = LATE_TUESDAY_ET
    async with start_worker(["SPY", "AAPL"], retry={"enabled": False}):
        async with Reader(redis_url, clock=clock, wait_s=5) as reader:
            assert (await reader.quote("MSFT")).symbol == "MSFT"  # a miss: fetched on demand
        await _emulator(emulator, "POST", "faults", {"path": QUOTES, "status": 503, "body": "busy"})
        failed = await _refresh(redis_url, keys.refresh_job_id("quotes", "1764041400", "b1"), ["AAPL", "SPY"])
        stored = await _refresh(redis_url, keys.refresh_job_id("quotes", "1764041401", "b1"), ["AAPL", "SPY"])
    assert (failed["failed"], stored["stored"]) == (2, 2)
    served = (await _emulator(emulator, "GET", "stats"))["calls"][QUOTES]
    assert served == {"200": 2, "503": 1}

    day = _day(redis_url, "tradier", TUESDAY)
    assert day.calls == sum(served.values()) == 3
    assert day.statuses == {int(status): count for status, count in served.items()}
    assert day.faults == {"server_error": 1}
    assert day.calls_by_minute == {"22:30": 3}
    assert day.waits == 0
    ttl_s = redis.Redis.from_url(redis_url).ttl(keys.upstream_day("tradier", TUESDAY))
    assert KEPT_S - 60 < ttl_s <= KEPT_S
    assert not redis.Redis.from_url(redis_url).exists(keys.upstream_day("tradier", date(2026, 11, 25)))


async def test_a_failed_flush_keeps_the_counts_for_the_next_one(clock: FakeClock, redis_url: str) -> None:
    """Counts a flush could not write (Redis away) are all written by the next flush, once; a wait
    of 10 ms or less is not counted; the days of two providers go in one flush."""
    tradier = UpstreamUsage("tradier", clock=clock)
    polygon = UpstreamUsage("polygon", clock=clock)
    tradier.sent(200)
    tradier.sent(429)
    tradier.waited(2.5)
    tradier.waited(0.01)  # not a wait
    tradier.sent(None)  # sent, no answer
    tradier.fault("timeout")
    clock.advance(60)
    tradier.sent(200)
    polygon.fault("circuit_open")  # not sent: no call

    down = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        await flush_usage(down, [tradier, polygon])
    await down.aclose()
    assert tradier.unsaved()[TUESDAY]["calls"] == 4

    client = redis.asyncio.Redis.from_url(redis_url)
    await flush_usage(client, [tradier, polygon])
    await flush_usage(client, [tradier, polygon])  # nothing left: adds nothing
    await client.aclose()
    assert tradier.unsaved() == {}
    assert _day(redis_url, "tradier", TUESDAY) == UpstreamDay(
        provider="tradier",
        day=TUESDAY,
        calls=4,
        statuses={200: 2, 429: 1},
        faults={"timeout": 1},
        waits=1,
        wait_s=2.5,
        calls_by_minute={"10:00": 3, "10:01": 1},
    )
    assert _day(redis_url, "polygon", TUESDAY) == UpstreamDay(
        provider="polygon", day=TUESDAY, faults={"circuit_open": 1}
    )
