"""One clock per test: the processes a test starts read the clock of the emulator they talk to, and
the helper that starts them refuses an emulator whose clock they could not share."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
import redis

from devtools.faketime import faked_env
from emulator.state import EmulatorOptions
from reader import keys
from reader.clock import CLOCK_OFFSET_ENV, Clock, ShiftedClock, clock_from_env, system_now
from tests.conftest import API_KEY
from tests.support import (
    PRINT_NOW,
    REPO,
    TUESDAY_10_ET,
    ClockMismatch,
    FakeClock,
    RunningEmulator,
    child_env,
    faketime_library_or_skip,
    start_emulator,
    start_process,
)


def test_no_offset_in_the_environment_is_the_system_clock() -> None:
    """Unset or empty: the system clock itself, not a shifted copy of it."""
    assert clock_from_env({}) is system_now
    assert clock_from_env({CLOCK_OFFSET_ENV: " "}) is system_now


def test_an_offset_in_the_environment_shifts_the_clock() -> None:
    """`MARKETCACHE_CLOCK_OFFSET_S=-3600.5` reads an hour and half a second behind the system clock."""
    clock = clock_from_env({CLOCK_OFFSET_ENV: "-3600.5"})
    assert isinstance(clock, ShiftedClock)
    shifted = clock()
    behind_s = (system_now() - shifted).total_seconds()
    assert 3600.5 <= behind_s < 3601.5


@pytest.mark.parametrize("raw", ["tomorrow", "nan", "inf", "1e400"])
def test_a_bad_offset_names_the_value_and_the_fix(raw: str) -> None:
    """A value that is not a finite number of seconds is refused, saying what to do."""
    with pytest.raises(ValueError, match=rf"{CLOCK_OFFSET_ENV}='{raw}' is not a number.*unset it"):
        clock_from_env({CLOCK_OFFSET_ENV: raw})


def test_a_shifted_clock_hands_itself_to_a_process_through_its_env() -> None:
    """`env()` rebuilds the same clock in another process (`clock_from_env`), and it runs."""
    clock = ShiftedClock.starting_at(TUESDAY_10_ET)
    again = clock_from_env(clock.env())
    assert abs((again() - clock()).total_seconds()) < 0.01
    assert abs((clock() - TUESDAY_10_ET).total_seconds()) < 1


@contextlib.asynccontextmanager
async def _emulator_on(clock: Clock) -> AsyncIterator[RunningEmulator]:
    running = await start_emulator(EmulatorOptions(), clock)
    try:
        yield running
    finally:
        await running.server.close()


async def _emulator_clock(emulator: RunningEmulator) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.url}/_emulator/clock") as r:
        answer: dict[str, object] = await r.json()
        return answer


async def test_the_emulator_says_whether_its_clock_can_be_shared() -> None:
    """A frozen test clock has no offset to hand on; a shifted one announces its own."""
    async with _emulator_on(FakeClock()) as frozen:
        assert await _emulator_clock(frozen) == {"now": TUESDAY_10_ET.isoformat(), "offset_s": None}
    async with _emulator_on(ShiftedClock(-86_400.0)) as shifted:
        answer = await _emulator_clock(shifted)
    assert answer["offset_s"] == -86_400.0
    yesterday = system_now() - timedelta(days=1)
    assert abs(datetime.fromisoformat(str(answer["now"])) - yesterday) < timedelta(seconds=1)


async def test_a_process_is_not_started_against_an_emulator_on_a_frozen_clock() -> None:
    """The mistake of issue 10: the emulator on the test's frozen Tuesday, the process on today."""
    async with _emulator_on(FakeClock()) as frozen:
        with pytest.raises(ClockMismatch, match=r"reads 2026-11-24T15:00:00\+00:00.*`processes`"):
            await start_process(frozen, "-c", PRINT_NOW)


class _UnsharedClock(ShiftedClock):
    """A clock that announces one offset and reads another (an emulator under another libfaketime)."""

    def __call__(self) -> datetime:
        return super().__call__() + timedelta(hours=1)


async def test_a_process_is_not_started_against_an_emulator_its_offset_does_not_explain() -> None:
    """An emulator whose time is not the system clock plus the offset it announces is refused."""
    async with _emulator_on(_UnsharedClock(0.0)) as unshared:
        with pytest.raises(ClockMismatch, match=r"given the emulator's offset \(\+0\.000 s\) read"):
            await start_process(unshared, "-c", PRINT_NOW)


@pytest.mark.processes
async def test_a_process_reads_the_clock_of_its_emulator(
    emulator: RunningEmulator, clock: ShiftedClock
) -> None:
    """Whatever today is, a process started against the emulator reads the emulator's Tuesday."""
    before = clock()
    process = await start_process(emulator, "-c", PRINT_NOW)
    out, err = await process.communicate()
    after = clock()
    assert process.returncode == 0, err.decode()
    seen = datetime.fromisoformat(out.decode().strip())
    assert seen.date() == TUESDAY_10_ET.date()
    assert before - timedelta(milliseconds=1) <= seen <= after + timedelta(milliseconds=1)


