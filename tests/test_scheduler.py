"""The tick against a real Redis: skipped runs are counted, catch-ups fetch what is missing or stale,
restarts drop no refresh, and config edits are read safely and applied whole or not at all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from reader import Quote, keys
from tests.support import (
    QUOTES_ONLY,
    FakeClock,
    RunningEmulator,
    create_job_pool,
    make_config,
    run_queued_jobs,
)
from worker import jobs
from worker.config import ConfigError, Secrets, load_config
from worker.ratelimit import burst_of, steady_rate_per_min
from worker.refresh import RefreshReport
from worker.reload import ConfigWatcher
from worker.retry import retry_failures
from worker.runtime import Runtime
from worker.scheduler import Scheduler

SYMBOLS = ["AAPL", "MSFT"]


@pytest.fixture
async def ctx(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> AsyncIterator[dict[str, Any]]:
    """A worker's context (runtime, scheduler) for a quotes-only watchlist at Tuesday 10:00 ET."""
    pool = await create_job_pool(redis_url)
    config = make_config(SYMBOLS, redis_url=redis_url, tradier_url=emulator.url)
    context: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
    await jobs.startup(context)
    yield context
    await jobs.shutdown(context)
    await pool.aclose()


async def _queued(ctx: dict[str, Any]) -> list[str]:
    return sorted(job.job_id or "" for job in await ctx["redis"].queued_jobs(queue_name=keys.QUEUE))


async def test_a_batch_still_queued_is_skipped_and_counted_not_stacked(
    ctx: dict[str, Any], clock: FakeClock
) -> None:
    """The next slot finds the previous job of the batch not started: it is skipped, and counted."""
    scheduler: Scheduler = ctx["scheduler"]
    await scheduler.tick()  # first tick: the catch-up queues the empty cache
    assert len(await _queued(ctx)) == 1
    clock.advance(15)
    report = await scheduler.tick()
    assert (report.enqueued["quotes"], report.skipped["quotes"]) == (0, 1)
    assert len(await _queued(ctx)) == 1
    assert int(await ctx["redis"].get(keys.skipped("quotes"))) == 1
    await run_queued_jobs(ctx)
    clock.advance(15)
    report = await scheduler.tick()
    assert (report.enqueued["quotes"], report.skipped["quotes"]) == (1, 0)


async def test_catch_up_queues_the_schedules_batches_that_hold_a_missing_or_stale_item(
    ctx: dict[str, Any], clock: FakeClock, redis_url: str
) -> None:
    """At start, a stale AAPL queues its batch (the schedule's own, with the fresh MSFT in it, so a
    later catch-up or refresh time finds it queued under the same id); a fresh batch is not."""
    client = redis.asyncio.Redis.from_url(redis_url)
    now = clock.now
    stale = Quote(
        symbol="AAPL",
        source="tradier",
        fetched_at=now - timedelta(minutes=5),
        fresh_until=now - timedelta(minutes=4),
    )
    fresh = Quote(symbol="MSFT", source="tradier", fetched_at=now, fresh_until=now + timedelta(seconds=20))
    await client.set(keys.quote("AAPL"), stale.model_dump_json())
    await client.set(keys.quote("MSFT"), fresh.model_dump_json())
    await client.aclose()
    report = await ctx["scheduler"].tick()
    assert report.catch_up["quotes"] == 1
    (job,) = await ctx["redis"].queued_jobs(queue_name=keys.QUEUE)
    assert list(job.args) == [["AAPL", "MSFT"]]
    assert "catchup" in (job.job_id or "")
    # Both fresh now: a catch-up (another worker starting) queues nothing.
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.set(keys.quote("AAPL"), fresh.model_copy(update={"symbol": "AAPL"}).model_dump_json())
    await client.aclose()
    again = Scheduler(ctx["runtime"], ctx["redis"])
    assert (await again.tick()).catch_up.total() == 0


async def test_a_restart_just_after_a_refresh_time_still_runs_that_refresh(
    ctx: dict[str, Any], clock: FakeClock, redis_url: str, emulator: RunningEmulator, secrets: Secrets
) -> None:
    """Stored at 10:00:00 (fresh to 10:00:15 + slack); a worker starting at 10:00:17 refreshes at once."""
    await ctx["scheduler"].tick()
    await run_queued_jobs(ctx)
    clock.advance(17)
    restarted = Scheduler(ctx["runtime"], ctx["redis"])
    report = await restarted.tick()
    assert report.catch_up["quotes"] == 1
    assert report.enqueued["quotes"] == 0  # the catch-up is the 10:00:15 refresh; not queued twice
    clock.advance(1)
    assert (await restarted.tick()).enqueued.total() == 0


