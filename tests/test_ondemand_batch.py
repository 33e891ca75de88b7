"""Misses in bulk: the quote misses of one `quotes()` call are enqueued in one script call, and a
real arq worker fetches the quote fetches pending together in one upstream call (`worker.claims`),
answering each job with its own outcome, whoever enqueued it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import redis

from emulator.state import EmulatorOptions
from reader import NotCached, NoWorker, Quote, Reader, SyncReader, UnknownSymbol, keys
from reader.ondemand import FetchRequest
from tests.conftest import StartWorker
from tests.support import (
    FakeClock,
    RunningEmulator,
    command_calls,
    create_job_pool,
    reset_command_calls,
)
from worker import claims

QUOTES = "/v1/markets/quotes"
WAIT_S = 10.0  # generous for a loaded machine; a batch here takes tens of milliseconds
SYMBOLS = [f"M{i:02d}" for i in range(50)]  # none on the watchlist, none cached


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    return EmulatorOptions(seed=11, rate_per_min=1000, latency_ms=20)


def _calls(emulator: RunningEmulator) -> int:
    return sum(emulator.calls(QUOTES).values())


def _announced(pubsub: Any) -> Counter[str]:
    """How many outcomes were announced per job id, of those the subscription has received."""
    jobs: Counter[str] = Counter()
    while (message := pubsub.get_message(timeout=0.05)) is not None:
        if message["type"] == "message":
            jobs[json.loads(message["data"])["job"]] += 1
    return jobs


@pytest.mark.parametrize("face", ["async", "sync"])
async def test_50_misses_in_one_quotes_call_cost_one_upstream_call(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker, face: str
) -> None:
    """50 uncached symbols in one quotes() call: all 50 quotes come back, from 1 quotes call."""
    async with start_worker():
        if face == "async":
            async with Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
                results = await reader.quotes(SYMBOLS)
        else:
            with SyncReader(redis_url, clock=clock, wait_s=WAIT_S) as sync:
                results = await asyncio.to_thread(sync.quotes, SYMBOLS)
    assert {s: getattr(q, "symbol", q) for s, q in results.items()} == {s: s for s in SYMBOLS}
    assert all(isinstance(q, Quote) and not q.stale for q in results.values())
    assert _calls(emulator) == 1
    assert emulator.state.quoted == Counter(SYMBOLS)  # each symbol asked of the upstream once


@pytest.mark.parametrize("face", ["async", "sync"])
async def test_the_misses_of_one_quotes_call_are_enqueued_in_one_script_call(
    redis_url: str, clock: FakeClock, face: str
) -> None:
    """No worker runs: one quotes() call of 50 misses runs the enqueue script once and queues 50
    jobs, one per symbol; each miss says no worker runs."""
    reset_command_calls(redis_url)
    if face == "async":
        async with Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
            results = await reader.quotes(SYMBOLS)
    else:
        with SyncReader(redis_url, clock=clock, wait_s=WAIT_S) as sync:
            results = sync.quotes(SYMBOLS)
    calls = command_calls(redis_url)
    with redis.Redis.from_url(redis_url) as admin:
        queued = {job.decode() for job in admin.zrange(keys.QUEUE, 0, -1)}
    assert calls.get("evalsha", 0) + calls.get("eval", 0) == 1, calls
    assert queued == {FetchRequest("quotes", s).job_id for s in SYMBOLS}
    assert all(isinstance(results[s], NoWorker) for s in SYMBOLS)


async def test_concurrent_overlapping_misses_of_two_readers_make_one_job_per_symbol(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """An async and a blocking reader, each on its own connections, miss overlapping sets at once:
    every symbol is fetched by one job (one outcome announced, asked of the upstream once), both
    get every quote, and the quotes calls are fewer than the symbols."""
    first, second = SYMBOLS[:30], SYMBOLS[20:]
    admin = redis.Redis.from_url(redis_url)
    pubsub = admin.pubsub()
    pubsub.subscribe(keys.FETCHED)
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        with SyncReader(redis_url, clock=clock, wait_s=WAIT_S) as sync:
            got_first, got_second = await asyncio.gather(
                reader.quotes(first), asyncio.to_thread(sync.quotes, second)
            )
    announced = _announced(pubsub)
    pubsub.close()
    admin.close()
    assert sorted(getattr(q, "symbol", q) for q in got_first.values()) == first
    assert sorted(getattr(q, "symbol", q) for q in got_second.values()) == second
    assert announced == Counter(FetchRequest("quotes", s).job_id for s in SYMBOLS)
    assert emulator.state.quoted == Counter(SYMBOLS)
    assert _calls(emulator) < len(SYMBOLS) / 10


async def test_a_batch_answers_each_symbol_with_its_own_outcome(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """One call for a known, an unknown and a cached symbol: the known one is stored, the unknown
    one is UnknownSymbol (and negative-cached), the cached one is read as is; one upstream call."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        cached = await reader.quote("SPY")
        results = await reader.quotes(["AAPL", "ZZZZ", "SPY", "QQQ"])
    assert isinstance(results["AAPL"], Quote)
    assert isinstance(results["QQQ"], Quote)
    assert isinstance(results["ZZZZ"], UnknownSymbol)
    assert results["SPY"] == cached
    assert _calls(emulator) == 2  # SPY alone, then AAPL, ZZZZ and QQQ together
    with redis.Redis.from_url(redis_url) as admin:
        assert admin.exists(keys.unknown("quotes", "ZZZZ"))


