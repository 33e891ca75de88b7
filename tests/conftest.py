"""Fixtures: one real redis-server per session (flushed per test), the emulator, an arq worker factory."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from arq import Worker
from arq.connections import ArqRedis

from devtools.redis_server import RedisServer, find_redis_server
from emulator.state import EmulatorOptions
from reader import keys
from reader.clock import Clock, ShiftedClock
from tests.support import (
    TUESDAY_10_ET,
    FakeClock,
    RunningEmulator,
    create_job_pool,
    make_config,
    start_emulator,
)
from worker import jobs
from worker.config import Config, Secrets
from worker.daemon import MarketWorker
from worker.settings import worker_options

API_KEY = "test-key-0123456789abcdef"
POLYGON_API_KEY = "polygon-key-0123456789"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked `long(seconds=...)` first, longest first, so that the parallel processes
    end together instead of one running a long test alone at the end.

    pytest-xdist (with `--maxschedchunk=2`, see pyproject.toml) hands each of its `n` processes the
    next 2 tests, then one at a time from the head: the first 2n long tests are paired longest with
    shortest, one pair per process."""
    long = sorted(
        (item for item in items if item.get_closest_marker("long") is not None),
        key=lambda item: -float(item.get_closest_marker("long").kwargs["seconds"]),  # type: ignore[union-attr]
    )
    nodes = int(getattr(config, "workerinput", {}).get("workercount", 1))
    first, later = long[: 2 * nodes], long[2 * nodes :]
    paired = [item for i in range(len(first) - len(first) // 2) for item in (first[i], first[-1 - i])]
    ordered = list(dict.fromkeys(paired)) + later
    chosen = set(ordered)
    items[:] = ordered + [item for item in items if item not in chosen]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free port (never 6379), for the whole session."""
    with RedisServer(binary=find_redis_server(allow_apt=True)) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's Redis, empty and with fresh command statistics."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.config_resetstat()
    yield redis_server.url
    client.close()


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Clock:
    """Tuesday 2026-11-24 10:00 ET: the clock of the emulator and of an in-process worker, whatever
    today is. Frozen until a test moves it (a `FakeClock`); running (a `ShiftedClock`) in a test
    marked `processes`, whose worker and reader processes share it (`support.start_process`)."""
    if request.node.get_closest_marker("processes") is not None:
        return ShiftedClock.starting_at(TUESDAY_10_ET)
    return FakeClock()


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    return EmulatorOptions(seed=11, rate_per_min=1000)


@pytest.fixture
async def emulator(emulator_options: EmulatorOptions, clock: Clock) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(emulator_options, clock)
    yield running
    await running.server.close()


@pytest.fixture
def secrets() -> Secrets:
    return Secrets.from_env({"TRADIER_API_KEY": API_KEY, "POLYGON_API_KEY": POLYGON_API_KEY})


@pytest.fixture
def monkeypatch_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """monkeypatch with the variables that configure marketcache removed from the environment."""
    for name in (
        "REDIS_URL",
        "TRADIER_API_KEY",
        "POLYGON_API_KEY",
        "TRADIER_BASE_URL",
        "POLYGON_BASE_URL",
        "MARKETCACHE_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
async def worker_processes(
    redis_url: str, emulator: RunningEmulator
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Worker processes a test starts (`support.start_worker_process`), stopped with SIGINT after it."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for process in started:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
    hung = []
    for process in started:
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()  # a worker outlives Redis now: never leave one behind, nor the others
            await process.wait()
            hung.append(process.pid)
    assert not hung, f"worker processes {hung} did not exit within 20 s of SIGINT"


StartWorker = Callable[..., contextlib.AbstractAsyncContextManager[Worker]]


@pytest.fixture
def start_worker(
    redis_url: str, emulator: RunningEmulator, secrets: Secrets, clock: FakeClock
) -> StartWorker:
    """`async with start_worker(watchlist, **sections):` a real arq worker (no schedule) runs in this
    event loop while the block runs, on `redis_url` unless `url=` names another (an ACL user's)."""

    @contextlib.asynccontextmanager
    async def start(
        watchlist: list[str] | None = None, *, url: str | None = None, **sections: Any
    ) -> AsyncIterator[Worker]:
        config = make_config(
            watchlist or ["SPY"], redis_url=url or redis_url, tradier_url=emulator.url, **sections
        )
        options = worker_options(config, secrets, clock=clock, scheduled=False)
        worker = MarketWorker(**{**options, "handle_signals": False, "poll_delay": 0.005})
        task = asyncio.get_running_loop().create_task(worker.async_run())
        try:
            await _until_healthy(redis_url, task)  # as readers see a worker: by its health key
            yield worker
        finally:
            # Burst mode ends the loop between iterations once the queue is empty and its jobs
            # have finished: cancelling it could cut a Redis pipeline in half.
            worker.burst = True
            await asyncio.wait_for(task, timeout=30)
            await worker.close()

    return start


async def _until_healthy(url: str, task: asyncio.Task[None]) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        for _ in range(1000):
            if task.done():
                task.result()  # the worker failed to start: say why
            if await client.exists(keys.WORKER_HEALTH):
                return
            await asyncio.sleep(0.01)
    finally:
        await client.aclose()


RunBatches = Callable[[Config], Awaitable[Worker]]


@pytest.fixture
async def run_scheduled_batches(
    redis_url: str, secrets: Secrets, clock: FakeClock
) -> AsyncIterator[RunBatches]:
    """Runs the real `tick` once (enqueueing what is due), then a real arq worker in burst mode."""
    pools: list[ArqRedis] = []
    workers: list[Worker] = []

    async def run(config: Config) -> Worker:
        pool = await create_job_pool(redis_url)
        pools.append(pool)
        ctx: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
        await jobs.startup(ctx)
        try:
            await jobs.tick(ctx)
        finally:
            await jobs.shutdown(ctx)
        options = worker_options(config, secrets, clock=clock, scheduled=False)
        worker = MarketWorker(**{**options, "burst": True, "handle_signals": False, "poll_delay": 0.01})
        workers.append(worker)
        await worker.main()
        return worker

    yield run
    for worker in workers:
        await worker.close()
    for pool in pools:
        await pool.aclose()
