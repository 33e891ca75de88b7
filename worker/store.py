"""Writes cached items to Redis: a batch at a time, atomically, with a TTL past `fresh_until`.

The reader may serve an item after `fresh_until` (flagged stale) until the key expires,
`keep_stale_s` later, so an upstream outage degrades answers instead of emptying the cache.
The worker also reads back what it stored (a chain refresh needs the expirations and the last
price), through `get`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import redis.asyncio
from pydantic import ValidationError

from reader import keys
from reader.clock import Clock, utc_now
from reader.models import CachedItem, Quote

_MIN_TTL_MS = 1_000
_Item = TypeVar("_Item", bound=CachedItem)

Entry = tuple[str, CachedItem]
"""A key of `reader.keys` and the item to store under it."""


class Store:
    """The worker's only writer of data keys."""

    def __init__(
        self, redis_client: redis.asyncio.Redis, *, keep_stale_s: int, clock: Clock = utc_now
    ) -> None:
        self._redis = redis_client
        self.keep_stale_s = keep_stale_s
        self._clock = clock

    async def put(self, entries: Sequence[Entry]) -> None:
        """Store every entry in one MULTI/EXEC: a reader sees all of them or none."""
        if not entries:
            return
        now = self._clock()
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, item in entries:
                ttl_ms = int(((item.fresh_until - now).total_seconds() + self.keep_stale_s) * 1000)
                pipe.set(key, item.model_dump_json(exclude_none=True), px=max(ttl_ms, _MIN_TTL_MS))
            await pipe.execute()

    async def put_quotes(self, quotes: Sequence[Quote]) -> None:
        """Store a batch of quotes atomically."""
        await self.put([(keys.quote(q.symbol), q) for q in quotes])

    async def get(self, model: type[_Item], key: str) -> _Item | None:
        """The item stored under `key`, or None if there is none or it no longer fits `model`."""
        raw = await self._redis.get(key)
        if raw is None:
            return None
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            return None

    def __repr__(self) -> str:
        return f"<Store keep_stale_s={self.keep_stale_s}>"
