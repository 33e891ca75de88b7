"""The fixed-interval schedule and the tick: pure slots, deterministic job ids, one run per batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from arq import Worker

from reader import keys
from tests.support import FakeClock, RunningEmulator, create_job_pool, make_config
from worker import jobs, schedule
from worker.config import Secrets
from worker.settings import worker_options

T0 = datetime(2026, 11, 24, 15, 0, 0, tzinfo=UTC)
T0_EPOCH_S = 1_795_532_400
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("now", "interval_s", "slot", "next_refresh"),
    [
        (T0, 15, T0_EPOCH_S // 15, T0 + timedelta(seconds=15)),
        (T0 + timedelta(seconds=14.999), 15, T0_EPOCH_S // 15, T0 + timedelta(seconds=15)),
        (T0 + timedelta(seconds=15), 15, T0_EPOCH_S // 15 + 1, T0 + timedelta(seconds=30)),
        (T0 + timedelta(seconds=7), 60, T0_EPOCH_S // 60, T0 + timedelta(seconds=60)),
        (T0.astimezone(NEW_YORK), 15, T0_EPOCH_S // 15, T0 + timedelta(seconds=15)),
    ],
)
def test_slots_and_next_refresh_are_pure_functions_of_now(
    now: datetime, interval_s: float, slot: int, next_refresh: datetime
) -> None:
    """The slot and the next refresh depend only on `now` and the interval, in any time zone."""
    assert schedule.slot_of(now, interval_s) == slot
    assert schedule.next_refresh(now, interval_s) == next_refresh


def test_due_batches_cut_the_watchlist_with_stable_ids() -> None:
    """250 symbols in batches of 100 give 3 batches whose ids differ by slot and index only."""
    symbols = [f"S{i:03d}" for i in range(250)]
    due = schedule.due_batches("quotes", symbols, batch_size=100, interval_s=15, now=T0)
    assert [len(b.symbols) for b in due] == [100, 100, 50]
    assert [b.job_id for b in due] == [f"mc:v1:refresh:quotes:{T0_EPOCH_S // 15}:{i}" for i in range(3)]
    again = schedule.due_batches(
        "quotes", symbols, batch_size=100, interval_s=15, now=T0 + timedelta(seconds=9)
    )
    assert again == due
    later = schedule.due_batches(
        "quotes", symbols, batch_size=100, interval_s=15, now=T0 + timedelta(seconds=15)
    )
    assert {b.job_id for b in later}.isdisjoint({b.job_id for b in due})


async def test_ticks_from_several_workers_enqueue_each_batch_once_per_slot(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """Three processes ticking in one slot queue 3 batches, not 9; two burst workers run them once."""
    config = make_config([f"S{i:03d}" for i in range(250)], redis_url=redis_url, tradier_url=emulator.url)
    pools = []
    contexts: list[dict[str, Any]] = []
    for _ in range(3):
        pool = await create_job_pool(redis_url)
        pools.append(pool)
        ctx: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
        await jobs.startup(ctx)
        contexts.append(ctx)
    try:
        enqueued = [await jobs.tick(ctx) for ctx in contexts]
        clock.advance(5)
        enqueued.append(await jobs.tick(contexts[0]))
        assert enqueued == [3, 0, 0, 0]
        options = worker_options(config, secrets, clock=clock, scheduled=False)
        workers = [
            Worker(**{**options, "burst": True, "handle_signals": False, "poll_delay": 0.01})
            for _ in range(2)
        ]
        await asyncio.gather(*(w.main() for w in workers))
        assert sum(w.jobs_complete for w in workers) == 3
        assert emulator.calls() == {"200": 3}
        # The finished batches' results block a re-run in the same slot...
        assert await jobs.tick(contexts[1]) == 0
        # ...and the next slot queues the batches again.
        clock.advance(15)
        assert await jobs.tick(contexts[1]) == 3
        for w in workers:
            await w.close()
    finally:
        for ctx in contexts:
            await jobs.shutdown(ctx)
        for pool in pools:
            await pool.aclose()
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(keys.QUEUE) == 3
    client.close()
