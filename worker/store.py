"""Writes cached items to Redis: a batch at a time, atomically, with a TTL past `fresh_until`.

The reader may serve an item after `fresh_until` (flagged stale) until the key expires,
`keep_stale_s` later, so an upstream outage degrades answers instead of emptying the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio

from reader import keys
from reader.clock import Clock, utc_now
from reader.models import Quote

_MIN_TTL_MS = 1_000


class Store:
    """The worker's only writer of data keys."""

    def __init__(
        self, redis_client: redis.asyncio.Redis, *, keep_stale_s: int, clock: Clock = utc_now
    ) -> None:
        self._redis = redis_client
        self.keep_stale_s = keep_stale_s
        self._clock = clock

    async def put_quotes(self, quotes: Sequence[Quote]) -> None:
        """Store every quote of a batch in one MULTI/EXEC: a reader sees all of them or none."""
        if not quotes:
            return
        now = self._clock()
        async with self._redis.pipeline(transaction=True) as pipe:
            for quote in quotes:
                ttl_ms = int(((quote.fresh_until - now).total_seconds() + self.keep_stale_s) * 1000)
                pipe.set(
                    keys.quote(quote.symbol),
                    quote.model_dump_json(exclude_none=True),
                    px=max(ttl_ms, _MIN_TTL_MS),
                )
            await pipe.execute()

    def __repr__(self) -> str:
        return f"<Store keep_stale_s={self.keep_stale_s}>"
