"""The exchange-calendar schedule (pure, from a table of cases) and the tick: one run per batch per slot."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from reader import keys
from reader.calendar import MarketCalendar
from tests.support import FakeClock, RunningEmulator, create_job_pool, make_config
from worker import jobs, schedule
from worker.config import Config, Secrets
from worker.daemon import MarketWorker
from worker.plan import dataset_plans
from worker.settings import worker_options

T0 = datetime(2026, 11, 24, 15, 0, 0, tzinfo=UTC)  # Tuesday 10:00 ET
ET = ZoneInfo("America/New_York")
CALENDAR = MarketCalendar()
PLANS = dataset_plans(Config.model_validate({"watchlist": ["AAPL"]}))


def _et(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ET).astimezone(UTC)


def _due_at(at: datetime) -> set[str]:
    """The datasets with a refresh time exactly at `at`: due now, given everything before ran."""
    last = {
        name: schedule.latest_refresh(plan.cadence, CALENDAR, at - timedelta(milliseconds=1))
        for name, plan in PLANS.items()
    }
    return {
        name
        for name, plan in PLANS.items()
        if plan.scheduled and schedule.due_slot(plan.cadence, CALENDAR, last[name], at) is not None
    }


# (time ET, phase, datasets due at that instant, the quote's next refresh ET = its fresh_until - slack)
CASES = [
    # A regular Tuesday, across the day.
    ("2026-11-24 03:00", "closed", set(), "2026-11-24 04:00"),
    ("2026-11-24 04:00", "pre", {"quotes", "expirations", "intraday"}, "2026-11-24 04:01"),
    ("2026-11-24 09:29:30", "pre", set(), "2026-11-24 09:30"),
    ("2026-11-24 09:30", "regular", {"quotes", "chains", "intraday"}, "2026-11-24 09:30:15"),
    ("2026-11-24 12:00:07", "regular", set(), "2026-11-24 12:00:15"),
    ("2026-11-24 15:59:45", "regular", {"quotes"}, "2026-11-24 16:00"),
    ("2026-11-24 16:00", "post", {"quotes", "intraday"}, "2026-11-24 16:01"),
    (
        "2026-11-24 16:01",
        "post",
        {"quotes", "chains", "history"},
        "2026-11-24 16:02",
    ),  # closing: chains, bars
    ("2026-11-24 20:00", "closed", set(), "2026-11-24 20:01"),
    ("2026-11-24 20:01", "closed", {"quotes", "intraday"}, "2026-11-25 04:00"),  # closing refreshes
    ("2026-11-24 23:30", "closed", set(), "2026-11-25 04:00"),
    # Thanksgiving: closed all day; the next refresh is Friday's pre-market.
    ("2026-11-26 04:00", "closed", set(), "2026-11-27 04:00"),
    ("2026-11-26 12:00", "closed", set(), "2026-11-27 04:00"),
    # The day after: the session closes at 13:00, the post-market at 17:00.
    ("2026-11-27 13:00", "post", {"quotes", "intraday"}, "2026-11-27 13:01"),
    ("2026-11-27 13:01", "post", {"quotes", "chains", "history"}, "2026-11-27 13:02"),
    ("2026-11-27 17:00", "closed", set(), "2026-11-27 17:01"),
    ("2026-11-27 17:01", "closed", {"quotes", "intraday"}, "2026-11-30 04:00"),  # fresh all weekend
    # A weekend.
    ("2026-11-28 12:00", "closed", set(), "2026-11-30 04:00"),
    ("2026-11-29 23:59", "closed", set(), "2026-11-30 04:00"),
    # Christmas Eve closes at 13:00; Christmas is closed.
    ("2026-12-24 13:01", "post", {"quotes", "chains", "history"}, "2026-12-24 13:02"),
    ("2026-12-24 17:01", "closed", {"quotes", "intraday"}, "2026-12-28 04:00"),
    ("2026-12-25 10:00", "closed", set(), "2026-12-28 04:00"),
    # New Year's Day 2027 (a Friday).
    ("2027-01-01 10:00", "closed", set(), "2027-01-04 04:00"),
    # DST: the schedule keeps exchange time on both sides of 2026-03-08 and 2026-11-01.
    ("2026-03-06 04:00", "pre", {"quotes", "expirations", "intraday"}, "2026-03-06 04:01"),
    ("2026-03-09 04:00", "pre", {"quotes", "expirations", "intraday"}, "2026-03-09 04:01"),
    ("2026-03-08 12:00", "closed", set(), "2026-03-09 04:00"),
    ("2026-11-01 01:30", "closed", set(), "2026-11-02 04:00"),  # the hour that happens twice
    ("2026-11-01 12:00", "closed", set(), "2026-11-02 04:00"),
    ("2026-10-30 09:30", "regular", {"quotes", "chains", "intraday"}, "2026-10-30 09:30:15"),
    ("2026-11-02 09:30", "regular", {"quotes", "chains", "intraday"}, "2026-11-02 09:30:15"),
    # More than a year ahead: the calendar is rebuilt wider, no exception.
    ("2028-06-15 10:00", "regular", {"quotes", "chains", "intraday"}, "2028-06-15 10:00:15"),
]


@pytest.mark.parametrize(("at", "phase", "due", "next_quote"), CASES)
def test_schedule_table(at: str, phase: str, due: set[str], next_quote: str) -> None:
    """At each instant: the phase, the datasets due, and the quote's fresh_until (next refresh + slack)."""
    now = _et(at)
    assert CALENDAR.phase(now) == phase
    assert _due_at(now) == due
    quotes = PLANS["quotes"].cadence
    assert schedule.next_refresh(quotes, CALENDAR, now) == _et(next_quote)


