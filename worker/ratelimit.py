"""How fast the fleet calls one upstream: one budget for every worker process, spent by rank,
under the upstream's own word.

**The budget** (`worker.budget`) is a GCRA in Redis, one per upstream, shared by every worker
process on every machine and timed by the Redis server's clock (in memory when there is no
Redis). `rate_per_min` is the fleet's allowance: the upstream's `A` requests per fixed 1-minute
window (Tradier's model: the window starts at the first request). A GCRA with burst `B` and steady
interval `T` lets through at most `B + W / T` requests in any `W` seconds, so with
`B = max(1, A // 30)` (2 s worth) and `T = (60 + JITTER_S) / (A - B)` no window of 60 s plus
`JITTER_S` (1 s of latency jitter: a request sent before a window ends may arrive after it) sees
more than `A`, and a 60-s window at most `B + 60 / T` (118 at 120/min). In steady state the fleet
spends `steady_rate_per_min(A)`: 114.1/min at 120 (95%), 3.93/min at Polygon's free 5 (B = 1).

**Ranks** (`worker.priority`: 0 on-demand, 1 quotes, 2.. background; refresh jobs spend every
background dataset's requests at 2, `worker.priority.gate_rank`, and keep their datasets' order
where their jobs start, `worker.admission`) share that one TAT with different bursts: rank `r`
may only use the burst down to `reserve(r)` tokens (`capacity(burst, r) = burst - reserve(r)`,
at least 1): on-demand all of it, quotes half of it,
each background rank one token less than the rank before. So wherever a worse rank is admitted a
better one is too, fleet-wide, in one atomic script; and while background requests hold the budget
at their own capacity, an on-demand request finds its reserve there at once. At 120/min (B = 4)
the capacities are 4, 2, 1, 1, ...; at B = 2 or 3 (60 to 119/min) on-demand keeps B - 1 and
every other rank has 1. Under 60/min (B = 1: Polygon's free 5/min) the reserves vanish: every rank
has capacity 1, so across processes requests are granted as they come (an on-demand request may
wait one interval, 15 s at 5/min, behind another process's background request), and priority
holds only among the waiters of one process.

**In one process** requests wait in rank order, then arrival order, in one heap; only its head
asks the budget (and sleeps the script's `retry_after`), so waiting costs one Redis call per
`retry_after`, not one per waiter; a better-ranked newcomer becomes the head at once. The budget
comes before the concurrency cap (a request holds a place in flight only once granted), and the
head waits for a free place before it asks, so an on-demand request never waits behind a worse one
of this process except those already in flight.

**What the upstream announces** (Tradier's `X-Ratelimit-Available`/`-Expiry`, a 429 with
`Retry-After`) pauses the upstream for the fleet: the gate that saw it waits it out on its own
clock, and writes a pause key to Redis whose TTL is the time left, which the budget script checks
before granting anyone else (no clock is compared across machines). Our pacing leaves a 60-s
window at least one request to spare (118 of 120), filled only in its last second, so it does not
pause the fleet itself (at most for the rest of such a second, see `observe`).

A request never waits longer than `max_wait_s` in all: past that it gives up with
`RateWindowClosed`, so a refresh fails with one clear line instead of running into its job timeout.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn

import redis.asyncio
from redis.exceptions import RedisError

from reader import keys
from reader.clock import Clock, utc_now
from worker.budget import Budget, MemoryBudget, RedisBudget
from worker.errors import WorkerError
from worker.logs import fields
from worker.priority import ON_DEMAND, QUOTES, current_rank

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Wait this long after a 429 that announces no window end (or one already past by our clock).
DEFAULT_BACKOFF = timedelta(seconds=60)
MIN_BACKOFF = timedelta(seconds=1)
# Added after the announced window end: the upstream's clock and ours differ a little.
RESET_MARGIN = timedelta(milliseconds=250)
MAX_JITTER_S = 0.5
JITTER_S = 1
"""Seconds of latency jitter the pacing leaves room for: no `60 + JITTER_S` s exceed the allowance."""
BURST_DIVISOR = 30
"""The burst is `rate_per_min // BURST_DIVISOR` requests: 2 seconds' worth of the allowance."""