async def test_fresh_only_quotes_of_stale_items_are_refreshed_together(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """quotes(fresh=True) of 20 stale quotes waits for their refresh: 20 fresh quotes, 1 call."""
    wanted = SYMBOLS[:20]
    fetched = clock() - timedelta(minutes=5)
    with redis.Redis.from_url(redis_url) as admin:
        for symbol in wanted:
            old = Quote(
                source="tradier",
                fetched_at=fetched,
                fresh_until=fetched + timedelta(seconds=20),
                symbol=symbol,
            )
            admin.set(keys.quote(symbol), old.model_dump_json())
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        fresh = await reader.quotes(wanted, fresh=True)
    assert sorted(fresh) == wanted
    assert all(isinstance(q, Quote) and not q.stale and q.fetched_at == clock() for q in fresh.values())
    assert _calls(emulator) == 1


async def test_quotes_claimed_by_a_worker_that_died_are_fetched_again_within_the_lease(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lead takes three queued quote fetches and dies (never renews, never answers): their job
    keys lapse with the lease, the waiting reader enqueues them again, and a live worker fetches
    them, well within the reader's wait_s (the job keys alone would have held them for 60 s)."""
    monkeypatch.setattr(claims, "LEASE_S", 0.5)
    wanted = ["AAPL", "MSFT", "NVDA"]
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        await reader.quotes(wanted)  # queued; no worker yet
    pool = await create_job_pool(redis_url)
    dead = claims.Claims(pool, "mc:v1:fetch:quotes:DEAD:")
    taken = await dead.take(10)
    assert sorted(c.job_id for c in taken) == sorted(FetchRequest("quotes", s).job_id for s in wanted)
    loop = asyncio.get_running_loop()
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        started = loop.time()
        results = await reader.quotes(wanted)
        waited_s = loop.time() - started
    await pool.aclose()
    assert all(isinstance(results[s], Quote) for s in wanted), results
    assert waited_s < 3
    assert emulator.state.quoted == Counter(wanted)


async def test_a_malformed_job_among_claimed_quote_fetches_is_answered_and_the_rest_fetched(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """Whoever can write the queue may put nonsense under a quote fetch id: claimed with the others,
    it is answered 'bad request', and the good ones are fetched in the same call."""
    admin = redis.Redis.from_url(redis_url)
    pubsub = admin.pubsub()
    pubsub.subscribe(keys.FETCHED)
    pool = await create_job_pool(redis_url)
    bad = FetchRequest("quotes", "AAPL").job_id
    await pool.enqueue_job("fetch", "quotes", "not a symbol!", "", _job_id=bad, _queue_name=keys.QUEUE)
    for symbol in ("MSFT", "NVDA"):
        request = FetchRequest("quotes", symbol)
        await pool.enqueue_job("fetch", *request.args(), _job_id=request.job_id, _queue_name=keys.QUEUE)
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        results = await reader.quotes(["MSFT", "NVDA"])
    await pool.aclose()
    outcomes = {}
    while (message := pubsub.get_message(timeout=0.05)) is not None:
        if message["type"] == "message":
            outcome = json.loads(message["data"])
            outcomes[outcome["job"]] = outcome
    pubsub.close()
    admin.close()
    assert outcomes[bad]["status"] == "failed"
    assert "bad request" in outcomes[bad]["detail"]
    assert all(isinstance(results[s], Quote) for s in ("MSFT", "NVDA"))
    assert emulator.state.quoted == Counter({"MSFT": 1, "NVDA": 1})


async def test_a_miss_not_answered_in_time_says_so_for_each_symbol(redis_url: str, clock: FakeClock) -> None:
    """A worker is alive but takes nothing: every symbol of the call gives up after one wait_s."""
    with redis.Redis.from_url(redis_url) as admin:
        admin.set(keys.WORKER_HEALTH, b"busy", px=30_000)
    async with Reader(redis_url, clock=clock, wait_s=0.3) as reader:
        started = asyncio.get_running_loop().time()
        results = await reader.quotes(["AAPL", "MSFT"])
        waited_s = asyncio.get_running_loop().time() - started
    for symbol in ("AAPL", "MSFT"):
        assert isinstance(results[symbol], NotCached)
        assert "a fetch is queued; waited 0.3 s" in str(results[symbol])
    assert 0.3 <= waited_s < 1.5
