"""Coalescing across processes: 100 concurrent misses for one symbol, asked from four reader
processes at the same moment, reach the upstream once. A real `python -m worker run` serves
them; the emulator answers after 150 ms, so every miss arrives while the one fetch is in flight
or just after it landed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import redis

from emulator.state import EmulatorOptions
from reader import keys
from tests.conftest import API_KEY
from tests.support import RunningEmulator, start_process, start_worker_process, until

pytestmark = pytest.mark.processes  # their emulator runs on a clock they can share

# Quotes of SPY at start (so the worker is known to be up), then once a week.
CONFIG = """\
watchlist: [SPY]
datasets:
  quotes: {cadence_s: {closed: 604800}, close_refresh: false}
  expirations: {enabled: false}
  chains: {enabled: false}
  history: {enabled: false}
  indicators: {enabled: false}
worker: {tick_s: 1, shutdown_grace_s: 2}
"""


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    return EmulatorOptions(seed=11, rate_per_min=1000, latency_ms=150)


@pytest.mark.slow
async def test_100_concurrent_misses_from_4_processes_make_one_upstream_call(
    tmp_path: Path,
    redis_url: str,
    emulator: RunningEmulator,
    worker_processes: list[asyncio.subprocess.Process],
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    worker_processes.append(await start_worker_process(config, redis_url, emulator, API_KEY))
    client = redis.Redis.from_url(redis_url)
    await until(lambda: bool(client.exists(keys.quote("SPY"))), 30, "the worker's first refresh")
    client.close()
    start_at = time.time() + 3  # after every process has started and imported the reader
    command = ["-m", "tests.miss_client", redis_url, "AAPL", "25", str(start_at)]
    readers = [await start_process(emulator, *command) for _ in range(4)]
    outputs = await asyncio.wait_for(asyncio.gather(*(r.communicate() for r in readers)), timeout=60)
    answers = []
    for reader, (out, err) in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, err.decode()
        answers += json.loads(out)
    assert answers == ["AAPL"] * 100
    assert emulator.state.quoted["AAPL"] == 1
