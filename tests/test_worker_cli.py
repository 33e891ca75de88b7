"""`python -m worker refresh|run` as processes: exit codes, output, and no key in anything printed."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import redis

from emulator.state import EmulatorOptions
from reader import SyncReader, keys
from reader.clock import ShiftedClock
from reader.telemetry import UpstreamDay
from tests.support import TUESDAY_10_ET, RunningEmulator, start_process

pytestmark = pytest.mark.processes  # their emulator runs on a clock they can share

KEY = "cli-test-key-do-not-print"


def _write_config(tmp_path: Path, symbols: list[str]) -> Path:
    path = tmp_path / "config.yaml"
    every_2_s = "{pre: 2, regular: 2, post: 2, closed: 2}"
    path.write_text(f"watchlist: [{', '.join(symbols)}]\ndatasets: {{quotes: {{cadence_s: {every_2_s}}}}}\n")
    return path


async def _start(
    emulator: RunningEmulator, *args: str, redis_url: str, key: str | None = KEY
) -> asyncio.subprocess.Process:
    """`python -m worker *args` against `redis_url` and the emulator, on its clock."""
    env = {"REDIS_URL": redis_url, **({"TRADIER_API_KEY": key} if key is not None else {})}
    return await start_process(emulator, "-m", "worker", *args, **env)


async def _run(
    emulator: RunningEmulator, *args: str, redis_url: str, key: str | None = KEY
) -> tuple[int, str, str]:
    process = await _start(emulator, *args, redis_url=redis_url, key=key)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_refresh_stores_every_symbol_and_exits_0(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator, clock: ShiftedClock
) -> None:
    """One pass stores the whole watchlist and says so."""
    config = _write_config(tmp_path, ["AAPL", "MSFT", "SPY"])
    code, out, err = await _run(emulator, "refresh", "--config", str(config), redis_url=redis_url)
    assert code == 0, err
    assert "stored 3 of 3 symbols" in out
    assert "refresh.batch_done" in err
    # Its upstream calls are added to the exchange day's counters (`worker.usage`).
    stored = redis.Redis.from_url(redis_url).hgetall(keys.upstream_day("tradier", TUESDAY_10_ET.date()))
    day = UpstreamDay.from_hash("tradier", TUESDAY_10_ET.date(), stored)
    assert day.calls == sum(day.statuses.values()) == emulator.state.stats()["total"] > 0
    with SyncReader(redis_url, clock=clock) as reader:
        assert sorted(reader.quotes(["AAPL", "MSFT", "SPY"])) == ["AAPL", "MSFT", "SPY"]
        assert reader.quote("SPY").source == "tradier"
        # The process read the emulator's clock (Tuesday), not today's.
        assert reader.quote("SPY").fetched_at.date() == TUESDAY_10_ET.date()


async def test_refresh_exits_1_when_a_symbol_is_not_listed(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator
) -> None:
    """An unknown symbol is named and the exit code says the pass was incomplete."""
    config = _write_config(tmp_path, ["AAPL", "NOPE"])
    code, out, _ = await _run(emulator, "refresh", "--config", str(config), redis_url=redis_url)
    assert code == 1
    assert "refreshed quotes: stored 1 of 2 symbols; unknown upstream: NOPE" in out


@pytest.mark.parametrize(
    "emulator_options", [EmulatorOptions(seed=11, api_keys=frozenset({"the-right-key"}))]
)
async def test_refresh_with_a_wrong_key_exits_1_and_never_prints_the_key(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator
) -> None:
    """A 401 stores nothing, exits 1, explains which variable to check, and prints no key."""
    client = redis.Redis.from_url(redis_url)
    client.set(keys.quote("AAPL"), b"previous")
    config = _write_config(tmp_path, ["AAPL", "MSFT"])
    code, out, err = await _run(emulator, "refresh", "--config", str(config), redis_url=redis_url)
    assert code == 1
    assert "HTTP 401" in err
    assert "TRADIER_API_KEY" in err
    assert KEY not in out + err
    assert client.get(keys.quote("AAPL")) == b"previous"
    assert client.get(keys.quote("MSFT")) is None
    client.close()


async def test_refresh_never_prints_a_key_an_upstream_echoes(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator
) -> None:
    """An error body quoting our key is printed with the key cut out, in JSON log lines too (each
    log record one object per line; the command's own `error:` lines stay text)."""
    from emulator.state import Fault

    emulator.state.arm(
        Fault(path="/v1/markets/quotes", status=503, body=f"proxy: Authorization: Bearer {KEY}")
    )
    config = _write_config(tmp_path, ["AAPL"])
    args = ("refresh", "--config", str(config), "--log-format", "json")
    code, out, err = await _run(emulator, *args, redis_url=redis_url)
    assert code == 1
    assert "HTTP 503" in err
    assert "Bearer ***" in err
    assert KEY not in out + err
    records = [json.loads(line) for line in err.splitlines() if not line.startswith("error: ")]
    failed = next(r for r in records if r["event"] == "refresh.batch_failed")
    assert (failed["level"], failed["dataset"], failed["symbols"]) == ("INFO", "quotes", 1)
    assert "Bearer ***" in failed["error"]


async def test_missing_api_key_is_a_config_error(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator
) -> None:
    """No TRADIER_API_KEY: exit 2 before any call, naming the variable and `make run`."""
    config = _write_config(tmp_path, ["AAPL"])
    code, _, err = await _run(emulator, "refresh", "--config", str(config), redis_url=redis_url, key=None)
    assert code == 2
    assert "TRADIER_API_KEY is not set" in err
    assert emulator.calls() == {}


async def test_unreachable_redis_is_one_clear_line(tmp_path: Path, emulator: RunningEmulator) -> None:
    """A Redis that is not there: exit 1 with the URL, no traceback."""
    from devtools.redis_server import free_port

    config = _write_config(tmp_path, ["AAPL"])
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err = await _run(emulator, "refresh", "--config", str(config), redis_url=unreachable)
    assert code == 1
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert "worker.redis_unreachable" in err


@pytest.mark.slow
@pytest.mark.parametrize("emulator_options", [EmulatorOptions(seed=11, latency_ms=1500)])
async def test_ctrl_c_lets_the_refresh_in_flight_finish(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator, clock: ShiftedClock
) -> None:
    """SIGINT during an upstream call: the batch completes and is stored, then the worker exits 0."""
    config = _write_config(tmp_path, ["AAPL", "MSFT"])
    process = await _start(emulator, "run", "--config", str(config), redis_url=redis_url)
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not emulator.state.methods:
            assert asyncio.get_running_loop().time() < deadline, "the daemon made no call"
            await asyncio.sleep(0.05)
    except BaseException:
        process.kill()  # the daemon outlives Redis now: never leave it behind
        raise
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    assert emulator.calls() == {"200": 1}
    with SyncReader(redis_url, clock=clock) as reader:
        assert reader.quote("AAPL").symbol == "AAPL"


@pytest.mark.long(seconds=5)
@pytest.mark.slow
async def test_run_daemon_refreshes_on_its_interval_until_interrupted(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator, clock: ShiftedClock
) -> None:
    """`run` refreshes at start and again each interval; SIGINT stops it cleanly (exit 0)."""
    config = _write_config(tmp_path, ["AAPL", "MSFT"])
    process = await _start(emulator, "run", "--config", str(config), redis_url=redis_url)
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while emulator.calls().get("200", 0) < 2:
            assert asyncio.get_running_loop().time() < deadline, "the daemon did not refresh twice"
            await asyncio.sleep(0.1)
    finally:
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, err.decode()
    assert "worker.started symbols=2" in err.decode()
    assert KEY not in err.decode()
    with SyncReader(redis_url, clock=clock) as reader:
        assert reader.quote("MSFT").symbol == "MSFT"
