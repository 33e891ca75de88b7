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
import redis.asyncio

from reader import Reader
from reader.calendar import EXCHANGE_TZ as ET
from reader.calendar import exchange_date
from tests.support import FakeClock, RunningEmulator, make_config
from worker import schedule
from worker.config import Secrets
from worker.runtime import Runtime

START = datetime(2026, 11, 23, 0, 0, tzinfo=ET).astimezone(UTC)
END = datetime(2026, 11, 30, 9, 0, tzinfo=ET).astimezone(UTC)
SYMBOLS = ["AAPL", "MSFT", "SPY"]
READ_EVERY = timedelta(minutes=30)
DATASETS: dict[str, Any] = {
    # Slower than the defaults so that a week stays a few thousand calls; the shape is the same.
    "quotes": {"cadence_s": {"pre": 600, "regular": 60, "post": 600}},
    "chains": {"cadence_s": {"regular": 900}, "expirations": 1},
    "history": {"intraday": {"bar": "15m", "cadence_s": {"regular": 1800}, "lookback_days": 2}},
}


@pytest.fixture
async def runtime(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> AsyncIterator[Runtime]:
    clock.now = START
    config = make_config(
        SYMBOLS,
        redis_url=redis_url,
        tradier_url=emulator.url,
        providers={"tradier": {"base_url": emulator.url, "rate_per_min": 100_000, "max_concurrency": 8}},
        datasets=DATASETS,
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as opened:
        yield opened
    await client.aclose()


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


async def test_a_week_calls_upstream_only_when_data_can_change(
    runtime: Runtime, emulator: RunningEmulator, clock: FakeClock, redis_url: str
) -> None:
    """Zero calls in closed phases but the closing refreshes (and the start on an empty cache); every
    read during regular hours is fresh."""
    calls: Counter[tuple[str, str]] = Counter()

    def upstream_total() -> int:
        return int(emulator.state.stats()["total"])

    # Start: the cache is empty, so everything is fetched at once, whatever the phase (the catch-up).
    before = upstream_total()
    await runtime.refresh_watchlist()
    calls[(exchange_date(clock.now).isoformat(), "start")] += upstream_total() - before

    last = {
        name: schedule.latest_refresh(plan.cadence, runtime.calendar, clock.now)
        for name, plan in runtime.scheduled.items()
    }
    reads = 0
    stale: list[str] = []
    next_read = START + timedelta(seconds=29)  # off the refresh grid: reads between refreshes
    async with Reader(redis_url, clock=clock) as reader:
        while True:
            upcoming = {
                name: schedule.next_refresh(plan.cadence, runtime.calendar, clock.now)
                for name, plan in runtime.scheduled.items()
            }
            while runtime.calendar.phase(next_read) != "regular" or next_read <= clock.now:
                next_read += READ_EVERY
            at = min([*upcoming.values(), next_read])
            if at >= END:
                break
            clock.now = at
            if at == next_read:
                stale += await _read_everything(reader, at)
                reads += 1
            for name, plan in runtime.scheduled.items():
                slot = schedule.due_slot(plan.cadence, runtime.calendar, last[name], at)
                if slot is None:
                    continue
                last[name] = slot
                before = upstream_total()
                for batch in runtime.batches(name):
                    report = await runtime.refresh(name, batch)
                    assert report.complete, report.errors
                calls[(exchange_date(at).isoformat(), _category(runtime, name, at))] += (
                    upstream_total() - before
                )

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