async def test_reconfigure_needs_the_keys_of_new_upstreams_and_keeps_rate_gates(
    ctx: dict[str, Any], redis_url: str, emulator: RunningEmulator
) -> None:
    """Switching quotes to Polygon without its key changes nothing; with it, the Tradier gate is kept."""
    runtime: Runtime = ctx["runtime"]
    old_quotes = runtime.providers.quotes
    datasets = {**QUOTES_ONLY, "quotes": {"provider": "polygon"}, "chains": {"enabled": True}}
    switched = make_config(SYMBOLS, redis_url=redis_url, tradier_url=emulator.url, datasets=datasets)
    runtime._secrets = Secrets.from_env({"TRADIER_API_KEY": "k-0123456789"})
    with pytest.raises(ConfigError, match="POLYGON_API_KEY is not set"):
        runtime.reconfigure(switched)
    assert runtime.providers.quotes is old_quotes
    assert runtime.config.datasets.quotes.provider == "tradier"
    runtime._secrets = Secrets.from_env(
        {"TRADIER_API_KEY": "k-0123456789", "POLYGON_API_KEY": "p-0123456789"}
    )
    ignored = runtime.reconfigure(switched.model_copy(update={"redis_url": "redis://elsewhere:6379/0"}))
    assert ignored == ["redis_url"]
    assert runtime.config.redis_url == redis_url
    assert runtime.providers.quotes.name == "polygon"
    assert runtime.providers.chains is not None
    assert runtime.providers.chains.gate is old_quotes.gate  # type: ignore[attr-defined]


async def test_a_lower_rate_per_min_applies_to_the_jobs_already_running(
    ctx: dict[str, Any], redis_url: str, emulator: RunningEmulator
) -> None:
    """An edit from 600 to 60 calls/min retunes the gate every job of the process holds, running or
    not: the shared budget is paced at the new rate at once, not at the old one until they end."""
    runtime: Runtime = ctx["runtime"]
    gate = runtime.providers.quotes.gate  # type: ignore[attr-defined]  # held by a job in flight
    assert gate.rate_per_min == 600
    providers = runtime.config.providers.model_copy(
        update={"tradier": runtime.config.providers.tradier.model_copy(update={"rate_per_min": 60})}
    )
    runtime._secrets = Secrets.from_env({"TRADIER_API_KEY": "k-0123456789"})
    runtime.reconfigure(runtime.config.model_copy(update={"providers": providers}))
    assert runtime.providers.quotes.gate is gate  # type: ignore[attr-defined]
    assert (gate.rate_per_min, gate.burst) == (60, burst_of(60))
    assert gate._budget.interval_s == pytest.approx(60 / steady_rate_per_min(60))


def test_fresh_until_is_the_next_refresh_plus_the_slack(ctx: dict[str, Any], clock: FakeClock) -> None:
    """Tuesday 10:00:03 ET: next quote refresh 10:00:15, plus cache.fresh_slack_s (5 s)."""
    runtime: Runtime = ctx["runtime"]
    clock.advance(3)
    assert runtime.fresh_until("quotes", clock.now) == clock.now + timedelta(seconds=12 + 5)


