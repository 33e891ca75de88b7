"""The reader's miss path: enqueue an on-demand fetch once, wait for the worker's announcement.

`AsyncFetches` serves `Reader`, `SyncFetches` serves `SyncReader`; both follow `reader.ondemand`:
subscribe to `keys.FETCHED` first, then run `ENQUEUE_SCRIPT` (which may answer at once: the data
landed meanwhile, or the symbol is negative-cached), then wait for the `Outcome` of the job id,
reading the key every `FALLBACK_READ_S` in case a message was lost. Within one async reader,
concurrent misses of the same request share one enqueue and one wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

import redis
import redis.asyncio
from pydantic import ValidationError

from reader import keys
from reader.errors import NotCached, UnknownSymbol
from reader.ondemand import ENQUEUE_SCRIPT, FetchRequest, Mode, Outcome, Unknown

FALLBACK_READ_S = 0.25
"""How often a waiting reader reads the key itself, in case the worker's message was lost."""

REVALIDATE_EVERY_S = 5.0
"""A reader enqueues the refresh of one stale item at most this often (arq dedups across readers)."""


class Fresh(Protocol):
    """What the miss path needs of an item: whether it is stale, and when it was fetched."""

    @property
    def stale(self) -> bool: ...

    @property
    def fetched_at(self) -> datetime: ...


_Item = TypeVar("_Item", bound=Fresh)


def _decode_answer(request: FetchRequest, answer: list[Any]) -> Outcome | None:
    """The outcome `ENQUEUE_SCRIPT`'s answer settles at once (data landed, or negative-cached)."""
    status = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
    if status == "data":
        return Outcome(job=request.job_id, status="stored")
    if status == "unknown":
        try:
            detail = Unknown.model_validate_json(answer[1]).detail
        except ValidationError:
            detail = "the upstream has no such symbol"
        return Outcome(job=request.job_id, status="unknown", detail=detail)
    return None


def _parse_message(message: dict[str, Any] | None) -> Outcome | None:
    if not message or message.get("type") != "message":
        return None
    try:
        return Outcome.model_validate_json(message["data"])
    except ValidationError:
        return None


def _settle(outcome: Outcome, miss: NotCached) -> None:
    """Raise what an unsuccessful outcome means; return for stored/fresh (read the key then)."""
    if outcome.status == "unknown":
        raise UnknownSymbol(
            miss.dataset,
            miss.symbol,
            f"{outcome.detail}; check the ticker (this answer is remembered for a few minutes)",
        )
    if outcome.status == "failed":
        raise NotCached(
            miss.dataset, miss.symbol, f"an on-demand fetch failed: {outcome.detail}; ask again later"
        )


def _timeout(miss: NotCached, wait_s: float, fresh: bool) -> NotCached:
    what = "fresh data" if fresh else "it"
    before = f"{miss.detail}; " if miss.specific else ""
    return NotCached(
        miss.dataset,
        miss.symbol,
        f"{before}a fetch is queued; waited {wait_s:g} s for {what}; ask again in a few seconds",
    )


def _usable(item: _Item, fresh: bool) -> bool:
    return not (fresh and item.stale)


