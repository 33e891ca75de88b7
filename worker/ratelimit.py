"""How fast one process calls one upstream: a rate, a concurrency cap, and the upstream's own word.

`RateGate` combines
- an `aiolimiter.AsyncLimiter` sized from config: bursts of `burst` requests (5 seconds' worth),
  refilled at `rate_per_min`; over any minute it lets through at most `rate_per_min + burst`,
- a semaphore capping requests in flight,
- the window the upstream announces (Tradier's `X-Ratelimit-Available`/`-Expiry`): when the window
  has no room left for the requests already in flight, new requests wait for it to reset instead
  of drawing a 429; after a 429 every request waits.
A request never waits longer than `max_wait_s` in all: past that it gives up with
`RateWindowClosed`, so a refresh fails with one clear line instead of running into its job timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from aiolimiter import AsyncLimiter

from reader.clock import Clock, utc_now
from worker.errors import WorkerError
from worker.logs import fields

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Wait this long after a 429 that announces no window end (or one already past by our clock).
DEFAULT_BACKOFF = timedelta(seconds=60)
MIN_BACKOFF = timedelta(seconds=1)
# Added after the announced window end: the upstream's clock and ours differ a little.
RESET_MARGIN = timedelta(milliseconds=250)
MAX_JITTER_S = 0.5


def steady_rate_per_min(rate_per_min: int) -> float:
    """Requests per minute the fleet sends at most in steady state under an allowance of
    `rate_per_min` (the rest is headroom for bursts of higher-priority requests)."""
    return float(rate_per_min)


class RateWindowClosed(WorkerError):
    """The upstream's window reopens later than this request may wait."""

    def __init__(self, name: str, resume_at: datetime, waited_s: float, max_wait_s: float) -> None:
        self.resume_at = resume_at
        super().__init__(
            f"the {name} rate window reopens at {resume_at:%H:%M:%S} UTC, past the {max_wait_s:g} s "
            f"a request may wait (waited {waited_s:.1f} s); lower rate_per_min or raise job_timeout_s"
        )


class RateGate:
    """`async with gate.slot(): <one request>`, then `gate.observe(...)` with what the answer said."""

    def __init__(
        self,
        name: str,
        rate_per_min: int,
        max_concurrency: int,
        *,
        max_wait_s: float = 90.0,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.name = name
        self.rate_per_min = rate_per_min
        self.max_concurrency = max_concurrency
        self.max_wait_s = max_wait_s
        self.burst = max(1, rate_per_min // 12)
        self._limiter = AsyncLimiter(self.burst, self.burst * 60 / rate_per_min)
        self._slots = asyncio.Semaphore(max_concurrency)
        self.clock = clock
        self._sleep = sleep
        self._in_flight = 0
        self._resume_at: datetime | None = None
        self.waits = 0  # times a request waited for an announced window to reset

    @asynccontextmanager
    async def slot(self, waited_s: float = 0.0) -> AsyncIterator[None]:
        """Hold one request's place: concurrency, then the rate, then the announced window.

        `waited_s`: how long this request already waited for the window in earlier attempts.
        """
        async with self._slots:
            await self._limiter.acquire()
            # Checked after the limiter: a pause set while this request queued there still holds.
            await self._wait_for_window(waited_s)
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

    def observe(self, available: int | None, reset_at: datetime | None) -> None:
        """Record the upstream's count of requests left in its window and when the window ends.

        Call it inside `slot()`, so that the requests counted as in flight are the others.
        """
        if available is None or reset_at is None:
            return
        if available <= self._in_flight - 1:
            self._pause_until(reset_at)

    def throttled(self, reset_at: datetime | None) -> None:
        """The upstream answered 429: hold every request until its window ends (at least a second)."""
        now = self.clock()
        resume_at = reset_at if reset_at is not None else now + DEFAULT_BACKOFF
        jitter = timedelta(seconds=random.uniform(0, MAX_JITTER_S))  # noqa: S311 - spreads retries
        self._pause_until(max(resume_at, now + MIN_BACKOFF) + jitter)

    def _pause_until(self, resume_at: datetime) -> None:
        if self._resume_at is None or resume_at > self._resume_at:
            self._resume_at = resume_at

    async def _wait_for_window(self, waited_s: float) -> None:
        while self._resume_at is not None:
            resume_at = self._resume_at
            delay_s = (resume_at + RESET_MARGIN - self.clock()).total_seconds()
            if delay_s <= 0:
                if self._resume_at == resume_at:
                    self._resume_at = None
                return
            if waited_s + delay_s > self.max_wait_s:
                raise RateWindowClosed(self.name, resume_at, waited_s, self.max_wait_s)
            self.waits += 1
            log.info("ratelimit.wait %s", fields(provider=self.name, wait_s=round(delay_s, 2)))
            await self._sleep(delay_s)
            waited_s += delay_s

    def __repr__(self) -> str:
        return (
            f"<RateGate {self.name} rate={self.rate_per_min}/min burst={self.burst} "
            f"concurrency={self.max_concurrency}>"
        )
