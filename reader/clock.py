"""The one way marketcache reads the time: an injected callable returning an aware UTC datetime.

`utc_now` is the default clock everywhere: the system clock, shifted by `MARKETCACHE_CLOCK_OFFSET_S`
seconds when that variable is set. Only test fixtures set it, in the environment of the worker,
reader and emulator processes they start, so that every process of a test reads one clock
(`ShiftedClock.env()`). An offset, unlike a frozen instant, keeps time running in those processes
(their schedules move on) and means the same instant in each, however late a process starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

CLOCK_OFFSET_ENV = "MARKETCACHE_CLOCK_OFFSET_S"


def system_now() -> datetime:
    """The system clock, in UTC."""
    return datetime.now(UTC)


class ShiftedClock:
    """The system clock plus `offset_s` seconds: a running clock that any process can share."""

    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s
        self._offset = timedelta(seconds=offset_s)

    @classmethod
    def starting_at(cls, instant: datetime) -> ShiftedClock:
        """A clock that reads `instant` (aware) now and runs on from there."""
        return cls((instant - system_now()).total_seconds())

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def env(self) -> dict[str, str]:
        """The environment variable that gives a process started now this same clock as `utc_now`."""
        return {CLOCK_OFFSET_ENV: repr(self.offset_s)}

    def __repr__(self) -> str:
        return f"<ShiftedClock offset_s={self.offset_s:+.3f} now={self().isoformat(timespec='seconds')}>"


def clock_from_env(environ: Mapping[str, str]) -> Clock:
    """`system_now`, or a `ShiftedClock` if `environ` sets `MARKETCACHE_CLOCK_OFFSET_S`.

    Raises `ValueError` naming the value if it is not a finite number of seconds.
    """
    raw = environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not raw:
        return system_now
    try:
        offset_s = float(raw)
    except ValueError:
        offset_s = math.nan
    if not math.isfinite(offset_s):
        raise ValueError(
            f"{CLOCK_OFFSET_ENV}={raw!r} is not a number of seconds; unset it to read the system clock "
            "(only test fixtures set it)"
        )
    return ShiftedClock(offset_s)


def clock_offset_s(clock: Clock) -> float | None:
    """Seconds `clock` runs ahead of the system clock, if it is one a process can share through
    `MARKETCACHE_CLOCK_OFFSET_S` (`system_now` or a `ShiftedClock`); None for any other clock."""
    if clock is system_now:
        return 0.0
    return clock.offset_s if isinstance(clock, ShiftedClock) else None


utc_now: Clock = clock_from_env(os.environ)
"""The clock of this process: the system clock, unless `MARKETCACHE_CLOCK_OFFSET_S` shifts it."""
