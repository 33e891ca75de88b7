"""Trading days with extended hours, from exchange-calendars, for any date (no range errors)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from reader.calendar import MarketCalendar


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