@pytest.mark.processes
async def test_a_process_under_another_libfaketime_is_refused(emulator: RunningEmulator) -> None:
    """A process whose own clock runs elsewhere (here a day ahead) is caught by the probe."""
    library = faketime_library_or_skip()
    with pytest.raises(
        ClockMismatch, match=r"read 2026-11-25T15:00:0\d.*while the emulator at .* read 2026-11-24"
    ):
        await start_process(emulator, "-c", PRINT_NOW, **faked_env(library, system_now() + timedelta(days=1)))


async def test_the_emulator_refuses_a_request_whose_date_is_on_another_clock(
    emulator: RunningEmulator,
) -> None:
    """The worker sends its clock in `Date`; 5 s away from the emulator's is a 400 naming both."""
    url = f"{emulator.url}/v1/markets/quotes"
    headers = {"Authorization": "Bearer k", "Accept": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        statuses = []
        for offset_s in (None, 0, -5, 5, 6, -86_400):
            sent = (
                {}
                if offset_s is None
                else {"Date": format_datetime(TUESDAY_10_ET + timedelta(seconds=offset_s), usegmt=True)}
            )
            async with session.get(url, params={"symbols": "AAPL"}, headers=sent) as response:
                statuses.append(response.status)
                text = await response.text()
    assert statuses == [200, 200, 200, 200, 400, 400]
    assert text == (
        "clock mismatch: the request's Date is 2026-11-23T15:00:00+00:00, the emulator's clock reads "
        "2026-11-24T15:00:00+00:00 (-86400 s apart); the client and the emulator must read one clock "
        "(tests: start processes with tests/support.start_process)"
    )


async def test_a_worker_started_around_the_guard_is_refused_by_the_emulator(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator
) -> None:
    """Issue 10's bug on purpose: a worker process a day ahead of the test's frozen emulator. Every
    request is refused naming both clocks, the refresh exits 1, and nothing is stored."""
    config = tmp_path / "config.yaml"
    config.write_text("watchlist: [AAPL, MSFT]\ndatasets: {history: {daily: {lookback_days: 30}}}\n")
    ahead = ShiftedClock.starting_at(TUESDAY_10_ET + timedelta(days=1))
    env = child_env(
        REDIS_URL=redis_url, TRADIER_BASE_URL=emulator.url, TRADIER_API_KEY=API_KEY, **ahead.env()
    )
    command = [sys.executable, "-m", "worker", "refresh", "--config", str(config)]
    done = await asyncio.to_thread(  # around start_process, as a careless test would
        subprocess.run, command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    assert """HTTP 400 "clock mismatch: the request's Date is 2026-11-25T15:00""" in done.stderr
    assert "the emulator's clock reads 2026-11-24T15:00:00+00:00" in done.stderr
    assert set(emulator.state.stats()["calls"]["/v1/markets/quotes"]) == {"400"}
    client = redis.Redis.from_url(redis_url)
    # The budget it spent and the calls it counted on its own day (`worker.usage`); no data.
    its_day = keys.upstream_day("tradier", (TUESDAY_10_ET + timedelta(days=1)).date())
    assert sorted(client.keys("mc:v1:*")) == sorted([keys.rate_budget("tradier").encode(), its_day.encode()])
    client.close()


_STARTS_A_PROCESS = re.compile(
    r"(subprocess\.(Popen|run|call|check_call|check_output)|Popen|create_subprocess_(exec|shell)"
    r"|os\.(system|popen|spawn\w*|exec\w*|posix_spawn\w*))$"
)
_AROUND_THE_GUARD_ON_PURPOSE = {
    "test_clock.py::test_a_worker_started_around_the_guard_is_refused_by_the_emulator"
}


def test_every_process_a_test_starts_against_an_emulator_starts_through_the_guard() -> None:
    """No function in the tests that names the emulator starts a process by itself (a call, or a
    function handed to `to_thread`): it goes through `support.start_process`, which checks the
    clocks. (A worker that slipped past would still meet the emulator's `Date` check.)"""
    offenders = []
    for path in sorted((REPO / "tests").glob("*.py")):
        if path.name == "support.py":
            continue
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if f"{path.name}::{function.name}" in _AROUND_THE_GUARD_ON_PURPOSE:
                continue
            names = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
            names |= {a.arg for a in ast.walk(function) if isinstance(a, ast.arg)}
            if "emulator" not in names:
                continue
            offenders += [
                f"{path.name}:{node.lineno} {ast.unparse(node)}"
                for node in ast.walk(function)
                if isinstance(node, ast.Attribute | ast.Name) and _STARTS_A_PROCESS.search(ast.unparse(node))
            ]
    assert offenders == [], f"start these processes with support.start_process: {offenders}"


def test_the_scan_for_processes_started_around_the_guard_finds_them() -> None:
    """The scan above would see the ways a test could start a process by itself."""
    for way in ("subprocess.Popen", "subprocess.run", "asyncio.create_subprocess_shell", "os.system"):
        assert _STARTS_A_PROCESS.search(way), way
    assert not _STARTS_A_PROCESS.search("start_process")
