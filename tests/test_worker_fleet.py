"""Worker processes for real: two of them share one Redis without running a batch twice, and a
running worker applies config.yaml edits (and survives bad ones) without a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from reader import NotCached, SyncReader
from reader import jobs as job_contract
from reader.clock import Clock
from tests.conftest import API_KEY
from tests.support import RunningEmulator, start_worker_process, stop_worker_process, until

pytestmark = pytest.mark.processes  # their emulator runs on a clock they can share

EVERY_2_S = "{pre: 2, regular: 2, post: 2, closed: 2}"


def _config(symbols: list[str], extra: str = "") -> str:
    """Quotes of `symbols` every 2 s in every phase (the test must not depend on today's phase)."""
    return (
        f"watchlist: [{', '.join(symbols)}]\n"
        f"datasets:\n"
        f"  quotes: {{cadence_s: {EVERY_2_S}, close_refresh: false}}\n"
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
