"""Worker processes for real: two of them share one Redis without running a batch twice, one of
three killed mid-batch loses nothing, and a running worker applies config.yaml edits (and survives
bad ones) without a restart."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from arq.constants import in_progress_key_prefix, result_key_prefix

from emulator.state import Fault
from reader import NotCached, Quote, SyncReader, keys
from reader import jobs as job_contract
from reader.clock import Clock
from reader.telemetry import WorkerHealth
from tests.conftest import API_KEY
from tests.support import (
    RunningEmulator,
    start_process,
    start_worker_process,
    stop_worker_process,
    until,
)
from worker.status import live_workers

pytestmark = pytest.mark.processes  # their emulator runs on a clock they can share

QUOTES = "/v1/markets/quotes"

EVERY_2_S = "{pre: 2, regular: 2, post: 2, closed: 2}"


def _config(symbols: list[str], extra: str = "", cadence_s: int = 2) -> str:
    """Quotes of `symbols` every `cadence_s` in every phase (the test must not depend on today's phase)."""
    every = f"{{pre: {cadence_s}, regular: {cadence_s}, post: {cadence_s}, closed: {cadence_s}}}"
    return (
        f"watchlist: [{', '.join(symbols)}]\n"
        f"datasets:\n"
        f"  quotes: {{cadence_s: {every}, close_refresh: false}}\n"
        f"  expirations: {{enabled: false}}\n"
        f"  chains: {{enabled: false}}\n"
        f"  history: {{enabled: false}}\n"
        f"  indicators: {{enabled: false}}\n"
        f"worker: {{tick_s: 1, shutdown_grace_s: 2}}\n{extra}"
    )


def _cached(redis_url: str, symbol: str, clock: Clock) -> bool:
    with SyncReader(redis_url, clock=clock) as reader:
        try:
            reader.quote(symbol)
        except NotCached:
            return False
    return True


async def test_two_workers_run_each_due_batch_once(
    tmp_path: Path,
    redis_url: str,
    emulator: RunningEmulator,
    worker_processes: list[asyncio.subprocess.Process],
) -> None:
    """Two processes ticking against one Redis: one upstream call per refresh slot, none twice."""
    config = tmp_path / "config.yaml"
    config.write_text(_config(["AAPL", "MSFT", "SPY"]))
    first = await start_worker_process(config, redis_url, emulator, API_KEY)
    second = await start_worker_process(config, redis_url, emulator, API_KEY)
    worker_processes += [first, second]
    await until(lambda: emulator.calls().get("200", 0) >= 6, 30, "six refreshes")
    errors = [await stop_worker_process(first), await stop_worker_process(second)]

    client = redis.Redis.from_url(redis_url)
    results = {
        key.decode(): job_contract.loads(client.get(key) or b"{}")
        for key in client.scan_iter("arq:result:mc:v1:refresh:quotes:*")
    }
    client.close()
    slots = [key.split(":")[-2] for key in results]
    assert len(slots) == len(set(slots)), "a slot ran twice"
    # Each upstream call was one successful job (a job that expired in the queue made no call).
    ran = [key for key, result in results.items() if result.get("s") and result["r"]["stored"] == 3]
    assert emulator.calls() == {"200": len(ran)}
    timed = sorted(int(slot) for slot in slots if not slot.startswith("catchup"))
    assert len(timed) >= 4
    # Never more calls than refresh times elapsed (every 2 s) plus each worker's start-up catch-up.
    assert len(ran) <= (timed[-1] - timed[0]) // 2 + 1 + 2
    assert all("worker.started" in err for err in errors)
    assert not any("Traceback" in err for err in errors)


CADENCE_S = 5
"""Quotes' cadence in the kill test: at least a lease (`worker.daemon.LEASE_S`), as in production."""

SYMBOLS = ["AAPL", "MSFT", "SPY", "TSLA"]

# A worker's DEBUG lines of a refresh job starting and ending (`MarketWorker.run_job`).
JOB_START = re.compile(r"^(\S+ \S+) DEBUG +worker\.daemon job\.started job_id=(mc:v1:refresh:\S+) ")
JOB_END = re.compile(r"^(\S+ \S+) DEBUG +worker\.daemon job\.ended job_id=(mc:v1:refresh:\S+) ")


def _runs(log: str, *, open_until: float) -> list[tuple[str, float, float]]:
    """(job id, started, ended) of each refresh job a worker's log shows, in epoch seconds (its
    log's clock is UTC); a job without an end ran until `open_until`."""
    runs, started = [], {}
    for line in log.splitlines():
        if match := JOB_START.match(line):
            started[match[2]] = _epoch(match[1])
        elif (match := JOB_END.match(line)) and match[2] in started:
            runs.append((match[2], started.pop(match[2]), _epoch(match[1])))
    return runs + [(job_id, at, open_until) for job_id, at in started.items()]


def _epoch(asctime: str) -> float:
    return datetime.strptime(asctime, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()


def _fresh_since(redis_url: str, since: datetime, clock: Clock) -> bool:
    """Every symbol's quote was fetched after `since` and is fresh now (read as stored)."""
    client = redis.Redis.from_url(redis_url)
    try:
        raws = client.mget([keys.quote(symbol) for symbol in SYMBOLS])
    finally:
        client.close()
    quotes = [Quote.model_validate_json(raw) for raw in raws if raw is not None]
    now = clock()
    return len(quotes) == len(SYMBOLS) and all(q.fetched_at > since and q.fresh_until > now for q in quotes)


def _workers(redis_url: str) -> list[WorkerHealth]:
    client = redis.Redis.from_url(redis_url)
    try:
        return live_workers(client)
    finally:
        client.close()


def _running(redis_url: str, job_id: str) -> list[WorkerHealth]:
    """The live workers whose health key lists `job_id` among the jobs they run."""
    return [w for w in _workers(redis_url) if job_id in {job.job_id for job in w.jobs}]


def _result(redis_url: str, job_id: str) -> dict[str, Any] | None:
    """arq's result of `job_id` (refresh jobs keep theirs for minutes), if it has ended."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.get(result_key_prefix + job_id)
    finally:
        client.close()
    return None if raw is None else job_contract.loads(raw)


def _held(redis_url: str) -> list[str]:
    """Ids of the quote batches in progress (their arq in-progress keys)."""
    client = redis.Redis.from_url(redis_url)
    try:
        pattern = in_progress_key_prefix + "mc:v1:refresh:quotes:*"
        return [key.decode().removeprefix(in_progress_key_prefix) for key in client.scan_iter(pattern)]
    finally:
        client.close()


@pytest.mark.long(seconds=22)
async def test_one_of_three_workers_killed_mid_batch_loses_nothing(
    tmp_path: Path,
    redis_url: str,
    emulator: RunningEmulator,
    clock: Clock,
    worker_processes: list[asyncio.subprocess.Process],
) -> None:
    """SIGKILL of the worker (found by its health key) whose quotes batch the upstream holds: every
    quote is refreshed again within two cadences, and no batch ran in two processes at once."""
    config = tmp_path / "config.yaml"
    config.write_text(_config(SYMBOLS, cadence_s=CADENCE_S))
    logged: dict[int, asyncio.Task[bytes]] = {}  # read as they run: a full pipe would block a worker
    for _ in range(3):
        process = await start_process(
            emulator, "-m", "worker", "run", "--config", str(config), "--log-level", "DEBUG",
            REDIS_URL=redis_url, TRADIER_API_KEY=API_KEY, TZ="UTC",
        )  # fmt: skip
        worker_processes.append(process)
        assert process.stderr is not None
        logged[process.pid] = asyncio.create_task(process.stderr.read())
    await until(lambda: _fresh_since(redis_url, datetime.min.replace(tzinfo=UTC), clock), 30, "first quotes")
    await until(lambda: len(_workers(redis_url)) == 3, 10, "three health keys")

    emulator.state.arm(Fault(path=QUOTES, kind="hang"))  # the next batch's request is held
    await until(lambda: emulator.state.armed() == 0, 2 * CADENCE_S, "a batch held at the upstream")
    await until(lambda: len(_held(redis_url)) == 1, 3, "one batch in progress")  # others end in ms
    [held] = _held(redis_url)
    await until(lambda: len(_running(redis_url, held)) == 1, 3, "the held batch in a health key")
    [holder] = _running(redis_url, held)
    assert [(j.function, j.dataset, j.symbols) for j in holder.jobs if j.job_id == held] == [
        ("refresh_quotes", "quotes", len(SYMBOLS))
    ]
    [victim] = [p for p in worker_processes if p.pid == holder.pid]
    killed_at, killed_wall = clock(), time.time()
    victim.kill()
    try:
        recovered_s = await until(
            lambda: _fresh_since(redis_url, killed_at, clock), 4 * CADENCE_S, "fresh quotes"
        )
        # The held batch itself is retaken once its lease lapses, even if another job (the next
        # slot's, a start-up catch-up) refreshed its symbols first.
        await until(lambda: _result(redis_url, held) is not None, 4 * CADENCE_S, "the held batch's retake")
    finally:
        for process in worker_processes:
            if process is not victim:
                process.send_signal(signal.SIGINT)
        survivors = [p for p in worker_processes if p is not victim]
        await asyncio.wait([asyncio.ensure_future(p.wait()) for p in survivors], timeout=20)
        stuck = [p.pid for p in survivors if p.returncode is None]
        for process in survivors:
            if process.returncode is None:
                process.kill()
        logs = {pid: (await log).decode() for pid, log in logged.items()}
    runs = [
        run
        for pid, log in logs.items()
        for run in _runs(log, open_until=killed_wall if pid == victim.pid else math.inf)
    ]
    jobs = "\n".join(
        f"{job_id} {start - killed_wall:+.3f} {end - killed_wall:+.3f}" for job_id, start, end in runs
    )
    assert recovered_s < 2 * CADENCE_S, f"{recovered_s:.1f} s; runs (s after the kill):\n{jobs}"
    assert not stuck, "\n".join(logs[pid][-5000:] for pid in stuck)
    assert [p.returncode for p in survivors] == [0, 0]
    assert not any("Traceback" in log for log in logs.values()), logs
    # The held batch ran in the killed worker, then once more, in a survivor, after the kill.
    held_runs = sorted((start, end) for job_id, start, end in runs if job_id == held)
    assert len(held_runs) == 2, jobs
    assert held_runs[0][1] == killed_wall
    assert held_runs[1][0] > killed_wall
    # No refresh job ran in two processes at once.
    by_job: dict[str, list[tuple[float, float]]] = {}
    for job_id, start, end in runs:
        by_job.setdefault(job_id, []).append((start, end))
    for job_id, spans in by_job.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"{job_id} ran twice at once: {spans}"
    # The second run (arq's try 2) stored the batch: its job had not expired under the lease.
    result = _result(redis_url, held) or {}
    assert (result.get("s"), result.get("t"), result.get("r", {}).get("stored")) == (True, 2, len(SYMBOLS))


async def test_config_edits_apply_to_a_running_worker_and_bad_ones_are_survived(
    tmp_path: Path,
    redis_url: str,
    emulator: RunningEmulator,
    clock: Clock,
    worker_processes: list[asyncio.subprocess.Process],
) -> None:
    """An added symbol is readable within two ticks; an invalid edit is logged, the old watchlist runs on."""
    config = tmp_path / "config.yaml"
    config.write_text(_config(["AAPL"]))
    process = await start_worker_process(config, redis_url, emulator, API_KEY)
    worker_processes.append(process)
    await until(lambda: _cached(redis_url, "AAPL", clock), 30, "the first AAPL quote")

    config.write_text(_config(["AAPL", "MSFT"]))
    waited_s = await until(lambda: _cached(redis_url, "MSFT", clock), 10, "MSFT after the edit")
    # Two ticks of 1 s, plus the refresh itself; generous for a loaded CI machine.
    assert waited_s < 2 * 1 + 3

    config.write_text(_config(["AAPL", "MSFT", "TSLA"]).replace("watchlist:", "watchlst:"))
    calls_before = emulator.calls().get("200", 0)
    await until(
        lambda: emulator.calls().get("200", 0) >= calls_before + 3, 15, "refreshes after the bad edit"
    )
    assert process.returncode is None
    assert not _cached(redis_url, "TSLA", clock)
    err = await stop_worker_process(process)
    assert "config.reloaded" in err
    assert "added=MSFT" in err
    assert "config.reload_failed" in err
    assert "watchlst: unknown key" in err
    assert "did you mean 'watchlist'" in err
