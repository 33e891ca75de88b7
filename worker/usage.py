"""What each upstream was asked today, counted by every worker process for `python -m worker status`.

One hash per upstream and exchange-local day (`reader.keys.upstream_day`, its fields
`reader.telemetry.UPSTREAM_DAY_FIELDS`): `calls` sent, `status:<code>` of the answers,
`fault:<kind>` (`worker.incidents.FaultKind`), `minute:<HH:MM>` of each call sent (exchange
time), and the requests that waited at the rate gate over `WAIT_COUNTED_S` (`waits`, `wait_s`).
The day is the exchange's (America/New_York for XNYS, `reader.calendar.EXCHANGE_TZ`, the zone of
every phase and of the on-demand `demand` keys) by the worker's injected clock.

Like the fault counts (`worker.incidents`), requests do not write Redis: `UpstreamUsage` gathers
the counts in memory and the jobs `flush_usage` them at their end, in one pipeline for every
upstream of the process; what a failed write did not save is kept for the next flush.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, tzinfo

import redis.asyncio

from reader import keys
from reader.calendar import EXCHANGE_TZ
from reader.clock import Clock, utc_now

WAIT_COUNTED_S = 0.010
"""A request that waited at the rate gate longer than this counts in `waits` and `wait_s`."""

KEPT_S = 8 * 86_400
"""A day's hash expires this long after it was last written: a week of days stays readable."""


class UpstreamUsage:
    """One upstream's requests in this process not yet added to Redis, by exchange-local day."""

    def __init__(self, provider: str, *, clock: Clock = utc_now, tz: tzinfo = EXCHANGE_TZ) -> None:
        self.provider = provider
        self.clock = clock
        self.tz = tz
        self._counts: dict[date, Counter[str]] = {}
        self._wait_s: dict[date, float] = {}

    def _day(self) -> tuple[date, str]:
        """Today's exchange date and the minute now ("HH:MM"), exchange time."""
        local = self.clock().astimezone(self.tz)
        return local.date(), f"{local:%H:%M}"

    def sent(self, status: int | None) -> None:
        """One request went out; `status` of its answer (None: no whole answer came)."""
        day, minute = self._day()
        counts = self._counts.setdefault(day, Counter())
        counts["calls"] += 1
        counts[f"minute:{minute}"] += 1
        if status is not None:
            counts[f"status:{status}"] += 1

    def fault(self, kind: str) -> None:
        """One request counted as a fault of `kind` (sent or not: `circuit_open` is never sent)."""
        day, _ = self._day()
        self._counts.setdefault(day, Counter())[f"fault:{kind}"] += 1

    def waited(self, wait_s: float) -> None:
        """One request waited `wait_s` seconds at the rate gate (counted past `WAIT_COUNTED_S`)."""
        if wait_s <= WAIT_COUNTED_S:
            return
        day, _ = self._day()
        self._counts.setdefault(day, Counter())["waits"] += 1
        self._wait_s[day] = self._wait_s.get(day, 0.0) + wait_s

    def unsaved(self) -> dict[date, dict[str, float]]:
        """What the next flush adds: day -> field -> count (`wait_s` in seconds)."""
        days = set(self._counts) | set(self._wait_s)
        return {
            day: {
                **dict(self._counts.get(day, {})),
                **({"wait_s": self._wait_s[day]} if day in self._wait_s else {}),
            }
            for day in sorted(days)
        }

    def _take(self) -> tuple[dict[date, Counter[str]], dict[date, float]]:
        taken = self._counts, self._wait_s
        self._counts, self._wait_s = {}, {}
        return taken

    def _restore(self, counts: dict[date, Counter[str]], wait_s: dict[date, float]) -> None:
        for day, counter in counts.items():
            self._counts.setdefault(day, Counter()).update(counter)
        for day, seconds in wait_s.items():
            self._wait_s[day] = self._wait_s.get(day, 0.0) + seconds

    def __repr__(self) -> str:
        calls = sum(c["calls"] for c in self._counts.values())
        return f"<UpstreamUsage {self.provider} unsaved_calls={calls} days={len(self._counts)}>"


async def flush_usage(client: redis.asyncio.Redis, usages: Iterable[UpstreamUsage]) -> None:
    """Add the unsaved counts of `usages` to Redis in one pipeline (HINCRBY, HINCRBYFLOAT for
    `wait_s`, EXPIRE `KEPT_S` on each day's hash). On a `redis.RedisError` (raised) every count is
    kept for the next flush."""
    taken = [(usage, *usage._take()) for usage in usages]
    if not any(counts or wait_s for _, counts, wait_s in taken):
        return
    try:
        async with client.pipeline(transaction=False) as pipe:
            for usage, counts, wait_s in taken:
                for day in set(counts) | set(wait_s):
                    key = keys.upstream_day(usage.provider, day)
                    for field, count in counts.get(day, Counter()).items():
                        pipe.hincrby(key, field, count)
                    if day in wait_s:
                        pipe.hincrbyfloat(key, "wait_s", round(wait_s[day], 6))
                    pipe.expire(key, KEPT_S)
            await pipe.execute()
    except BaseException:
        for usage, counts, wait_s in taken:
            usage._restore(counts, wait_s)
        raise
