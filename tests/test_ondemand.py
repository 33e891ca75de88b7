"""The miss path, for real: readers enqueue on-demand fetches, a real arq worker (in this event loop)
runs them against the emulator, and publishes the outcome the readers wait on.

The worker, the readers and the emulator share one fake clock, stopped on Tuesday 2026-11-24 at
10:00 ET (regular session), so freshness never depends on today's date.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, timedelta
from typing import Any

import pytest
import redis
from arq.connections import ArqRedis

from emulator.state import EmulatorOptions, Fault
from reader import NotCached, NoWorker, Quote, Reader, SyncReader, UnknownSymbol, keys
from reader.ondemand import FetchRequest, Outcome
from tests.conftest import StartWorker
from tests.support import (
    FakeClock,
    RunningEmulator,
    command_calls,
    create_job_pool,
    make_config,
    reset_command_calls,
)
from worker import jobs
from worker.config import Config, Secrets

QUOTES = "/v1/markets/quotes"
WAIT_S = 5.0  # generous for a loaded machine; a fetch here takes tens of milliseconds


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    return EmulatorOptions(seed=11, rate_per_min=1000, latency_ms=20)


def _calls(emulator: RunningEmulator, path: str = QUOTES) -> int:
    return sum(emulator.calls(path).values())


async def test_concurrent_misses_in_one_process_make_one_upstream_call(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """50 concurrent asks for a symbol off the watchlist: one job, one call, 50 quotes."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        quotes = await asyncio.gather(*(reader.quote("aapl") for _ in range(50)))
    assert {q.symbol for q in quotes} == {"AAPL"}
    assert all(q.stale is False for q in quotes)
    assert _calls(emulator) == 1


