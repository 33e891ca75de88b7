"""How fast one process calls one upstream: a rate, a concurrency cap, and the upstream's own word.

`RateGate` combines an `aiolimiter.AsyncLimiter` sized from config, a semaphore capping requests
in flight, and the window the upstream announces in its headers (Tradier's
`X-Ratelimit-Available`/`-Expiry`): when the window has no room for the requests already in
flight, new requests wait for the window to reset instead of drawing a 429.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from aiolimiter import AsyncLimiter

from reader.clock import Clock, utc_now
from worker.logs import fields

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Wait this long when a 429 comes without a window end to wait for.
DEFAULT_BACKOFF = timedelta(seconds=60)
# Added after the announced window end: the upstream's clock and ours differ a little.
RESET_MARGIN = timedelta(milliseconds=250)


class RateGate:
    """`async with gate.slot(): <one request>`, then `gate.observe(...)` with what the answer said."""

    def __init__(
        self,
        name: str,
        rate_per_min: int,
        max_concurrency: int,
        *,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self.rate_per_min = rate_per_min
        self.max_concurrency = max_concurrency
        self._limiter = AsyncLimiter(rate_per_min, 60)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._resume_at: datetime | None = None
        self.waits = 0  # times a request waited for an announced window reset

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request's place: concurrency first, then the announced window, then the rate."""
        async with self._slots:
            await self._wait_for_window()
            await self._limiter.acquire()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

    def observe(self, available: int | None, reset_at: datetime | None) -> None:
        """Record the upstream's count of requests left in its window and when the window ends.

        Call it inside `slot()`, so the requests counted as in flight are the others.
        """
        if available is None or reset_at is None:
            return
        if available <= self._in_flight - 1:
            self._pause_until(reset_at)

    def throttled(self, reset_at: datetime | None) -> None:
        """The upstream answered 429: hold every request until its window ends."""
        self._pause_until(reset_at or self._clock() + DEFAULT_BACKOFF)

    def _pause_until(self, reset_at: datetime) -> None:
        if self._resume_at is None or reset_at > self._resume_at:
            self._resume_at = reset_at

    async def _wait_for_window(self) -> None:
        while self._resume_at is not None:
            delay_s = (self._resume_at + RESET_MARGIN - self._clock()).total_seconds()
            if delay_s <= 0:
                self._resume_at = None
                return
            self.waits += 1
            log.info("ratelimit.wait %s", fields(provider=self.name, wait_s=round(delay_s, 2)))
            await self._sleep(delay_s)

    def __repr__(self) -> str:
        return f"<RateGate {self.name} rate={self.rate_per_min}/min concurrency={self.max_concurrency}>"
