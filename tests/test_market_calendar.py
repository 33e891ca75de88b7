"""One market calendar: the worker publishes its exchange and unscheduled closures, and every
market status a reader tells (the method, the CLI, the agent tool) follows it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
import redis

from agent_tools import tools
from reader import Reader, SyncReader, keys
from reader.calendar import EXCHANGE_TZ, MarketCalendar
from reader.clock import ShiftedClock
from reader.market_status import UNREADABLE, StatusTeller
from reader.models import PublishedCalendar
from tests.support import REPO, FakeClock, RunningEmulator, child_env, create_job_pool, make_config
from worker import jobs
from worker.config import Secrets
from worker.scheduler import Scheduler

MOURNING = date(2026, 12, 1)
"""A Tuesday the installed calendar has as a regular session, closed by the config."""

TEN_ET = datetime(2026, 12, 1, 10, 0, tzinfo=EXCHANGE_TZ).astimezone(UTC)
NEXT_OPEN_ET = "2026-12-02T09:30:00-05:00"


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar()


def _published(*closed: date, exchange: str = "XNYS") -> bytes:
    return (
        PublishedCalendar(exchange=exchange, extra_closed=closed, published_at=TEN_ET)
        .model_dump_json()
        .encode()
    )


@pytest.mark.parametrize(
    ("raw", "phase", "source"),
    [
        (_published(MOURNING), "closed", "worker"),
        (_published(), "regular", "worker"),
        (None, "regular", "installed"),
        (UNREADABLE, "regular", "installed-redis-unreadable"),
        (b'{"exchange": 1}', "regular", "installed"),  # garbled: as if absent
        (b"not json", "regular", "installed"),
    ],
    ids=["closure", "no-closure", "unpublished", "unreadable", "garbled", "not-json"],
)
def test_the_status_follows_the_published_closures(
    calendar: MarketCalendar, raw: object, phase: str, source: str
) -> None:
    """A published closure closes the day; without one the installed calendar answers, and says so."""
    status = StatusTeller(calendar).status(raw, TEN_ET)
    assert (status.phase, status.calendar) == (phase, source)
    if phase == "closed":
        assert status.session is None
        assert status.open is None
        assert status.next_open.astimezone(EXCHANGE_TZ).isoformat() == NEXT_OPEN_ET
    else:
        assert status.session == MOURNING


def test_closures_are_added_without_loading_the_calendar_again(calendar: MarketCalendar) -> None:
    """The adjusted calendar shares the loaded sessions and is kept while the closures stay the same."""
    teller = StatusTeller(calendar)
    calendar.status(TEN_ET)  # loaded
    teller.status(_published(MOURNING), TEN_ET)
    adjusted = teller._calendar(PublishedCalendar.model_validate_json(_published(MOURNING)))
    assert adjusted._sessions is calendar._sessions
    assert teller._calendar(PublishedCalendar.model_validate_json(_published(MOURNING))) is adjusted
    assert calendar.extra_closed == frozenset()  # the base is not changed


@asynccontextmanager
async def _worker_ctx(
    redis_url: str, emulator: RunningEmulator, secrets: Secrets, *closed: date
) -> AsyncIterator[dict[str, Any]]:
    """A worker's context whose config closes `closed`, with its clock at 2026-12-01 10:00 ET."""
    pool = await create_job_pool(redis_url)
    config = make_config(
        ["AAPL"], redis_url=redis_url, tradier_url=emulator.url, schedule={"extra_closed": list(closed)}
    )
    clock = FakeClock(TEN_ET)
    context: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
    await jobs.startup(context)
    try:
        yield context
    finally:
        await jobs.shutdown(context)
        await pool.aclose()


@pytest.fixture
async def worker_ctx(
    redis_url: str, emulator: RunningEmulator, secrets: Secrets
) -> AsyncIterator[dict[str, Any]]:
    """A worker's context whose config closes 2026-12-01, with its clock at 10:00 ET that day."""
    async with _worker_ctx(redis_url, emulator, secrets, MOURNING) as context:
        yield context


def _cli_status(redis_url: str) -> dict[str, Any]:
    env = child_env(REDIS_URL=redis_url, **ShiftedClock.starting_at(TEN_ET).env())
    done = subprocess.run(
        [sys.executable, "-m", "reader", "status"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


async def test_every_reader_face_says_closed_on_a_closure_the_worker_was_told_of(
    worker_ctx: dict[str, Any], redis_url: str
) -> None:
    """`extra_closed: [2026-12-01]` at 10:00 ET that day: the worker, Reader, SyncReader, the CLI and
    the tool all say closed, next open 2026-12-02 09:30 ET."""
    scheduler: Scheduler = worker_ctx["scheduler"]
    assert scheduler.runtime.calendar.phase(TEN_ET) == "closed"
    await scheduler.tick()  # the first tick publishes what the schedule follows

    clock = FakeClock(TEN_ET)
    async with Reader(redis_url, clock=clock) as reader:
        statuses = [await reader.market_status()]
        tools.use_reader(reader)
        try:
            tool = json.loads(await tools.get_market_status_and_date_time())
        finally:
            tools.use_reader(None)
    with SyncReader(redis_url, clock=clock) as sync:
        statuses.append(sync.market_status())
    for status in statuses:
        assert (status.phase, status.session, status.calendar) == ("closed", None, "worker")
        assert status.next_open.astimezone(EXCHANGE_TZ).isoformat() == NEXT_OPEN_ET
    cli = _cli_status(redis_url)
    for answer in (tool, cli):
        assert answer["phase"] == "closed"
        assert answer["session"] is None
        assert answer["calendar"] == "worker"
    assert tool["next_open"] == NEXT_OPEN_ET
    assert datetime.fromisoformat(cli["next_open"]) == datetime.fromisoformat(NEXT_OPEN_ET)


async def test_a_reload_publishes_a_closure_announced_today(
    redis_url: str, emulator: RunningEmulator, secrets: Secrets
) -> None:
    """A closure added to a running worker's config reaches readers with the reload's catch-up."""
    async with _worker_ctx(redis_url, emulator, secrets) as context:
        scheduler: Scheduler = context["scheduler"]
        await scheduler.tick()
        with SyncReader(redis_url, clock=FakeClock(TEN_ET)) as sync:
            assert sync.market_status().phase == "regular"
            config = context["config"]
            closed = config.model_copy(
                update={"schedule": config.schedule.model_copy(update={"extra_closed": [MOURNING]})}
            )
            scheduler.runtime.reconfigure(closed)
            await context["redis"].set(keys.catch_up(), 1)
            await scheduler.tick()
            assert sync.market_status().phase == "closed"


async def test_a_reader_without_redis_tells_the_installed_calendar_and_says_so(
    calendar: MarketCalendar,
) -> None:
    """Redis out of reach: the status still answers, from the installed calendar, flagged."""
    url = "redis://127.0.0.1:1/0"
    async with Reader(url, clock=FakeClock(TEN_ET), calendar=calendar, timeout_s=0.5) as reader:
        status = await reader.market_status()
    assert (status.phase, status.calendar) == ("regular", "installed-redis-unreadable")
    closed_port = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    with closed_port, pytest.raises(redis.ConnectionError):
        closed_port.ping()  # the port is closed indeed
