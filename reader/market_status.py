"""The market status a reader tells: the worker's calendar, read from Redis, not the reader's own.

The worker publishes its exchange and the unscheduled closures of its config
(`schedule.extra_closed`, e.g. a national day of mourning) to `keys.CALENDAR` as a
`PublishedCalendar`. A reader applies them to the installed exchange calendar, so that
`market_status()`, the CLI's `status` and the status tool say "closed" on the days the worker does
not run. Without a published calendar (no worker has started against this Redis), or when Redis
cannot be read, the installed calendar answers alone, and the status says so (`calendar`).
"""

from __future__ import annotations

import threading
from datetime import datetime

from pydantic import ValidationError

from reader.calendar import MarketCalendar
from reader.models import CalendarSource, MarketStatus, PublishedCalendar

DEFAULT_EXCHANGE = "XNYS"
"""The exchange told about when no worker has published one (the worker's default too)."""

UNREADABLE = object()
"""Pass as `raw` to `StatusTeller.status` when Redis could not be read."""


class StatusTeller:
    """Tells the market status at a time from the published calendar's raw value.

    `base`: the calendar to start from (the reader's `calendar` argument); None: the installed
    calendar of the published exchange, else of `DEFAULT_EXCHANGE`. Calendars are loaded once per
    exchange and kept (loading one takes about a second); closures are added without reloading.
    Thread-safe: the async reader tells statuses in a worker thread.
    """

    def __init__(self, base: MarketCalendar | None = None) -> None:
        self._base = base
        self._installed: dict[str, MarketCalendar] = {}
        self._adjusted: tuple[tuple[str, frozenset[object]], MarketCalendar] | None = None
        self._lock = threading.Lock()

    def status(self, raw: bytes | str | object | None, at: datetime) -> MarketStatus:
        """The status at `at` (aware). `raw`: the value of `keys.CALENDAR` (None when absent), or
        `UNREADABLE`. A value that does not parse counts as absent."""
        published = _parse(raw)
        source: CalendarSource = "worker"
        if published is None:
            source = "installed-redis-unreadable" if raw is UNREADABLE else "installed"
        calendar = self._calendar(published)
        return calendar.status(at).model_copy(update={"calendar": source})

    def _calendar(self, published: PublishedCalendar | None) -> MarketCalendar:
        with self._lock:
            base = self._base
            if base is None:
                exchange = published.exchange if published is not None else DEFAULT_EXCHANGE
                base = self._installed.get(exchange)
                if base is None:
                    base = self._installed[exchange] = MarketCalendar(exchange)
            if published is None or not published.extra_closed:
                return base
            wanted = (base.exchange, frozenset[object](published.extra_closed))
            if self._adjusted is None or self._adjusted[0] != wanted:
                self._adjusted = (wanted, base.with_extra_closed(published.extra_closed))
            return self._adjusted[1]

    def __repr__(self) -> str:
        return f"<StatusTeller base={self._base!r} loaded={sorted(self._installed)}>"


def _parse(raw: bytes | str | object | None) -> PublishedCalendar | None:
    if not isinstance(raw, bytes | str):
        return None
    try:
        return PublishedCalendar.model_validate_json(raw)
    except ValidationError:
        return None
