"""Where the exchange day stands at an instant, and the closures ahead, from `MarketCalendar`.

Fidelity points: the four phases Tradier's clock names (premarket from 04:00 ET, open, postmarket
until 20:00 ET or 17:00 ET after an early close, closed) with the next change; Polygon's
`market` values (open, extended-hours, closed); and the upcoming full closures and early closes,
named as Polygon names them (an early close takes the name of the holiday it neighbours).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from reader.calendar import MarketCalendar, TradingDay


@dataclass(frozen=True)
class Phase:
    """`state` at an instant (premarket/open/postmarket/closed) and when it changes, to what."""

    state: str
    session: TradingDay | None  # the session in progress, for every state but closed
    next_change: datetime
    next_state: str

    @property
    def polygon_market(self) -> str:
        return {"open": "open", "closed": "closed"}.get(self.state, "extended-hours")


@dataclass(frozen=True)
class Closure:
    """A weekday without a session (`early_close` False) or with a shortened one."""

    date: date
    name: str
    session: TradingDay | None  # the shortened session of an early close


def phase_at(calendar: MarketCalendar, at: datetime) -> Phase:
    """The phase of the exchange day at `at`."""
    session = calendar.latest_trading_day(at)
    if at < session.post_close:
        if at < session.open:
            return Phase("premarket", session, session.open, "open")
        if at < session.close:
            return Phase("open", session, session.close, "postmarket")
        return Phase("postmarket", session, session.post_close, "closed")
    return Phase("closed", None, calendar.next_trading_day(session.date).pre_open, "premarket")


def upcoming_closures(calendar: MarketCalendar, today: date, days: int = 90) -> list[Closure]:
    """Closed weekdays and early closes from `today` to `days` days ahead."""
    closures = []
    for offset in range(days + 1):
        day = today + timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        session = calendar.trading_day(day)
        if session is None:
            closures.append(Closure(day, holiday_name(day), None))
        elif session.early_close:
            closures.append(Closure(day, holiday_name(day), session))
    return closures


def holiday_name(day: date) -> str:
    """Polygon's name for a closure or an early close on `day` (by the rules of the NYSE holidays)."""
    month, weekday = day.month, day.weekday()
    if month == 12 and day.day >= 22 and day.day <= 27:
        return "Christmas"
    if (month == 1 and day.day <= 3) or (month == 12 and day.day == 31):
        return "New Years Day"
    rules = {
        (1, 0): "Martin Luther King, Jr. Day",
        (2, 0): "Washington's Birthday",
        (3, 4): "Good Friday",
        (4, 4): "Good Friday",
        (5, 0): "Memorial Day",
        (9, 0): "Labor Day",
        (11, 3): "Thanksgiving",
        (11, 4): "Thanksgiving",
    }
    if (month, weekday) in rules:
        return rules[month, weekday]
    if month == 6 and 18 <= day.day <= 20:
        return "Juneteenth"
    if month == 7 and day.day <= 5:
        return "Independence Day"
    return "Market Holiday"