def test_dst_keeps_exchange_times_and_moves_utc() -> None:
    """04:00 ET is 09:00 UTC in winter and 08:00 UTC in summer; the refresh grid follows ET."""
    quotes = PLANS["quotes"].cadence
    winter = schedule.next_refresh(quotes, CALENDAR, datetime(2026, 3, 6, 8, 0, tzinfo=UTC))
    summer = schedule.next_refresh(quotes, CALENDAR, datetime(2026, 3, 9, 7, 0, tzinfo=UTC))
    assert (winter.hour, summer.hour) == (9, 8)
    fall = schedule.next_refresh(quotes, CALENDAR, datetime(2026, 11, 2, 7, 0, tzinfo=UTC))
    assert fall == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_fresh_until_of_a_quote_stored_friday_after_the_post_market_is_monday_four() -> None:
    """The issue's example: stored after Friday's post-market, next refreshed Monday 04:00 ET."""
    quotes = PLANS["quotes"].cadence
    stored = _et("2026-11-20 20:01:03")
    assert schedule.next_refresh(quotes, CALENDAR, stored) == _et("2026-11-23 04:00")


def test_a_missed_slot_is_superseded_not_replayed() -> None:
    """due_slot gives the latest refresh time after the last one run, never the ones in between."""
    quotes = PLANS["quotes"].cadence
    last = _et("2026-11-24 10:00")
    assert schedule.due_slot(quotes, CALENDAR, last, _et("2026-11-24 10:00:14")) is None
    assert schedule.due_slot(quotes, CALENDAR, last, _et("2026-11-24 10:01:07")) == _et("2026-11-24 10:01")
    assert schedule.due_slot(quotes, CALENDAR, None, _et("2026-11-28 12:00")) == _et("2026-11-27 17:01")


def test_refreshes_of_a_week_follow_the_calendar() -> None:
    """Chains: 390 per full session, 210 on the half day, one closing each; none on Thanksgiving."""
    chains = PLANS["chains"].cadence
    per_day = Counter(
        t.astimezone(ET).date().isoformat()
        for t in schedule.refreshes_between(
            chains, CALENDAR, _et("2026-11-23 00:00"), _et("2026-11-30 00:00")
        )
    )
    assert per_day == {
        "2026-11-23": 391,
        "2026-11-24": 391,
        "2026-11-25": 391,
        "2026-11-27": 211,
    }


def test_batches_are_named_by_content_and_survive_an_added_symbol() -> None:
    """Batches are cut from the sorted watchlist; ids hash the symbols, so unchanged batches keep theirs."""
    symbols = [f"S{i:03d}" for i in range(250)]
    before = [schedule.DueBatch("quotes", "100", b) for b in schedule.batches(symbols[::-1], 100)]
    assert [len(b.symbols) for b in before] == [100, 100, 50]
    assert before[0].symbols[0] == "S000"
    assert before[0].job_id == f"mc:v1:refresh:quotes:100:{schedule.batch_id(before[0].symbols)}"
    after = [schedule.DueBatch("quotes", "100", b) for b in schedule.batches([*symbols, "ZZZ1"], 100)]
    assert [b.job_id for b in after[:2]] == [b.job_id for b in before[:2]]
    assert after[2].job_id != before[2].job_id


def test_a_cadence_that_never_refreshes_is_refused() -> None:
    """No phase and no closing refresh: refused with the fix."""
    with pytest.raises(ValueError, match="never refreshes"):
        schedule.Cadence({}, close_refresh=False)


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
            MarketWorker(**{**options, "burst": True, "handle_signals": False, "poll_delay": 0.01})
            for _ in range(2)
        ]
        await asyncio.gather(*(w.main() for w in workers))
        assert sum(w.jobs_complete for w in workers) == 3
        assert emulator.calls() == {"200": 3}
        # The slot is claimed in Redis: no re-run in the same slot...
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
