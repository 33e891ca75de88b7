"""Where one upstream's allowance is counted: a GCRA budget in Redis, shared by every worker
process on every machine, or in this process's memory when there is no Redis.

Both run throttled-py's GCRA (Generic Cell Rate Algorithm): one number per upstream, the TAT
(theoretical arrival time of the next request), moved on by `interval_s` for each request
granted. A request asking with burst `capacity` is granted while the TAT is at most
`(capacity - 1) * interval_s` ahead of now; otherwise the answer says how long until it would be.
Calling the same TAT with different capacities is how ranks share one budget (`worker.ratelimit`).

`RedisBudget` runs throttled-py's own GCRA Lua script (`RedisLimitAtomicActionSpec.SCRIPTS`,
which reads the Redis server's `TIME`: one clock for the fleet) on our `redis.asyncio.Redis`
client, preceded by a check of the fleet's pause key, in one atomic round trip. throttled-py's
`RedisStore` cannot take an existing client (it opens its own pool from a URL), so it would bypass
the worker's timeouts and ACL user; its script can. `MemoryBudget` is throttled-py's
`GCRARateLimiter` on a `MemoryStore` (this process's monotonic clock).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import redis.asyncio
from throttled.asyncio import MemoryStore, Quota, Rate
from throttled.asyncio.rate_limiter.gcra import GCRARateLimiter
from throttled.rate_limiter.gcra import RedisLimitAtomicActionSpec

# KEYS[1]: the TAT, KEYS[2]: the pause; ARGV[1..3]: interval_s, capacity, cost (throttled-py's),
# ARGV[4]: the asking gate's token. A pause set by another gate refuses the request without
# spending the budget: {1, 0, "paused", seconds left} (the GCRA's third value is always a number).
# The gate that set a pause waits it out on its own clock, so its own pause does not stop it here.
_PAUSED = "paused"
_PAUSE_CHECK = f"""
local pause_ms = redis.call("PTTL", KEYS[2])
if pause_ms > 0 and redis.call("GET", KEYS[2]) ~= ARGV[4] then
    return {{1, 0, "{_PAUSED}", tostring(pause_ms / 1000)}}
end
"""
_TAKE = _PAUSE_CHECK + RedisLimitAtomicActionSpec.SCRIPTS

# KEYS[1]: the pause; ARGV[1]: the pausing gate's token, ARGV[2]: milliseconds. Only lengthens.
_PAUSE = """
if redis.call("PTTL", KEYS[1]) < tonumber(ARGV[2]) then
    redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
end
return 1
"""


@dataclass(frozen=True)
class Verdict:
    """The budget's answer to one request: granted, or how long to wait (`wait_s`, seconds);
    `paused`: the wait is a pause another worker set after the upstream announced one."""

    granted: bool
    wait_s: float = 0.0
    paused: bool = False


class Budget(Protocol):
    """One upstream's allowance: `take` one request's worth, `pause` everyone for a while."""

    async def take(self, capacity: int, token: str) -> Verdict:
        """Spend one request if the TAT leaves room for burst `capacity` (>= 1)."""
        ...

    async def pause(self, duration_s: float, token: str) -> None:
        """Hold every other gate of this upstream for `duration_s` seconds (not shortened)."""
        ...

    def set_rate(self, limit: int, period_s: int) -> None:
        """Spend `limit` requests per `period_s` seconds from the next request on."""
        ...


class RedisBudget:
    """The budget of one upstream in Redis at `key` (its pause at `pause_key`): `limit` requests per
    `period_s` seconds, shared by every process that uses the same keys."""

    def __init__(
        self, client: redis.asyncio.Redis, key: str, pause_key: str, *, limit: int, period_s: int
    ) -> None:
        self.key = key
        self.pause_key = pause_key
        self.interval_s = period_s / limit
        self._take = client.register_script(_TAKE)
        self._pause = client.register_script(_PAUSE)

    async def take(self, capacity: int, token: str) -> Verdict:
        answer: list[Any] = await self._take(
            keys=[self.key, self.pause_key], args=[self.interval_s, capacity, 1, token]
        )
        limited, _remaining, reset_after, retry_after = answer
        if not int(limited):
            return Verdict(granted=True)
        paused = (reset_after.decode() if isinstance(reset_after, bytes) else reset_after) == _PAUSED
        return Verdict(granted=False, wait_s=float(retry_after), paused=paused)

    async def pause(self, duration_s: float, token: str) -> None:
        await self._pause(keys=[self.pause_key], args=[token, max(1, math.ceil(duration_s * 1000))])

    def set_rate(self, limit: int, period_s: int) -> None:
        """`limit` requests per `period_s` from the next request on (the TAT in Redis is kept)."""
        self.interval_s = period_s / limit

    def __repr__(self) -> str:
        return f"<RedisBudget {self.key} interval={self.interval_s:.3f}s>"


class MemoryBudget:
    """The budget of one upstream in this process only (no Redis: a test, a one-off command):
    the same GCRA through throttled-py's in-memory store; a pause stays with the gate that saw it."""

    def __init__(self, *, limit: int, period_s: int) -> None:
        self.interval_s = period_s / limit
        self._rate = Rate(period=timedelta(seconds=period_s), limit=limit)
        self._store = MemoryStore()
        self._limiters: dict[int, GCRARateLimiter] = {}

    async def take(self, capacity: int, token: str) -> Verdict:
        limiter = self._limiters.get(capacity)
        if limiter is None:
            limiter = GCRARateLimiter(Quota(self._rate, burst=capacity), self._store)
            self._limiters[capacity] = limiter
        result = await limiter.limit("budget")
        if not result.limited:
            return Verdict(granted=True)
        return Verdict(granted=False, wait_s=result.state.retry_after)

    async def pause(self, duration_s: float, token: str) -> None:
        """Nothing to share: the gate that saw the announcement holds its own pause."""

    def set_rate(self, limit: int, period_s: int) -> None:
        """`limit` requests per `period_s` from the next request on (the spent budget is forgotten)."""
        self.interval_s = period_s / limit
        self._rate = Rate(period=timedelta(seconds=period_s), limit=limit)
        self._store = MemoryStore()
        self._limiters.clear()

    def __repr__(self) -> str:
        return f"<MemoryBudget interval={self.interval_s:.3f}s>"