def test_the_watcher_reads_a_changed_file_once_and_logs_a_bad_one_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No change: nothing. A valid edit: the new config. An invalid one: logged once, None."""
    path = tmp_path / "config.yaml"
    path.write_text("watchlist: [AAPL]\n")
    watcher = ConfigWatcher(path, load_config(path, env={}), env={})
    assert watcher.poll() is None
    path.write_text("watchlist: [AAPL, MSFT]\n")
    new = watcher.poll()
    assert new is not None
    assert new.watchlist == ["AAPL", "MSFT"]
    watcher.accepted(new)
    assert watcher.poll() is None
    path.write_text("watchlist: [AAPL, MSFT]\nworker: {tick_s: fast}\n")
    with caplog.at_level(logging.ERROR, logger="worker.reload"):
        assert watcher.poll() is None
        assert watcher.poll() is None
    assert caplog.text.count("config.reload_failed") == 1
    assert "worker.tick_s = 'fast'" in caplog.text


async def test_two_ticks_at_start_catch_up_once(ctx: dict[str, Any], clock: FakeClock) -> None:
    """arq's start-up tick and its first cron tick start together: one catch-up, one batch queued
    (each once enqueued its own catch-up, a millisecond apart, and every batch ran twice)."""

    def stepping() -> Any:
        clock.advance(0.001)
        return clock()

    ctx["runtime"].clock = stepping
    await asyncio.gather(jobs.tick(ctx), jobs.tick(ctx))
    assert len(await _queued(ctx)) == 1


async def test_workers_starting_together_enqueue_each_batch_once(
    ctx: dict[str, Any], clock: FakeClock, redis_url: str
) -> None:
    """Three workers catch up at once, each on its own connection, a millisecond apart: each
    batch is queued once (each checked what ran while the others enqueued, and batches ran twice)."""

    def stepping() -> Any:
        clock.advance(0.001)
        return clock()

    ctx["runtime"].clock = stepping
    clients = [await create_job_pool(redis_url) for _ in range(3)]
    try:
        schedulers = [Scheduler(ctx["runtime"], client) for client in clients]
        reports = await asyncio.gather(*(scheduler.tick() for scheduler in schedulers))
    finally:
        for client in clients:
            await client.aclose()
    assert sum(report.catch_up["quotes"] for report in reports) == 1
    assert len(await _queued(ctx)) == 1


async def test_the_catch_up_tells_readers_which_symbols_each_dataset_keeps(
    ctx: dict[str, Any], redis_url: str
) -> None:
    """At start (and after a reload), `keys.kept(dataset)` holds the watchlist for every scheduled
    dataset and nothing for the others, whatever an earlier config published."""
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.sadd(keys.kept("chains"), "OLD")
    await ctx["scheduler"].tick()
    assert await client.smembers(keys.kept("quotes")) == {b"AAPL", b"MSFT"}
    assert not await client.exists(keys.kept("chains"))
    await client.aclose()


async def test_a_symbol_a_reload_took_off_the_watchlist_is_not_retried(ctx: dict[str, Any]) -> None:
    """A failed refresh's retry is for the symbols the schedule still refreshes: one dropped from
    the watchlist meanwhile is not retried all evening."""
    runtime: Runtime = ctx["runtime"]
    report = RefreshReport(
        "quotes", requested=("AAPL", "MSFT"), failed=("AAPL", "MSFT"), retryable=("AAPL", "MSFT")
    )
    kept = await retry_failures(ctx["redis"], runtime, "quotes", report, job_id="first", attempts_before=0)
    assert kept is not None
    assert kept.symbols == ("AAPL", "MSFT")
    runtime.reconfigure(runtime.config.model_copy(update={"watchlist": ["MSFT"]}))
    narrowed = await retry_failures(
        ctx["redis"], runtime, "quotes", report, job_id="again", attempts_before=0
    )
    assert narrowed is not None
    assert narrowed.symbols == ("MSFT",)
    runtime.reconfigure(runtime.config.model_copy(update={"watchlist": ["SPY"]}))
    assert (
        await retry_failures(ctx["redis"], runtime, "quotes", report, job_id="last", attempts_before=0)
        is None
    )


async def test_a_catch_up_while_the_first_fill_is_queued_adds_no_batch_of_other_symbols(
    ctx: dict[str, Any], clock: FakeClock, redis_url: str
) -> None:
    """A worker starting while the first fill is queued (some of it done) finds the same batches
    queued, not new batches of the symbols still behind: no symbol is queued twice."""
    runtime: Runtime = ctx["runtime"]
    watchlist = [f"S{i:02d}" for i in range(25)]
    runtime.reconfigure(runtime.config.model_copy(update={"watchlist": watchlist}))
    runtime.batch_size = lambda dataset: 10  # type: ignore[method-assign]  # batches of 10, as chains
    await ctx["scheduler"].tick()  # the first catch-up: 3 batches queued
    now = clock.now
    done = Quote(symbol="S00", source="tradier", fetched_at=now, fresh_until=now + timedelta(seconds=20))
    client = redis.asyncio.Redis.from_url(redis_url)
    for symbol in watchlist[:5]:  # half of the first batch got stored by a job still running
        await client.set(keys.quote(symbol), done.model_copy(update={"symbol": symbol}).model_dump_json())
    await client.aclose()
    clock.advance(0.5)
    report = await Scheduler(runtime, ctx["redis"]).tick()
    queued = await ctx["redis"].queued_jobs(queue_name=keys.QUEUE)
    symbols = [s for job in queued for s in job.args[0]]
    assert sorted(symbols) == sorted(watchlist), symbols
    assert report.catch_up.total() == 0