def burst_of(rate_per_min: int) -> int:
    """Requests the fleet may send at once after an idle spell, under an allowance of
    `rate_per_min` per minute: 2 seconds' worth, at least 1."""
    return max(1, rate_per_min // BURST_DIVISOR)


def steady_quota(rate_per_min: int) -> tuple[int, int]:
    """(requests, per seconds) the fleet sends at most in steady state: `rate_per_min - burst`
    per `60 + JITTER_S` s, so that burst + steady requests of any such span fit the allowance
    (an allowance of 1, whose burst is all of it: one request per `2 * (60 + JITTER_S)` s)."""
    spare = rate_per_min - burst_of(rate_per_min)
    if spare >= 1:
        return spare, 60 + JITTER_S
    return 1, 2 * (60 + JITTER_S)


def steady_rate_per_min(rate_per_min: int) -> float:
    """Requests per minute the fleet sends at most in steady state under an allowance of
    `rate_per_min` (the rest is headroom for bursts of higher-priority requests and for latency
    jitter): 114.1 at 120, 3.93 at 5."""
    limit, period_s = steady_quota(rate_per_min)
    return limit * 60 / period_s


def capacity(burst: int, rank: int) -> int:
    """The burst rank `rank` may use of `burst`: all of it on-demand, half for quotes, then one
    less per background rank; at least 1."""
    if rank <= ON_DEMAND:
        return burst
    reserve = (burst + 1) // 2 + max(rank - QUOTES, 0)
    return max(1, burst - reserve)


class RateWindowClosed(WorkerError):
    """The upstream's window reopens later than this request may wait."""

    def __init__(self, name: str, resume_at: datetime, waited_s: float, max_wait_s: float) -> None:
        self.resume_at = resume_at
        self.waited_s = waited_s
        super().__init__(
            f"the {name} rate window reopens at {resume_at:%H:%M:%S} UTC, past the {max_wait_s:g} s "
            f"a request may wait (waited {waited_s:.1f} s); lower rate_per_min or raise job_timeout_s"
        )


class RateBudgetExhausted(RateWindowClosed):
    """The fleet's budget had no room for this request within the time it may wait."""

    def __init__(self, name: str, rank: int, resume_at: datetime, waited_s: float, max_wait_s: float) -> None:
        self.resume_at = resume_at
        self.waited_s = waited_s
        WorkerError.__init__(
            self,
            f"the {name} budget had no room for a request of rank {rank} within the {max_wait_s:g} s "
            f"it may wait (waited {waited_s:.1f} s); lengthen the cadences of the background "
            f"datasets (check-config shows what the allowance holds) or raise job_timeout_s",
        )


@dataclass(frozen=True)
class RateCounters:
    """What one gate has done since it started, for status and metrics: requests `granted` and
    requests that had to `waited` for the budget, by rank; `waited_s` seconds waited, by rank;
    `pauses_announced` pauses this gate set from the upstream's word (429, exhausted window);
    `fleet_pauses` times a request found the upstream paused by another worker."""

    granted: dict[int, int]
    waited: dict[int, int]
    waited_s: dict[int, float]
    pauses_announced: int
    fleet_pauses: int


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    wake: asyncio.Event = field(default_factory=asyncio.Event, compare=False)


class RateGate:
    """`async with gate.slot(): <one request>`, then `gate.observe(...)` with what the answer said.

    `redis_client`: where the fleet's budget of upstream `name` lives (`reader.keys.rate_budget`);
    None: a budget of this process alone. `clock`/`sleep` pace the waits for announced windows
    (a test's clock moves when slept on); the budget's waits follow its own clock (Redis's).
    """

    def __init__(
        self,
        name: str,
        rate_per_min: int,
        max_concurrency: int,
        *,
        max_wait_s: float = 90.0,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
        redis_client: redis.asyncio.Redis | None = None,
    ) -> None:
        self.name = name
        self.rate_per_min = rate_per_min
        self.max_concurrency = max_concurrency
        self.max_wait_s = max_wait_s
        self.burst = burst_of(rate_per_min)
        limit, period_s = steady_quota(rate_per_min)
        self._budget: Budget = (
            MemoryBudget(limit=limit, period_s=period_s)
            if redis_client is None
            else RedisBudget(
                redis_client, keys.rate_budget(name), keys.rate_pause(name), limit=limit, period_s=period_s
            )
        )
        self.shared = redis_client is not None
        self.clock = clock
        self._sleep = sleep
        self._token = uuid.uuid4().hex
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._asking = False
        self._in_flight = 0
        self._resume_at: datetime | None = None
        self._unpublished = False
        self.waits = 0  # times a request waited for an announced window to reset
        self._granted: Counter[int] = Counter()
        self._waited: Counter[int] = Counter()
        self._waited_s: dict[int, float] = {}
        self._pauses_announced = 0
        self._fleet_pauses = 0

    @asynccontextmanager
    async def slot(self, waited_s: float = 0.0) -> AsyncIterator[float]:
        """Hold one request's place: the budget at this context's rank, a place in flight, then
        the announced window; gives the seconds it was made to wait for them (0 when it went at once:
        the budget's round trip is no wait). Raises `RateWindowClosed` past `max_wait_s` (its
        `waited_s` counts the earlier attempts too).

        `waited_s`: how long this request already waited in earlier attempts.
        """
        rank = current_rank()
        admitted_s, held = await self._admit(rank, waited_s)
        try:
            # Checked once admitted too: a pause announced while this request waited still holds.
            paused_s = await self._wait_for_window(admitted_s)
            yield admitted_s + paused_s - waited_s if held or paused_s else 0.0
        finally:
            self._in_flight -= 1
            self._wake_head()
            await self._publish()

    def observe(self, available: int | None, reset_at: datetime | None) -> None:
        """Record the upstream's count of requests left in its window and when the window ends:
        no more left than the other requests of this process in flight pauses the fleet until
        then (the pause reaches Redis when the slot is released). Call it inside `slot()`.

        The budget keeps a window's count at `B + t / T` by its `t`-th second, so at 120/min this
        can only trip in the last second of a window (3 left, 4 in flight), for that second; a
        window emptied early means another spender of the same key, or a `rate_per_min` above the
        real allowance.
        """
        if available is None or reset_at is None:
            return
        if available <= self._in_flight - 1 and reset_at > self.clock():
            self._pause_until(reset_at)

    async def throttled(self, reset_at: datetime | None) -> None:
        """The upstream answered 429: hold every request of the fleet until its window ends (at
        least a second)."""
        now = self.clock()
        resume_at = reset_at if reset_at is not None else now + DEFAULT_BACKOFF
        jitter = timedelta(seconds=random.uniform(0, MAX_JITTER_S))  # noqa: S311 - spreads retries
        self._pause_until(max(resume_at, now + MIN_BACKOFF) + jitter)
        await self._publish()

    def retune(self, rate_per_min: int, max_concurrency: int, *, max_wait_s: float) -> None:
        """New limits from an edited config, for every request from now on (those waiting too)."""
        self.rate_per_min = rate_per_min
        self.max_concurrency = max_concurrency
        self.max_wait_s = max_wait_s
        self.burst = burst_of(rate_per_min)
        self._budget.set_rate(*steady_quota(rate_per_min))
        self._wake_head()  # a wider limit may let the head go now

    def counters(self) -> RateCounters:
        """A snapshot of this gate's counters (this process only)."""
        return RateCounters(
            granted=dict(self._granted),
            waited=dict(self._waited),
            waited_s={rank: round(s, 3) for rank, s in self._waited_s.items()},
            pauses_announced=self._pauses_announced,
            fleet_pauses=self._fleet_pauses,
        )

    async def _admit(self, rank: int, waited_s: float) -> tuple[float, bool]:
        """Wait for this request's turn (rank, then arrival), a place in flight and the budget;
        returns `waited_s` plus the time it waited here, and whether it was held at all (slept)."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(rank, next(self._seq))
        heapq.heappush(self._waiters, waiter)
        started = loop.time()
        paused_s = 0.0  # waits for announced windows, on the gate's clock (a test's need not move)
        paused_loop_s = 0.0  # the same waits by the loop's clock, not to count them twice
        refused = False  # the budget said wait at least once
        held = False  # slept for its turn, a place, the budget or a window

        def waited() -> float:
            return waited_s + (loop.time() - started - paused_loop_s) + paused_s

        try:
            while True:
                turn = self._waiters[0] is waiter and not self._asking
                # While paused, the head lets the requests in flight finish before it waits.
                busy = self._in_flight >= (1 if self._paused() else self.max_concurrency)
                if not turn or busy:
                    held = True
                    await self._nap(waiter, None, rank, waited())
                    continue
                pause_began = loop.time()
                slept_s = await self._wait_for_window(waited())
                held = held or slept_s > 0
                paused_s += slept_s
                paused_loop_s += loop.time() - pause_began
                if self._waiters[0] is not waiter or self._asking:
                    continue  # a better request came while this one waited out a window
                self._asking = True
                try:
                    verdict = await self._budget.take(capacity(self.burst, rank), self._token)
                finally:
                    self._asking = False
                if verdict.granted:
                    break
                self._wake_head()  # a better request that came while this one asked
                self._fleet_pauses += verdict.paused
                if verdict.paused:
                    log.info("ratelimit.fleet_pause %s", fields(provider=self.name, wait_s=verdict.wait_s))
                if waited() + verdict.wait_s > self.max_wait_s:
                    self._refuse(rank, waited(), verdict.wait_s, paused=verdict.paused)
                refused = held = True
                await self._nap(waiter, verdict.wait_s, rank, waited())
        except BaseException:
            self._waiters.remove(waiter)
            heapq.heapify(self._waiters)
            self._wake_head()
            raise
        self._waiters.remove(waiter)
        heapq.heapify(self._waiters)
        self._in_flight += 1
        self._wake_head()
        self._granted[rank] += 1
        self._waited[rank] += refused
        self._waited_s[rank] = self._waited_s.get(rank, 0.0) + loop.time() - started
        return waited(), held

    async def _nap(self, waiter: _Waiter, timeout_s: float | None, rank: int, waited_s: float) -> None:
        """Sleep until woken (this waiter may have become the head, a place freed) or `timeout_s`;
        never past `max_wait_s`."""
        left_s = self.max_wait_s - waited_s
        if left_s <= 0:
            self._refuse(rank, waited_s, 0.0)
        waiter.wake.clear()
        limit_s = left_s if timeout_s is None else min(timeout_s, left_s)
        with suppress(TimeoutError):
            await asyncio.wait_for(waiter.wake.wait(), limit_s)

    def _refuse(self, rank: int, waited_s: float, more_s: float, *, paused: bool = False) -> NoReturn:
        resume_at = self.clock() + timedelta(seconds=more_s)
        if paused:  # another worker heard the upstream announce a window this request cannot wait for
            raise RateWindowClosed(self.name, resume_at, waited_s, self.max_wait_s)
        raise RateBudgetExhausted(self.name, rank, resume_at, waited_s, self.max_wait_s)

    def _wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].wake.set()

    def _paused(self) -> bool:
        return self._resume_at is not None and self._resume_at + RESET_MARGIN > self.clock()

    def _pause_until(self, resume_at: datetime) -> None:
        if self._resume_at is None or resume_at > self._resume_at:
            self._resume_at = resume_at
            self._unpublished = True
            self._pauses_announced += 1
            log.info(
                "ratelimit.pause %s",
                fields(provider=self.name, until=f"{resume_at:%H:%M:%S}", fleet=self.shared),
            )

    async def _publish(self) -> None:
        """Tell the fleet about a pause this gate set (one Redis call); a failure only logs."""
        if not self._unpublished or self._resume_at is None:
            return
        self._unpublished = False
        left_s = (self._resume_at + RESET_MARGIN - self.clock()).total_seconds()
        if left_s <= 0:
            return
        try:
            await self._budget.pause(left_s, self._token)
        except RedisError as e:
            log.warning("ratelimit.pause_not_shared %s", fields(provider=self.name, error=type(e).__name__))

    async def _wait_for_window(self, waited_s: float) -> float:
        """Wait out a pause this gate knows of (on its clock); returns the seconds slept."""
        slept_s = 0.0
        while self._resume_at is not None:
            resume_at = self._resume_at
            delay_s = (resume_at + RESET_MARGIN - self.clock()).total_seconds()
            if delay_s <= 0:
                if self._resume_at == resume_at:
                    self._resume_at = None
                return slept_s
            if waited_s + delay_s > self.max_wait_s:
                raise RateWindowClosed(self.name, resume_at, waited_s, self.max_wait_s)
            self.waits += 1
            log.info("ratelimit.wait %s", fields(provider=self.name, wait_s=round(delay_s, 2)))
            await self._sleep(delay_s)
            waited_s += delay_s
            slept_s += delay_s
        return slept_s

    def __repr__(self) -> str:
        where = "redis" if self.shared else "memory"
        return (
            f"<RateGate {self.name} rate={self.rate_per_min}/min "
            f"steady={steady_rate_per_min(self.rate_per_min):.2f}/min burst={self.burst} "
            f"concurrency={self.max_concurrency} budget={where}>"
        )
