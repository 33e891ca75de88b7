"""One clock per test: the processes a test starts read the clock of the emulator they talk to, and
the helper that starts them refuses an emulator whose clock they could not share."""

from __future__ import annotations

import ast
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import aiohttp
import pytest

from emulator.state import EmulatorOptions
from reader.clock import CLOCK_OFFSET_ENV, Clock, ShiftedClock, clock_from_env, system_now
from tests.support import (
    REPO,
    TUESDAY_10_ET,
    ClockMismatch,
    FakeClock,
    RunningEmulator,
    start_emulator,
    start_process,
)

PRINT_NOW = "from reader.clock import utc_now; print(utc_now().isoformat())"


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
        with pytest.raises(ClockMismatch, match=r"given its offset \(\+0\.000 s\) would read"):
            await start_process(unshared, "-c", PRINT_NOW)


@pytest.mark.processes
async def test_a_process_reads_the_clock_of_its_emulator(
    emulator: RunningEmulator, clock: ShiftedClock
) -> None:
    """Whatever today is, a process started against the emulator reads the emulator's Tuesday."""
    process = await start_process(emulator, "-c", PRINT_NOW)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    seen = datetime.fromisoformat(out.decode().strip())
    assert seen.date() == TUESDAY_10_ET.date()
    assert abs((seen - clock()).total_seconds()) < 2  # it read it a moment ago


def test_every_process_a_test_starts_against_an_emulator_starts_through_the_guard() -> None:
    """Only `tests/support.py` calls `create_subprocess_exec`: a test's emulator is served by its
    event loop, so a process talking to it is started asynchronously, and thus through
    `support.start_process`, which checks the clocks."""
    offenders = []
    for path in sorted((REPO / "tests").glob("*.py")):
        if path.name == "support.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute | ast.Name) and "create_subprocess_exec" in ast.unparse(node):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == [], f"start these processes with support.start_process: {offenders}"
