"""Writes cached items to Redis: a batch at a time, atomically, newer data winning, with a TTL
past `fresh_until`.

The reader may serve an item after `fresh_until` (flagged stale) until the key expires,
`keep_stale_s` later, so an upstream outage degrades answers instead of emptying the cache.
A write never replaces an item fetched later than the one it brings: two refreshes of the same
key can finish out of order (a slow job, an on-demand fetch), and the older must not win. Nor
does a write ever store what the reader cannot read back: each item's JSON is parsed again with
its own model before the write, and one that fails (or reads back different) is refused, so a bad
value can never replace a good one. The
worker also reads back what it stored (a chain refresh needs the expirations and the last
price), through `get`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

import redis.asyncio
from pydantic import ValidationError

from reader import keys
from reader.clock import Clock, utc_now
from reader.models import CachedItem, Quote, stamp

log = logging.getLogger(__name__)

_MIN_TTL_MS = 1_000
_Item = TypeVar("_Item", bound=CachedItem)

Entry = tuple[str, CachedItem]
"""A key of `reader.keys` and the item to store under it."""

# Newer-wins batch write, atomic as a whole. KEYS: the data keys. ARGV: the channel to announce
# the write on (`keys.STORED`), then three per key: the item's `fetched_at` stamp, its TTL in ms,
# its JSON. A key is skipped when the value stored under it carries a later stamp (stamps are
# fixed-width, so they compare as strings; the envelope comes first in the JSON, so the match
# stops early). The keys written are published, in the same script, so a subscriber told of a key
# reads the new value. Returns how many keys were written.
_PUT_NEWER = """
local written = {}
for i, key in ipairs(KEYS) do
  local at = ARGV[3 * i - 1]
  local old = redis.call('GET', key)
  local old_at = old and string.match(old, '"fetched_at":"([^"]+)"')
  if not old_at or old_at <= at then
    redis.call('SET', key, ARGV[3 * i + 1], 'PX', ARGV[3 * i])
    written[#written + 1] = key
  end
end
if #written > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode(written))
end
return #written
"""


class Store:
    """The worker's only writer of data keys."""

    def __init__(
        self, redis_client: redis.asyncio.Redis, *, keep_stale_s: int, clock: Clock = utc_now
    ) -> None:
        self._redis = redis_client
        self.keep_stale_s = keep_stale_s
        self._clock = clock

    async def put(self, entries: Sequence[Entry]) -> int:
        """Store every entry in one atomic script call (a reader sees all of them or none), except
        those whose key holds an item fetched later, and announce the keys written on
        `keys.STORED`; returns how many were written."""
        now = self._clock()
        args: list[str] = []
        names: list[str] = []
        for key, item in entries:
            encoded = readable_json(key, item)
            if encoded is None:
                continue
            ttl_ms = int(((item.fresh_until - now).total_seconds() + self.keep_stale_s) * 1000)
            args += [stamp(item.fetched_at), str(max(ttl_ms, _MIN_TTL_MS)), encoded]
            names.append(key)
        if not names:
            return 0
        # EVAL rather than EVALSHA: one request per batch either way, and no NOSCRIPT round trip.
        # redis-py types the result as Awaitable | Any for both clients; this one is async.
        written = await self._redis.eval(_PUT_NEWER, len(names), *names, keys.STORED, *args)  # type: ignore[misc]
        return int(written)

    async def put_quotes(self, quotes: Sequence[Quote]) -> int:
        """Store a batch of quotes atomically, newer data winning."""
        return await self.put([(keys.quote(q.symbol), q) for q in quotes])

    async def get(self, model: type[_Item], key: str) -> _Item | None:
        """The item stored under `key`, or None if there is none or it no longer fits `model`."""
        raw = await self._redis.get(key)
        if raw is None:
            return None
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            return None

    async def exists(self, key: str) -> bool:
        """Whether anything is stored under `key`."""
        return bool(await self._redis.exists(key))

    def __repr__(self) -> str:
        return f"<Store keep_stale_s={self.keep_stale_s}>"


def readable_json(key: str, item: CachedItem) -> str | None:
    """The JSON to store for `item`, or None (logged, naming the key and the problem) when its own
    model would not read that JSON back as the same item: the item is then not written."""
    encoded = item.model_dump_json(exclude_none=True)
    try:
        back = type(item).model_validate_json(encoded)
    except ValidationError as e:
        problem = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
        log.error("store.refused key=%s reason=%s", key, f'"the reader could not read it back: {problem}"')
        return None
    if back != item:
        log.error("store.refused key=%s reason=%s", key, '"it reads back different from what was fetched"')
        return None
    return encoded
