"""When refreshes are due: pure functions of the exchange calendar, a dataset's cadence and time.

A trading day is cut into phases (reader.calendar): closed until 04:00 ET, pre until the open,
regular until the close, post until 20:00 ET (17:00 after an early close), then closed. A
`Cadence` gives seconds between refreshes per phase (a phase it does not name is off); refresh
times are aligned to the start of each phase, so they fall on the same exchange-local times
whatever the UTC offset (DST moves nothing). A cadence with `close_refresh` adds one refresh
`closing_delay_s` after the end of the last phase of the day that it refreshes in (after the
regular close if it refreshes in none), so the final values of the day are stored once; after it
nothing is due until the next phase with a cadence. Days without a session are closed all day.

An item fetched at t is fresh until the first refresh time after t. Every datetime is aware UTC.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from reader import keys
from reader.calendar import EXCHANGE_TZ, MarketCalendar, TradingDay, exchange_date
from reader.models import Phase

_SEARCH_DAYS = 21  # more than any closure; a longer search means a cadence that never refreshes
_ACTIVE: tuple[Phase, ...] = ("pre", "regular", "post")


@dataclass(frozen=True)
class Cadence:
    """Seconds between refreshes in each phase (absent: off), and whether a closing refresh follows."""

    seconds: Mapping[Phase, float] = field(default_factory=dict)
    close_refresh: bool = True
    closing_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.seconds and not self.close_refresh:
            raise ValueError("a cadence with no phase and no closing refresh never refreshes")
        for phase, seconds in self.seconds.items():
            if seconds <= 0:
                raise ValueError(f"cadence for {phase} = {seconds}: seconds between refreshes must be > 0")

    @property
    def shortest_s(self) -> float:
        """The shortest interval: how often it refreshes at its busiest."""
        return min(self.seconds.values(), default=86_400.0)


@dataclass(frozen=True)
class Segment:
    """A stretch of one exchange-local day in one phase: [start, end)."""

    phase: Phase
    start: datetime
    end: datetime


def day_segments(calendar: MarketCalendar, day: date) -> list[Segment]:
    """The phases of exchange-local `day`, midnight to midnight, in order."""
    midnight = _midnight(day)
    next_midnight = _midnight(day + timedelta(days=1))
    session = calendar.trading_day(day)
    if session is None:
        return [Segment("closed", midnight, next_midnight)]
    return [
        Segment("closed", midnight, session.pre_open),
        Segment("pre", session.pre_open, session.open),
        Segment("regular", session.open, session.close),
        Segment("post", session.close, session.post_close),
        Segment("closed", session.post_close, next_midnight),
    ]


def closing_time(cadence: Cadence, session: TradingDay) -> datetime | None:
    """When the closing refresh of `session` runs, if the cadence has one."""
    if not cadence.close_refresh:
        return None
    ends = {"pre": session.open, "regular": session.close, "post": session.post_close}
    active = [phase for phase in _ACTIVE if phase in cadence.seconds]
    end = ends[active[-1]] if active else session.close
    return end + timedelta(seconds=cadence.closing_delay_s)


def day_refreshes(cadence: Cadence, calendar: MarketCalendar, day: date) -> Iterator[datetime]:
    """Every refresh time on exchange-local `day`, in order (a closing refresh may fall after
    midnight only with an absurd delay; it is listed on its session's day)."""
    times: list[datetime] = []
    for segment in day_segments(calendar, day):
        seconds = cadence.seconds.get(segment.phase)
        if seconds is None:
            continue
        span = (segment.end - segment.start).total_seconds()
        times += [segment.start + timedelta(seconds=k * seconds) for k in range(math.ceil(span / seconds))]
    session = calendar.trading_day(day)
    closing = closing_time(cadence, session) if session is not None else None
    if closing is not None:
        times.append(closing)
    return iter(sorted(set(times)))


def next_refresh(cadence: Cadence, calendar: MarketCalendar, after: datetime) -> datetime:
    """The first refresh time strictly after `after`."""
    day = exchange_date(after)
    for offset in range(_SEARCH_DAYS):
        found = _day_candidates(cadence, calendar, day + timedelta(days=offset), after, later=True)
        if found:
            return min(found)
    raise LookupError(f"{cadence} has no refresh in the {_SEARCH_DAYS} days after {after}")


def latest_refresh(cadence: Cadence, calendar: MarketCalendar, at: datetime) -> datetime | None:
    """The last refresh time at or before `at` (None if there is none in the preceding weeks)."""
    day = exchange_date(at)
    for offset in range(_SEARCH_DAYS):
        found = _day_candidates(cadence, calendar, day - timedelta(days=offset), at, later=False)
        if found:
            return max(found)
    return None


def _day_candidates(
    cadence: Cadence, calendar: MarketCalendar, day: date, at: datetime, *, later: bool
) -> list[datetime]:
    """Per segment of `day`, the first refresh time after `at` (`later`) or the last at or before
    it, by arithmetic on the segment's grid rather than by listing every time."""
    found: list[datetime] = []
    for segment in day_segments(calendar, day):
        seconds = cadence.seconds.get(segment.phase)
        if seconds is None:
            continue
        offset_s = (at - segment.start).total_seconds()
        if later:
            k = 0 if offset_s < 0 else math.floor(offset_s / seconds) + 1
        else:
            if offset_s < 0:
                continue
            last_k = math.ceil((segment.end - segment.start).total_seconds() / seconds) - 1
            k = min(math.floor(offset_s / seconds), last_k)
        candidate = segment.start + timedelta(seconds=k * seconds)
        if segment.start <= candidate < segment.end:
            found.append(candidate)
    session = calendar.trading_day(day)
    closing = closing_time(cadence, session) if session is not None else None
    if closing is not None and (closing > at if later else closing <= at):
        found.append(closing)
    return found


def refreshes_between(
    cadence: Cadence, calendar: MarketCalendar, start: datetime, end: datetime
) -> list[datetime]:
    """Every refresh time in [start, end)."""
    found: list[datetime] = []
    day = exchange_date(start)
    while _midnight(day) < end:
        found += [t for t in day_refreshes(cadence, calendar, day) if start <= t < end]
        day += timedelta(days=1)
    return found


@dataclass(frozen=True)
class DueBatch:
    """One batch of one dataset to refresh for one slot (a refresh time, or a catch-up)."""

    dataset: str
    slot: str
    symbols: tuple[str, ...]

    @property
    def batch_id(self) -> str:
        """Names the batch by its content: the same symbols give the same id on every worker, and
        editing the watchlist changes only the ids of the batches it changes."""
        return batch_id(self.symbols)

    @property
    def job_id(self) -> str:
        return keys.refresh_job_id(self.dataset, self.slot, self.batch_id)


def batch_id(symbols: Sequence[str]) -> str:
    return hashlib.blake2b(",".join(symbols).encode(), digest_size=6).hexdigest()


def batches(symbols: Sequence[str], batch_size: int) -> list[tuple[str, ...]]:
    """`symbols` cut into consecutive batches of at most `batch_size`, in sorted order, so that
    an added symbol moves as few others as possible into another batch."""
    ordered = sorted(symbols)
    return [tuple(ordered[i : i + batch_size]) for i in range(0, len(ordered), batch_size)]


def slot_name(at: datetime) -> str:
    """A refresh time as it appears in job ids: epoch seconds."""
    return str(int(at.timestamp()))


def due_slot(
    cadence: Cadence, calendar: MarketCalendar, last_slot: datetime | None, now: datetime
) -> datetime | None:
    """The refresh time to run now: the latest one at or before `now` if it is after `last_slot`
    (the last one run). Missed earlier ones are not run again: the latest supersedes them."""
    latest = latest_refresh(cadence, calendar, now)
    if latest is None or (last_slot is not None and latest <= last_slot):
        return None
    return latest


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=EXCHANGE_TZ).astimezone(UTC)
