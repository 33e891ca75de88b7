"""A simulated week on a fake clock: the real schedule and refresh code against the emulator.

From Monday 2026-11-23 00:00 ET (an empty cache) to Monday 2026-11-30 09:00 ET, through
Thanksgiving and the half day after it, in seconds of wall clock: the clock jumps from one
refresh time to the next. Prints the upstream calls per day and phase.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reader import Reader, keys
from reader.calendar import EXCHANGE_TZ as ET
from reader.calendar import exchange_date
from tests.support import FakeClock, RunningEmulator, create_job_pool, make_config, run_queued_jobs
from worker import jobs, schedule
from worker.config import Secrets
from worker.runtime import Runtime

START = datetime(2026, 11, 23, 0, 0, tzinfo=ET).astimezone(UTC)
END = datetime(2026, 11, 30, 9, 0, tzinfo=ET).astimezone(UTC)
SYMBOLS = ["AAPL", "MSFT", "SPY"]
READ_EVERY = timedelta(minutes=30)
DATASETS: dict[str, Any] = {
    # Slower than the defaults so that a week stays a few thousand calls; the shape is the same.
    "quotes": {"cadence_s": {"pre": 600, "regular": 60, "post": 600}},
    "chains": {"cadence_s": {"regular": 1800}, "expirations": 1},
    "history": {"intraday": {"bar": "15m", "cadence_s": {"regular": 1800}, "lookback_days": 2}},
}


@pytest.fixture
async def worker_ctx(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> AsyncIterator[dict[str, Any]]:
    """What a worker process holds (runtime, scheduler) on the fake clock, started on an empty cache."""
    clock.now = START
    config = make_config(
        SYMBOLS,
        redis_url=redis_url,
        tradier_url=emulator.url,
        providers={"tradier": {"base_url": emulator.url, "rate_per_min": 100_000, "max_concurrency": 8}},
        datasets=DATASETS,
    )
    pool = await create_job_pool(redis_url)
    ctx: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
    await jobs.startup(ctx)
    yield ctx
    await jobs.shutdown(ctx)
    await pool.aclose()


def _category(runtime: Runtime, dataset: str, at: datetime) -> str:
    """The phase a refresh ran in, or "closing" for a closing refresh."""
    session = runtime.calendar.trading_day(exchange_date(at))
    if session is not None and schedule.closing_time(runtime.plans[dataset].cadence, session) == at:
        return "closing"
    return runtime.calendar.phase(at)


async def _read_everything(reader: Reader, at: datetime) -> list[str]:
    """Read every dataset of every symbol; the names of the stale ones."""
    stale = []
    for symbol in SYMBOLS:
        items = [
            await reader.quote(symbol),
            await reader.expirations(symbol),
            await reader.chain(symbol),
            await reader.history(symbol),
            await reader.history(symbol, "15m"),
            await reader.indicators(symbol),
        ]
        stale += [f"{symbol} {type(item).__name__} at {at:%a %H:%M}" for item in items if item.stale]
    return stale


@pytest.mark.long(seconds=50)
async def test_a_week_calls_upstream_only_when_data_can_change(
    worker_ctx: dict[str, Any], emulator: RunningEmulator, clock: FakeClock, redis_url: str
) -> None:
    """Zero calls in closed phases but the closing refreshes (and the start on an empty cache); every
    read during regular hours is fresh; the calls are the ones the plans count."""
    runtime: Runtime = worker_ctx["runtime"]
    calls: Counter[tuple[str, str]] = Counter()

    def upstream_total() -> int:
        return int(emulator.state.stats()["total"])

    reads = 0
    stale: list[str] = []
    next_read = START + timedelta(seconds=29)  # off the refresh grid: reads between refreshes
    async with Reader(redis_url, clock=clock) as reader:
        while clock.now < END:
            # The real tick (claims, catch-up, enqueue) at each refresh time, and the jobs it queued.
            await jobs.tick(worker_ctx)
            for dataset, job_id, count in await run_queued_jobs(worker_ctx, upstream_total):
                category = "start" if "catchup" in job_id else _category(runtime, dataset, clock.now)
                calls[(exchange_date(clock.now).isoformat(), category)] += count
            upcoming = [
                schedule.next_refresh(p.cadence, runtime.calendar, clock.now)
                for p in runtime.scheduled.values()
            ]
            while runtime.calendar.phase(next_read) != "regular" or next_read <= clock.now:
                next_read += READ_EVERY
            if next_read < min(upcoming):
                clock.now = next_read
                stale += await _read_everything(reader, clock.now)
                reads += 1
            clock.now = min(upcoming)

    days = sorted({day for day, _ in calls})
    phases = ["start", "closed", "pre", "regular", "post", "closing"]
    print("\nupstream calls of the simulated week, per exchange day and phase")
    print(f"{'day':12}" + "".join(f"{p:>9}" for p in phases))
    for day in days:
        print(f"{day:12}" + "".join(f"{calls[(day, p)]:9d}" for p in phases))
    print(f"{reads} reads of every dataset during regular hours, {len(stale)} stale")

    assert reads == 3 * 13 + 7  # every half hour of three full sessions and the half day
    assert stale == []
    assert all(count == 0 for (day, phase), count in calls.items() if phase == "closed"), calls
    assert sum(c for (day, _), c in calls.items() if day in ("2026-11-26", "2026-11-28", "2026-11-29")) == 0
    # Each session ends with closing refreshes: quotes after the post-market, chains, bars after the close.
    for day in ("2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27"):
        assert calls[(day, "closing")] > 0
        assert calls[(day, "regular")] > calls[(day, "pre")] > 0
    assert calls[("2026-11-27", "regular")] < calls[("2026-11-24", "regular")]  # the 13:00 close
    assert set(days) <= {"2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27", "2026-11-30"}
    assert calls[("2026-11-30", "pre")] > 0  # Monday's pre-market before 09:00
    # What bench/calls_per_week.py counts from the plans is what the refresh code called.
    planned = sum(
        len(schedule.refreshes_between(plan.cadence, runtime.calendar, START + timedelta(seconds=1), END))
        * plan.calls
        for plan in runtime.scheduled.values()
    )
    assert sum(c for (_, phase), c in calls.items() if phase != "start") == planned
    assert int(await worker_ctx["redis"].get(keys.skipped("quotes")) or 0) == 0
