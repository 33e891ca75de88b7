"""Trading days of the exchange (XNYS by default), from `exchange-calendars`.

The library knows regular sessions, holidays and early closes but not extended hours; a
`TradingDay` adds them: pre-market from 04:00 ET to the open, post-market from the close to
20:00 ET (17:00 ET after an early close). Every datetime here is aware UTC.

The library's pitfalls are handled here and nowhere else: it is built for an explicit date range
(its default one ends a year ahead and raises past it) and rebuilt, wider, when a date falls
outside; session lookups use naive midnight dates.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from reader.models import MarketStatus, Phase

EXCHANGE_TZ = ZoneInfo("America/New_York")
PRE_OPEN_ET = time(4, 0)
POST_CLOSE_ET = time(20, 0)
EARLY_POST_CLOSE_ET = time(17, 0)
REGULAR_CLOSE_ET = time(16, 0)

_BUILD_MARGIN_YEARS = 3
_SEARCH_LIMIT_DAYS = 30  # no exchange is closed this long; a longer search means a bug


@dataclass(frozen=True)
class TradingDay:
    """One session of the exchange, with its extended hours."""

    date: date
    pre_open: datetime
    open: datetime
    close: datetime
    post_close: datetime
    early_close: bool


class MarketCalendar:
    """Sessions of one exchange. `extra_closed` lists unscheduled closures the library does not know."""

    def __init__(self, exchange: str = "XNYS", extra_closed: Iterable[date] = ()) -> None:
        self.exchange = exchange
        self.extra_closed = frozenset(extra_closed)
        self._sessions: dict[date, tuple[datetime, datetime]] = {}
        self._first: date | None = None
        self._last: date | None = None
        self._lock = threading.Lock()

    def with_extra_closed(self, extra_closed: Iterable[date]) -> MarketCalendar:
        """This calendar with `extra_closed` added to its closures. The sessions loaded so far are
        shared, not loaded again (loading takes about a second)."""
        adjusted = MarketCalendar(self.exchange, self.extra_closed | frozenset(extra_closed))
        with self._lock:  # `_ensure_range` replaces these, never mutates them: sharing is safe
            adjusted._sessions, adjusted._first, adjusted._last = self._sessions, self._first, self._last
        return adjusted

    def trading_day(self, day: date) -> TradingDay | None:
        """The session on `day` (an exchange-local date), or None if the exchange is closed."""
        self._ensure_range(day)
        hours = self._sessions.get(day)
        if hours is None or day in self.extra_closed:
            return None
        open_, close = hours
        close_et = close.astimezone(EXCHANGE_TZ)
        early = close_et.time() < REGULAR_CLOSE_ET
        post_close_et = EARLY_POST_CLOSE_ET if early else POST_CLOSE_ET
        return TradingDay(
            date=day,
            pre_open=_exchange_time(day, PRE_OPEN_ET),
            open=open_,
            close=close,
            post_close=_exchange_time(day, post_close_et),
            early_close=early,
        )

    def latest_trading_day(self, at: datetime) -> TradingDay:
        """The trading day whose pre-market began at or before `at` (today's, or an earlier one)."""
        day = at.astimezone(EXCHANGE_TZ).date()
        for _ in range(_SEARCH_LIMIT_DAYS):
            found = self.trading_day(day)
            if found is not None and found.pre_open <= at:
                return found
            day -= timedelta(days=1)
        raise LookupError(f"{self.exchange}: no session in the {_SEARCH_LIMIT_DAYS} days before {at}")

    def previous_trading_day(self, day: TradingDay) -> TradingDay:
        """The session before `day`."""
        return self.latest_trading_day(day.pre_open - timedelta(seconds=1))

    def next_trading_day(self, after: date) -> TradingDay:
        """The first session on an exchange-local date after `after`."""
        day = after
        for _ in range(_SEARCH_LIMIT_DAYS):
            day += timedelta(days=1)
            found = self.trading_day(day)
            if found is not None:
                return found
        raise LookupError(f"{self.exchange}: no session in the {_SEARCH_LIMIT_DAYS} days after {after}")

    def phase(self, at: datetime) -> Phase:
        """Where the exchange is at `at`: "pre", "regular", "post" or "closed"."""
        today = self.trading_day(at.astimezone(EXCHANGE_TZ).date())
        return _phase(today, at)

    def status(self, at: datetime) -> MarketStatus:
        """The phase at `at`, today's session if any, and the next open and close after `at`."""
        local_date = at.astimezone(EXCHANGE_TZ).date()
        today = self.trading_day(local_date)
        following = self.next_trading_day(local_date)
        upcoming = [d for d in (today, following) if d is not None]
        return MarketStatus(
            exchange=self.exchange,
            at=at,
            phase=_phase(today, at),
            session=today.date if today else None,
            open=today.open if today else None,
            close=today.close if today else None,
            early_close=today.early_close if today else False,
            next_open=next(d.open for d in upcoming if d.open > at),
            next_close=next(d.close for d in upcoming if d.close > at),
            # Each boundary of a session changes the phase: pre, regular, post, then closed.
            phase_until=next(
                t for d in upcoming for t in (d.pre_open, d.open, d.close, d.post_close) if t > at
            ),
        )

    def _ensure_range(self, day: date) -> None:
        if self._first is not None and self._last is not None and self._first <= day <= self._last:
            return
        with self._lock:
            first = min(day, self._first or day).replace(month=1, day=1)
            last = max(day, self._last or day).replace(month=12, day=31)
            first = first.replace(year=first.year - _BUILD_MARGIN_YEARS)
            last = last.replace(year=last.year + _BUILD_MARGIN_YEARS)
            self._sessions = _load_sessions(self.exchange, first, last)
            self._first, self._last = first, last

    def __repr__(self) -> str:
        return f"<MarketCalendar {self.exchange} extra_closed={len(self.extra_closed)}>"


def exchange_date(at: datetime) -> date:
    """The exchange-local date at `at` (in New York): expirations before it are over."""
    return at.astimezone(EXCHANGE_TZ).date()


def _phase(day: TradingDay | None, at: datetime) -> Phase:
    if day is None or not day.pre_open <= at < day.post_close:
        return "closed"
    if at < day.open:
        return "pre"
    return "regular" if at < day.close else "post"


def _exchange_time(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=EXCHANGE_TZ).astimezone(UTC)


def _load_sessions(exchange: str, first: date, last: date) -> dict[date, tuple[datetime, datetime]]:
    import exchange_calendars  # deferred: it pulls in pandas, which readers of quotes never need

    calendar = exchange_calendars.get_calendar(exchange, start=first.isoformat(), end=last.isoformat())
    schedule = calendar.schedule
    return {
        session.date(): (open_.to_pydatetime().astimezone(UTC), close.to_pydatetime().astimezone(UTC))
        for session, open_, close in zip(schedule.index, schedule["open"], schedule["close"], strict=True)
    }
