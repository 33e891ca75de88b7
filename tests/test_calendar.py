"""Trading days with extended hours, from exchange-calendars, for any date (no range errors)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from reader.calendar import MarketCalendar

ET = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar()


def test_regular_day_hours_in_utc_follow_dst(calendar: MarketCalendar) -> None:
    """A regular session is 09:30-16:00 ET, pre from 04:00, post to 20:00, in UTC on both sides of DST."""
    winter = calendar.trading_day(date(2026, 11, 24))
    summer = calendar.trading_day(date(2026, 7, 14))
    assert winter is not None
    assert summer is not None
    assert (winter.pre_open.hour, winter.open.hour, winter.open.minute, winter.close.hour) == (9, 14, 30, 21)
    assert winter.post_close == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    assert (summer.open.hour, summer.close.hour) == (13, 20)
    assert not winter.early_close
    assert winter.open.tzinfo is UTC


def test_holidays_early_closes_and_extra_closures(calendar: MarketCalendar) -> None:
    """Thanksgiving is closed; the day after closes at 13:00 with post-market to 17:00 ET."""
    assert calendar.trading_day(date(2026, 11, 26)) is None
    friday = calendar.trading_day(date(2026, 11, 27))
    assert friday is not None
    assert friday.early_close
    assert friday.close == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    assert friday.post_close == datetime(2026, 11, 27, 22, 0, tzinfo=UTC)
    closed = MarketCalendar(extra_closed=[date(2026, 11, 24)])
    assert closed.trading_day(date(2026, 11, 24)) is None


def test_latest_trading_day_skips_weekends_and_holidays(calendar: MarketCalendar) -> None:
    """Saturday's latest trading day is Friday; Monday before 04:00 ET is still Friday's."""
    assert calendar.latest_trading_day(datetime(2026, 11, 28, 15, 0, tzinfo=UTC)).date == date(2026, 11, 27)
    assert calendar.latest_trading_day(datetime(2026, 11, 30, 8, 59, tzinfo=UTC)).date == date(2026, 11, 27)
    assert calendar.latest_trading_day(datetime(2026, 11, 30, 9, 0, tzinfo=UTC)).date == date(2026, 11, 30)
    friday = calendar.trading_day(date(2026, 11, 27))
    assert friday is not None
    assert calendar.previous_trading_day(friday).date == date(2026, 11, 25)


def test_dates_years_apart_need_no_rebuild_by_the_caller() -> None:
    """A date far outside the first build range extends it instead of raising."""
    calendar = MarketCalendar()
    assert calendar.trading_day(date(2026, 11, 27)) is not None
    assert calendar.trading_day(date(2041, 1, 1)) is None  # New Year's Day
    assert calendar.trading_day(date(2041, 1, 2)) is not None
    assert calendar.trading_day(date(2019, 12, 25)) is None


@pytest.mark.parametrize(
    ("at_et", "phase", "until_et"),
    [
        ((2026, 11, 24, 3, 0), "closed", (2026, 11, 24, 4, 0)),  # a Tuesday before the pre-market
        ((2026, 11, 24, 4, 0), "pre", (2026, 11, 24, 9, 30)),
        ((2026, 11, 24, 10, 0), "regular", (2026, 11, 24, 16, 0)),
        ((2026, 11, 24, 16, 0), "post", (2026, 11, 24, 20, 0)),
        ((2026, 11, 24, 21, 0), "closed", (2026, 11, 25, 4, 0)),
        ((2026, 11, 26, 12, 0), "closed", (2026, 11, 27, 4, 0)),  # Thanksgiving: closed all day
        ((2026, 11, 27, 12, 0), "regular", (2026, 11, 27, 13, 0)),  # the early close
        ((2026, 11, 27, 13, 30), "post", (2026, 11, 27, 17, 0)),
        ((2026, 11, 28, 12, 0), "closed", (2026, 11, 30, 4, 0)),  # a Saturday: Monday's pre-market
        ((2026, 3, 6, 21, 0), "closed", (2026, 3, 9, 4, 0)),  # over the DST change (EST to EDT)
    ],
)
def test_the_status_says_until_when_its_phase_holds(
    calendar: MarketCalendar, at_et: tuple[int, ...], phase: str, until_et: tuple[int, ...]
) -> None:
    """`phase_until` is the next change of phase: pre-market start, open, close (early or not) or
    after-hours end, across holidays, weekends and DST changes."""
    status = calendar.status(datetime(*at_et, tzinfo=ET))
    assert (status.phase, status.phase_until) == (phase, datetime(*until_et, tzinfo=ET))