async def test_a_sync_reader_miss_is_fetched_too(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """SyncReader waits for the same announcement (here in a thread, beside the worker's loop)."""
    async with start_worker():
        with SyncReader(redis_url, clock=clock, wait_s=WAIT_S) as sync:
            quote = await asyncio.to_thread(sync.quote, "MSFT")
            with pytest.raises(UnknownSymbol):
                await asyncio.to_thread(sync.quote, "ZZZZ")
    assert quote.symbol == "MSFT"
    assert _calls(emulator) == 2


async def test_unknown_symbol_costs_one_call_then_none_while_remembered(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """The first ask reaches the upstream; the next ten, within the negative TTL, do not."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        with pytest.raises(UnknownSymbol, match=r"'ZZZZ'.*tradier does not know this symbol") as first:
            await reader.quote("ZZZZ")
        assert _calls(emulator) == 1
        for _ in range(10):
            with pytest.raises(UnknownSymbol):
                await reader.quote("zzzz")
    assert first.value.symbol == "ZZZZ"
    assert _calls(emulator) == 1
    ttl = redis.Redis.from_url(redis_url).ttl(keys.unknown("quotes", "ZZZZ"))
    assert 290 <= ttl <= 300  # on_demand.unknown_ttl_s


async def test_stale_read_answers_at_once_and_one_refresh_follows(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """A stale item comes back flagged without waiting; one refresh runs; the next read is fresh."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        first = await reader.quote("AAPL")
        clock.advance(60)  # past fresh_until (the next 15 s refresh time plus 5 s of slack)
        stale = await asyncio.gather(*(reader.quote("AAPL") for _ in range(10)))
        assert _calls(emulator) == 1  # answered before the refresh ran
        assert all(q.stale and q.fetched_at == first.fetched_at for q in stale)
        fresh = await _until_fresh(reader, "AAPL")
        await asyncio.sleep(0.2)  # room for a second refresh, if one were (wrongly) queued
    assert fresh.fetched_at == clock()
    assert _calls(emulator) == 2


async def _until_fresh(reader: Reader, symbol: str) -> Quote:
    for _ in range(200):
        quote = await reader.quote(symbol)
        if not quote.stale:
            return quote
        await asyncio.sleep(0.02)
    raise AssertionError(f"{symbol} was not refreshed")


async def test_fresh_only_waits_for_the_refresh(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """fresh=True does not take a stale item: it waits for the refresh it enqueues."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        first = await reader.quote("AAPL")
        clock.advance(60)
        fresh = await reader.quote("AAPL", fresh=True)
    assert not fresh.stale
    assert fresh.fetched_at > first.fetched_at
    assert _calls(emulator) == 2


def _pretend_a_busy_worker(redis_url: str) -> None:
    """The health key of a worker that is alive but does not take the job (yet)."""
    with redis.Redis.from_url(redis_url) as admin:
        admin.set(keys.WORKER_HEALTH, b"busy", px=30_000)


async def test_with_no_worker_alive_a_miss_says_so_at_once(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """No worker's health key: the reader says at once that no worker runs (it answered "a fetch is
    queued, ask again" for ever); the job stays queued, and a worker that starts later stores it."""
    async with Reader(redis_url, clock=clock, wait_s=5) as reader:
        started = asyncio.get_running_loop().time()
        with pytest.raises(NoWorker, match=r"'NVDA': no worker is running .* start one"):
            await reader.quote("NVDA")
        assert asyncio.get_running_loop().time() - started < 1
        with SyncReader(redis_url, clock=clock, wait_s=5) as sync, pytest.raises(NoWorker):
            await asyncio.to_thread(sync.quote, "NVDA")
        async with start_worker():
            quote = await reader.quote("NVDA")
    assert quote.symbol == "NVDA"
    assert _calls(emulator) == 1


async def test_a_miss_not_answered_in_time_says_a_fetch_is_queued(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """A worker is alive but does not get to the job: the reader gives up after wait_s; the job
    stays queued, and the worker stores the quote when it takes it."""
    _pretend_a_busy_worker(redis_url)
    async with Reader(redis_url, clock=clock, wait_s=0.3) as reader:
        with pytest.raises(NotCached, match=r"'NVDA': a fetch is queued; waited 0.3 s"):
            await reader.quote("NVDA")
        with pytest.raises(NotCached, match="a fetch is queued"):
            await reader.quote("NVDA", wait_s=0)
        async with start_worker():
            quote = await reader.quote("NVDA")
    assert quote.symbol == "NVDA"
    assert _calls(emulator) == 1


async def test_a_failed_fetch_is_reported_without_waiting_out_the_timeout(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """An upstream error ends the wait at once with the reason; the next miss tries again."""
    emulator.state.arm(Fault(path=QUOTES, status=500))
    loop = asyncio.get_running_loop()
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=30) as reader:
        started = loop.time()
        with pytest.raises(NotCached, match=r"an on-demand fetch failed: .*500"):
            await reader.quote("AMD")
        assert loop.time() - started < 10
        assert (await reader.quote("AMD")).symbol == "AMD"
    assert emulator.calls(QUOTES) == {"500": 1, "200": 1}


async def test_chains_history_and_indicators_are_fetched_on_demand(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """Every dataset has a miss path: the nearest chain (priced by its underlying's quote), a chain
    of a date outside the configured selection, bars of a length the config does not refresh, and
    computed indicators."""
    datasets = {
        "chains": {"expirations": 1, "max_days": 30},
        "history": {"intraday": {"bar": "5m", "lookback_days": 2}},
    }
    async with start_worker(datasets=datasets), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        nearest = await reader.chain("QQQ", side="calls")
        listed = (await reader.expirations("QQQ")).dates
        later = listed[3]
        chosen = await reader.chain("QQQ", later)
        with pytest.raises(
            NotCached, match=r"QQQ lists no option expiration on 2026-11-25 \(listed: 2026-11-27, "
        ):
            await reader.chain("QQQ", date(2026, 11, 25))  # a Wednesday: QQQ lists no such expiration
        bars = await reader.history("QQQ", "15m")
        daily = await reader.history("QQQ")
        indicators = await reader.indicators("QQQ")
    assert nearest.expiration == listed[0]
    assert nearest.contracts
    assert all(c.option_type == "call" for c in nearest.contracts)
    # On a cold cache, Tradier's chain is priced by a quote fetched with it (none was stored).
    assert nearest.underlying_price is not None
    assert nearest.underlying_price_at == nearest.fetched_at
    assert chosen.expiration == later
    assert bars.interval == "15m"
    assert bars.bars
    assert daily.interval == "1d"
    assert len(daily.bars) > 200
    assert indicators.sma[200] > 0
    assert _calls(emulator, "/v1/markets/options/expirations") == 1  # the chains job stored them
    assert _calls(emulator, "/v1/markets/history") == 1  # indicators came with the daily bars


async def test_symbols_asked_for_repeatedly_join_the_schedule_for_the_day(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets, start_worker: StartWorker
) -> None:
    """With on_demand.adopt, a symbol fetched adopt_after times in a day is in the next slot's batches."""
    on_demand = {"adopt": True, "adopt_after": 2}
    async with start_worker(on_demand=on_demand), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        await reader.quote("TSLA")
        clock.advance(60)
        await reader.quote("TSLA", fresh=True)
    client = redis.Redis.from_url(redis_url)
    assert client.smembers(keys.adopted("quotes", date(2026, 11, 24))) == {b"TSLA"}
    config = make_config(["SPY"], redis_url=redis_url, tradier_url=emulator.url, on_demand=on_demand)
    enqueued = await _tick_twice(config, secrets, clock)
    assert ["SPY", "TSLA"] in enqueued


async def test_adoption_is_off_by_default(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        for _ in range(4):
            await reader.quote("TSLA", fresh=True)
            clock.advance(60)
    client = redis.Redis.from_url(redis_url)
    assert client.zscore(keys.demand("quotes", date(2026, 11, 24)), "TSLA") == 4
    assert not client.exists(keys.adopted("quotes", date(2026, 11, 24)))


async def _tick_twice(config: Config, secrets: Secrets, clock: FakeClock) -> list[list[str]]:
    """Run the real tick (its start-up catch-up, then the next 15 s slot); the symbols of each
    refresh batch it enqueued."""
    pool: ArqRedis = await create_job_pool(config.redis_url)
    ctx: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
    await jobs.startup(ctx)
    try:
        await jobs.tick(ctx)
        clock.advance(15)
        await jobs.tick(ctx)
        queued = await pool.queued_jobs(queue_name=keys.QUEUE)
    finally:
        await jobs.shutdown(ctx)
        await pool.aclose()
    return [list(job.args[0]) for job in queued if job.function == "refresh_quotes"]


async def test_a_malformed_job_is_answered_not_crashed(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """Whoever can write the queue may send nonsense: the job fails with the reason, published."""
    bad = FetchRequest("quotes", "AAPL")
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(keys.FETCHED)
    async with start_worker():
        pool = await create_job_pool(redis_url)
        await pool.enqueue_job(
            "fetch", "quotes", "not a symbol!", "", _job_id=bad.job_id, _queue_name=keys.QUEUE
        )
        message = None
        for _ in range(200):
            message = pubsub.get_message(timeout=0.01)
            if message and message["type"] == "message":
                break
            await asyncio.sleep(0.01)
        await pool.aclose()
    assert message is not None
    assert message["type"] == "message"
    assert b'"status":"failed"' in message["data"]
    assert b"bad request" in message["data"]
    assert _calls(emulator) == 0


async def test_callers_sharing_a_wait_all_get_the_outcome_whoever_leaves_first(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """A caller that does not wait (wait_s=0) leaves at once; one that waits still gets the answer."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        hasty, patient = await asyncio.gather(
            reader.quote("ZZZZ", wait_s=0), reader.quote("ZZZZ"), return_exceptions=True
        )
    assert isinstance(hasty, NotCached)
    assert isinstance(patient, UnknownSymbol)
    assert _calls(emulator) == 1


async def test_a_dropped_subscription_is_restored_and_no_outcome_is_missed(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """Redis closes the reader's pub/sub connection; the next miss subscribes again and hears its
    failed fetch at once instead of waiting out wait_s."""
    admin = redis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=30) as reader:
        await reader.quote("AAPL")
        assert admin.client_kill_filter(_type="pubsub") == 1
        await asyncio.sleep(0.2)  # the reader notices the closed connection
        emulator.state.arm(Fault(path=QUOTES, status=500))
        started = loop.time()
        with pytest.raises(NotCached, match="an on-demand fetch failed"):
            await reader.quote("MSFT")
        assert loop.time() - started < 10
    admin.close()


async def test_an_expiration_that_is_not_listed_costs_no_chain_call(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """The first ask fetches the expirations; every ask says which are listed; no chain is fetched."""
    async with start_worker(datasets={"chains": {}}), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        for _ in range(3):
            with pytest.raises(NotCached, match=r"QQQ lists no option expiration on 2026-11-25"):
                await reader.chain("QQQ", "2026-11-25")
    assert _calls(emulator, "/v1/markets/options/expirations") == 1
    assert _calls(emulator, "/v1/markets/options/chains") == 0


async def test_the_nearest_chain_is_fetched_when_the_cached_ones_have_expired(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """A chain index still fresh (no session since) but listing only past expirations is no hit."""
    datasets = {"chains": {"expirations": 1, "max_days": 30}}
    async with start_worker(datasets=datasets), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        friday = await reader.chain("QQQ")
        clock.advance(4 * 86_400)  # Saturday 2026-11-28: that expiration is past, the index is fresh
        later = await reader.chain("QQQ")
    assert friday.expiration == date(2026, 11, 27)
    assert later.expiration == date(2026, 12, 4)
    assert _calls(emulator, "/v1/markets/options/chains") == 2


async def test_only_fetch_runs_under_an_on_demand_job_id(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """A reader's Redis user can write on-demand job ids only, but names the function in the
    payload: a refresh under such an id is refused, not run."""
    async with start_worker():
        pool = await create_job_pool(redis_url)
        job = await pool.enqueue_job(
            "refresh_quotes", ["AAPL", "MSFT"], _job_id=keys.FETCH_JOBS + "forged", _queue_name=keys.QUEUE
        )
        assert job is not None
        result = await job.result(timeout=10, poll_delay=0.05)
        await pool.aclose()
    assert result == {"refused": "a reader may enqueue on-demand fetches only"}
    assert _calls(emulator) == 0


async def test_no_chain_this_time_does_not_mark_a_symbol_with_options_unknown(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """Chains answered null for every date, expirations listed: a failed fetch, not UnknownSymbol."""
    async with start_worker(datasets={"chains": {}}), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        await reader.chain("QQQ")
        clock.advance(120)
        null = Fault(path="/v1/markets/options/chains", status=200, body='{"options": null}', times=3)
        emulator.state.arm(null)
        with pytest.raises(NotCached, match="no chain for the selected expirations"):
            await reader.chain("QQQ", fresh=True)
    assert not redis.Redis.from_url(redis_url).exists(keys.unknown("chains", "QQQ"))


async def test_a_late_announcement_of_an_earlier_job_does_not_end_a_fresh_only_wait(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """An outcome message of the same job id that still finds stale data is not the answer to a
    fresh-only ask: the reader keeps waiting for the job it queued."""
    admin = redis.Redis.from_url(redis_url)
    fetched = clock() - timedelta(minutes=5)
    old = Quote(
        source="tradier", fetched_at=fetched, fresh_until=fetched + timedelta(seconds=20), symbol="AAPL"
    )
    admin.set(keys.quote("AAPL"), old.model_dump_json())
    _pretend_a_busy_worker(redis_url)
    async with Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        asking = asyncio.create_task(reader.quote("AAPL", fresh=True))
        await asyncio.sleep(0.2)  # subscribed, job queued, no worker taking it yet
        late = Outcome(job=FetchRequest("quotes", "AAPL").job_id, status="stored")
        admin.publish(keys.FETCHED, late.model_dump_json())
        await asyncio.sleep(0.2)
        assert not asking.done()
        async with start_worker():
            fresh = await asking
    admin.close()
    assert not fresh.stale
    assert fresh.fetched_at == clock()


async def test_stale_data_landing_during_a_fresh_only_wait_does_not_spin(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """A miss asked fresh-only; stale data lands meanwhile (say, another writer's): the reader keeps
    waiting for its job at the fallback pace, not in a loop of scripts, and gets fresh data."""
    admin = redis.Redis.from_url(redis_url)
    _pretend_a_busy_worker(redis_url)
    async with Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        asking = asyncio.create_task(reader.quote("AAPL", fresh=True))
        await asyncio.sleep(0.1)
        fetched = clock() - timedelta(minutes=5)
        old = Quote(
            source="tradier", fetched_at=fetched, fresh_until=fetched + timedelta(seconds=20), symbol="AAPL"
        )
        admin.set(keys.quote("AAPL"), old.model_dump_json())
        reset_command_calls(redis_url)
        await asyncio.sleep(1.0)
        scripts = command_calls(redis_url).get("evalsha", 0)
        async with start_worker():
            fresh = await asking
    admin.close()
    assert scripts <= 10  # about one per 0.25 s fallback tick
    assert not fresh.stale


async def test_a_bundle_returns_stale_parts_at_once_and_enqueues_their_refreshes(
    redis_url: str, clock: FakeClock
) -> None:
    """Stale parts of a bundle stand as read (one round trip, no wait); each gets one refresh job."""
    admin = redis.Redis.from_url(redis_url)
    fetched = clock() - timedelta(minutes=5)
    old = Quote(
        source="tradier", fetched_at=fetched, fresh_until=fetched + timedelta(seconds=20), symbol="AAPL"
    )
    admin.set(keys.quote("AAPL"), old.model_dump_json())
    async with Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        bundle = await reader.bundle("aapl", options=True, technical=True, wait_s=0)
    queued = {job.decode() for job in admin.zrange(keys.QUEUE, 0, -1)}
    admin.close()
    assert bundle.quote == old
    assert isinstance(bundle.quote, Quote)
    assert bundle.quote.stale
    assert isinstance(bundle.chains, NotCached)
    assert isinstance(bundle.indicators, NotCached)
    assert queued == {
        FetchRequest("quotes", "AAPL").job_id,
        FetchRequest("chains", "AAPL").job_id,
        FetchRequest("indicators", "AAPL").job_id,
    }


@pytest.mark.parametrize("ahead_s", [30, 3600])
async def test_a_reader_clock_ahead_of_the_worker_gets_a_bounded_answer(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker, ahead_s: int
) -> None:
    """A reader whose clock runs ahead asks fresh data of an item the worker holds fresh: at most
    two fetch jobs (it ran one per 25 ms poll, 36 a second), no upstream call, and an answer that
    names the skew; the sync reader alike."""

    def ahead() -> Any:
        return clock() + timedelta(seconds=ahead_s)

    admin = redis.Redis.from_url(redis_url)
    async with start_worker(["AAPL"]):
        async with Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
            assert not (await reader.quote("AAPL")).stale
        calls = _calls(emulator)
        pubsub = admin.pubsub()
        pubsub.subscribe(keys.FETCHED)
        async with Reader(redis_url, clock=ahead, wait_s=1) as skewed:
            with pytest.raises(NotCached, match="reader's clock runs ahead of the worker's"):
                await skewed.quote("AAPL", fresh=True)
        skewed_sync = SyncReader(redis_url, clock=ahead, wait_s=1)
        with skewed_sync, pytest.raises(NotCached, match="reader's clock runs ahead of the worker's"):
            await asyncio.to_thread(skewed_sync.quote, "AAPL", fresh=True)
        await asyncio.sleep(0.2)
    outcomes = [m for m in iter(lambda: pubsub.get_message(timeout=0.05), None) if m["type"] == "message"]
    pubsub.close()
    admin.close()
    assert 1 <= len(outcomes) <= 4, outcomes  # two readers, at most two jobs each
    assert _calls(emulator) == calls


async def test_a_fetch_past_its_time_limit_is_one_line_and_a_clear_answer(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An upstream slower than the fetch's limit (job_timeout_s=3): the job gives up a second before
    arq would cancel it, logs one warning (no traceback at ERROR), and the reader learns why."""
    emulator.state.arm(Fault(path=QUOTES, status=200, body="{}", delay_ms=6_000))
    with caplog.at_level(logging.INFO):
        async with (
            start_worker(worker={"job_timeout_s": 3}),
            Reader(redis_url, clock=clock, wait_s=5) as reader,
        ):
            with pytest.raises(NotCached, match=r"took longer than its 2 s limit .*; ask again later"):
                await reader.quote("AMD")
    assert caplog.text.count("on_demand.timed_out") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text