class AsyncFetches:
    """On-demand fetches for one async reader (one pub/sub connection, opened at the first miss)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client
        self._script = client.register_script(ENQUEUE_SCRIPT)
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribing: asyncio.Lock | None = None
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        self._revalidated: dict[str, float] = {}

    async def enqueue(self, request: FetchRequest, mode: Mode) -> Outcome | None:
        """Run the enqueue script; the outcome if it settles the request at once."""
        keys_, args = request.script_call(mode)
        answer = await self._script(keys=keys_, args=args)
        return _decode_answer(request, answer)

    async def revalidate(self, request: FetchRequest) -> None:
        """Enqueue a refresh of a stale item without waiting for it (at most every few seconds)."""
        now = time.monotonic()
        if now - self._revalidated.get(request.job_id, -REVALIDATE_EVERY_S) < REVALIDATE_EVERY_S:
            return
        self._revalidated[request.job_id] = now
        if len(self._revalidated) > 4096:
            self._revalidated = {k: t for k, t in self._revalidated.items() if now - t < REVALIDATE_EVERY_S}
        await self.enqueue(request, "refresh")

    async def wait(
        self,
        request: FetchRequest,
        read: Callable[[], Awaitable[_Item]],
        miss: NotCached,
        *,
        mode: Mode,
        wait_s: float,
        fresh: bool,
    ) -> _Item:
        """Get `request` fetched and return `read()` once it lands; raises `NotCached` after `wait_s`,
        `UnknownSymbol` if the upstream has no such symbol."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        await self._subscribe()
        future = self._waiting.get(request.job_id)
        if future is None or future.done():
            future = loop.create_future()
            self._waiting[request.job_id] = future
            try:
                settled = await self.enqueue(request, mode)
            except BaseException:
                self._forget(request.job_id, future)
                raise
            if settled is not None:
                future.set_result(settled)
        try:
            while not future.done() and (remaining := deadline - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(remaining, FALLBACK_READ_S))
                    break
                with contextlib.suppress(NotCached):
                    item = await read()
                    if _usable(item, fresh):
                        return item
        finally:
            self._forget(request.job_id, future)
        if not future.done():
            raise _timeout(miss, wait_s, fresh)
        _settle(future.result(), miss)
        item = await read()
        if _usable(item, fresh):
            return item
        raise NotCached(miss.dataset, miss.symbol, "the fetch ran but the upstream's answer is already stale")

    def _forget(self, job_id: str, future: asyncio.Future[Outcome]) -> None:
        """Stop sharing `future`: the next miss runs the enqueue script again (cheap, deduplicated),
        so a lost message or an expired job cannot strand later callers."""
        if self._waiting.get(job_id) is future:
            del self._waiting[job_id]

    def _listening(self) -> bool:
        return self._listener is not None and not self._listener.done()

    async def _subscribe(self) -> None:
        """Subscribe once (confirmed by Redis before any enqueue), and dispatch what arrives."""
        if self._listening():
            return
        if self._subscribing is None:
            self._subscribing = asyncio.Lock()
        async with self._subscribing:
            if self._listening():
                return
            pubsub = self._redis.pubsub()
            await pubsub.subscribe(keys.FETCHED)
            while (await pubsub.get_message(timeout=1.0)) is None:
                pass  # the first message is the subscription's confirmation
            self._pubsub = pubsub
            self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub))

    async def _listen(self, pubsub: redis.asyncio.client.PubSub) -> None:
        try:
            while True:
                outcome = _parse_message(await pubsub.get_message(timeout=None))
                if outcome is None:
                    continue
                future = self._waiting.pop(outcome.job, None)
                if future is not None and not future.done():
                    future.set_result(outcome)
        except (redis.RedisError, OSError):
            return  # waiters fall back to reading the key; the next miss subscribes again

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 5


class SyncFetches:
    """On-demand fetches for one blocking reader: a pub/sub subscription per wait."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._script = client.register_script(ENQUEUE_SCRIPT)
        self._revalidated: dict[str, float] = {}

    def enqueue(self, request: FetchRequest, mode: Mode) -> Outcome | None:
        keys_, args = request.script_call(mode)
        return _decode_answer(request, cast("list[Any]", self._script(keys=keys_, args=args)))

    def revalidate(self, request: FetchRequest) -> None:
        """See `AsyncFetches.revalidate`."""
        now = time.monotonic()
        if now - self._revalidated.get(request.job_id, -REVALIDATE_EVERY_S) < REVALIDATE_EVERY_S:
            return
        self._revalidated[request.job_id] = now
        self.enqueue(request, "refresh")

    def wait(
        self,
        request: FetchRequest,
        read: Callable[[], _Item],
        miss: NotCached,
        *,
        mode: Mode,
        wait_s: float,
        fresh: bool,
    ) -> _Item:
        """See `AsyncFetches.wait`."""
        deadline = time.monotonic() + wait_s
        pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
        try:
            pubsub.subscribe(keys.FETCHED)
            while pubsub.get_message(timeout=1.0) is None:
                pass  # the subscription's confirmation
            outcome = self.enqueue(request, mode)
            next_read = time.monotonic() + FALLBACK_READ_S
            while outcome is None and (remaining := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=min(remaining, max(next_read - time.monotonic(), 0.0)))
                got = _parse_message(message)
                if got is not None and got.job == request.job_id:
                    outcome = got
                elif time.monotonic() >= next_read:
                    next_read = time.monotonic() + FALLBACK_READ_S
                    with contextlib.suppress(NotCached):
                        item = read()
                        if _usable(item, fresh):
                            return item
        finally:
            pubsub.close()
        if outcome is None:
            raise _timeout(miss, wait_s, fresh)
        _settle(outcome, miss)
        item = read()
        if _usable(item, fresh):
            return item
        raise NotCached(miss.dataset, miss.symbol, "the fetch ran but the upstream's answer is already stale")
