"""The reader's miss path: enqueue an on-demand fetch once, wait for the worker's announcement.

`AsyncFetches` serves `Reader`, `SyncFetches` serves `SyncReader`; both follow `reader.ondemand`:
subscribe to `keys.FETCHED` first, then run `ENQUEUE_SCRIPT` (which may answer at once: the data
landed meanwhile, or the symbol is negative-cached), then wait for the `Outcome` of the job id,
reading the key every `FALLBACK_READ_S` in case a message was lost. Within one async reader,
concurrent misses of the same request share one enqueue and one wait; if the subscription drops,
waiters subscribe again and re-run the script, which tells them what they missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

import redis
import redis.asyncio
from pydantic import ValidationError

from reader import keys
from reader.errors import NoData, NotCached, NoWorker, UnknownSymbol
from reader.ondemand import ENQUEUE_SCRIPT, FetchRequest, Mode, Outcome, Unknown, enqueue_args

FALLBACK_READ_S = 0.25
"""How often a waiting reader reads the key itself, in case the worker's message was lost."""

LISTEN_POLL_S = 30.0
"""The pub/sub listener's read timeout when no message comes (the socket timeout is for commands)."""

log = logging.getLogger("reader")

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
    """The outcome `ENQUEUE_SCRIPT`'s answer settles at once (the data landed, or the symbol is
    negative-cached); None while a job is queued or running."""
    status = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
    if status == "data":
        return Outcome(job=request.job_id, status="stored")
    if status == "unknown":
        try:
            detail = Unknown.model_validate_json(answer[1]).detail
        except ValidationError:
            detail = "the upstream has no such symbol"
        return Outcome(job=request.job_id, status="unknown", detail=detail)
    if status == "no_worker":
        return Outcome(job=request.job_id, status="no_worker")
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
    if outcome.status == "no_data":
        raise NoData(miss.dataset, miss.symbol, outcome.detail)
    if outcome.status == "unlisted":
        raise NotCached(miss.dataset, miss.symbol, outcome.detail)
    if outcome.status == "no_worker":
        raise NoWorker(miss.dataset, miss.symbol, f"{miss.detail}; " if miss.specific else "")
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
        f"{before}a fetch is queued; waited {wait_s:.3g} s for {what}; ask again in a few seconds",
    )


def _unconfirmed(timeout_s: float) -> redis.TimeoutError:
    what = f"Redis did not confirm the subscription to {keys.FETCHED}"
    return redis.TimeoutError(f"{what} within {timeout_s:g} s")


def _usable(item: _Item, fresh: bool) -> bool:
    return not (fresh and item.stale)


class _StaleAnswer(Exception):
    """An outcome said the data is stored (or fresh), but what is stored is stale for a fresh-only
    ask: by this reader's clock, which `status` "fresh" proves runs ahead of the worker's."""

    def __init__(self, status: str, fetched_at: datetime) -> None:
        super().__init__(status)
        self.status = status
        self.fetched_at = fetched_at


def _already_stale(miss: NotCached, stale: _StaleAnswer) -> NotCached:
    """The answer to a fresh-only ask whose fetch ended with data this reader's clock calls stale."""
    if stale.status == "fresh":
        detail = (
            f"the worker found it fresh (fetched {stale.fetched_at.isoformat()}), but it is stale by "
            "this reader's clock: the reader's clock runs ahead of the worker's; sync both (NTP), "
            "or give the reader the worker's clock"
        )
    else:
        detail = (
            f"the fetch ran but what it stored (fetched {stale.fetched_at.isoformat()}) is stale by "
            "this reader's clock: the upstream's answer was already stale, or the reader's clock "
            "runs ahead of the worker's"
        )
    return NotCached(miss.dataset, miss.symbol, detail)


STALE_RETRIES = 1
"""Fetches a fresh-only wait enqueues again after one that ended with data still stale to it (the
late announcement of an earlier job): more would spin when the reader's clock runs ahead."""


class _Revalidations:
    """When each stale item's refresh was last enqueued by this reader (pruned as it grows)."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def due(self, job_id: str) -> bool:
        now = time.monotonic()
        if now - self._at.get(job_id, -REVALIDATE_EVERY_S) < REVALIDATE_EVERY_S:
            return False
        self._at[job_id] = now
        if len(self._at) > 4096:
            self._at = {k: t for k, t in self._at.items() if now - t < REVALIDATE_EVERY_S}
        return True


def _revalidation_failed(requests: Sequence[FetchRequest], error: Exception) -> None:
    # A stale answer is still an answer: the refresh is retried on a later read.
    jobs = ",".join(r.job_id for r in requests)
    log.warning("reader.revalidate_failed jobs=%s error=%s: %s", jobs, type(error).__name__, error)


def _decode_answers(asks: Sequence[tuple[FetchRequest, Mode]], answers: list[Any]) -> list[Outcome | None]:
    """`_decode_answer` of each request, in order."""
    return [_decode_answer(request, answer) for (request, _), answer in zip(asks, answers, strict=True)]


@dataclass
class _Flight:
    """One request's wait, shared by this reader's concurrent callers until the last one leaves."""

    future: asyncio.Future[Outcome]
    waiters: int = 0


class AsyncFetches:
    """On-demand fetches for one async reader (one pub/sub connection, opened at the first miss)."""

    def __init__(self, client: redis.asyncio.Redis, timeout_s: float) -> None:
        self._redis = client
        self._timeout_s = timeout_s
        self._script = client.register_script(ENQUEUE_SCRIPT)
        self._pubsub: redis.asyncio.client.PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribing: asyncio.Lock | None = None
        self._flights: dict[str, _Flight] = {}
        self._inboxes: set[asyncio.Queue[Outcome]] = set()
        self._revalidations = _Revalidations()

    async def enqueue(self, request: FetchRequest, mode: Mode) -> Outcome | None:
        """Run the enqueue script; the outcome if it settles the request at once."""
        return (await self.enqueue_many([(request, mode)]))[0]

    async def enqueue_many(self, asks: Sequence[tuple[FetchRequest, Mode]]) -> list[Outcome | None]:
        """Run the enqueue script once for every (request, mode); for each, the outcome if it
        settles the request at once."""
        return _decode_answers(asks, await self._script(args=enqueue_args(asks)))

    async def revalidate(self, *requests: FetchRequest) -> None:
        """Enqueue refreshes of stale items without waiting for them (each at most every few
        seconds), in one round trip."""
        due = [r for r in requests if self._revalidations.due(r.job_id)]
        if due:
            try:
                await self.enqueue_many([(r, "refresh") for r in due])
            except redis.RedisError as e:
                _revalidation_failed(due, e)

    @contextlib.contextmanager
    def inbox(self) -> Iterator[asyncio.Queue[Outcome]]:
        """Every outcome announced while the block runs (once subscribed: `subscribe`)."""
        queue: asyncio.Queue[Outcome] = asyncio.Queue()
        self._inboxes.add(queue)
        try:
            yield queue
        finally:
            self._inboxes.discard(queue)

    async def subscribe(self) -> None:
        """Subscribe to the announcements unless subscribed (confirmed before it returns)."""
        await self._subscribe()

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
        if wait_s == 0:  # enqueue, and answer with what the script knows now
            settled = await self.enqueue(request, mode)
            if settled is None:
                raise _timeout(miss, wait_s, fresh)
            try:
                return await self._finish(settled, read, miss, fresh)
            except _StaleAnswer as stale:
                raise _already_stale(miss, stale) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        await self._subscribe()
        retries = 0
        while True:
            got = await self._attempt(request, read, mode, fresh, deadline)
            if got is None:
                raise _timeout(miss, wait_s, fresh)
            if not isinstance(got, Outcome):
                return got
            try:
                return await self._finish(got, read, miss, fresh)
            except _StaleAnswer as stale:
                # The announcement of an earlier job of this id, or data already stale: try again,
                # enqueueing whether or not something is stored (else the script answers "data").
                if stale.status == "fresh" or retries >= STALE_RETRIES or loop.time() >= deadline:
                    raise _already_stale(miss, stale) from None
                retries += 1
                mode = "refresh"

    async def _attempt(
        self,
        request: FetchRequest,
        read: Callable[[], Awaitable[_Item]],
        mode: Mode,
        fresh: bool,
        deadline: float,
    ) -> _Item | Outcome | None:
        """One wait for a job of `request`, shared with this reader's concurrent callers: the item
        (read while waiting), the job's outcome, or None at the deadline."""
        loop = asyncio.get_running_loop()
        flight = self._flights.get(request.job_id)
        owner = flight is None or flight.future.done()
        if flight is None or owner:
            flight = self._flights[request.job_id] = _Flight(loop.create_future())
        flight.waiters += 1
        try:
            if owner:
                await self._enqueue_for(flight, request, mode)
            while not flight.future.done() and (remaining := deadline - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(flight.future), min(remaining, FALLBACK_READ_S))
                    break
                with contextlib.suppress(NotCached):
                    item = await read()
                    if _usable(item, fresh):
                        return item
                # A lost message, a dropped subscription, a job that vanished: subscribe again if
                # needed, and run the script again (it enqueues only if no job is queued or running).
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._subscribe()
                    settled = await self.enqueue(request, mode)
                    if settled is not None and not flight.future.done():
                        flight.future.set_result(settled)
        finally:
            flight.waiters -= 1
            if (flight.waiters == 0 or flight.future.done()) and self._flights.get(request.job_id) is flight:
                del self._flights[request.job_id]
        return flight.future.result() if flight.future.done() else None

    async def _enqueue_for(self, flight: _Flight, request: FetchRequest, mode: Mode) -> None:
        try:
            settled = await self.enqueue(request, mode)
        except BaseException as e:
            if not flight.future.done():  # the callers sharing the flight learn it too
                flight.future.set_exception(e if isinstance(e, Exception) else asyncio.CancelledError())
                flight.future.exception()  # retrieved: whoever waits re-raises it
            raise
        if settled is not None and not flight.future.done():
            flight.future.set_result(settled)

    async def _finish(
        self, outcome: Outcome, read: Callable[[], Awaitable[_Item]], miss: NotCached, fresh: bool
    ) -> _Item:
        _settle(outcome, miss)
        item = await read()
        if _usable(item, fresh):
            return item
        raise _StaleAnswer(outcome.status, item.fetched_at)

    def _listening(self) -> bool:
        return self._listener is not None and not self._listener.done()

    async def _subscribe(self) -> None:
        """Subscribe (confirmed by Redis before any enqueue), and dispatch what arrives; again after
        a dropped connection."""
        if self._listening():
            return
        if self._subscribing is None:
            self._subscribing = asyncio.Lock()
        async with self._subscribing:
            if self._listening():
                return
            if self._pubsub is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
            pubsub = self._redis.pubsub()
            await pubsub.subscribe(keys.FETCHED)
            # The first message is the subscription's confirmation.
            if await pubsub.get_message(timeout=self._timeout_s) is None:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
                raise _unconfirmed(self._timeout_s)
            self._pubsub = pubsub
            self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub))

    async def _listen(self, pubsub: redis.asyncio.client.PubSub) -> None:
        try:
            while True:
                outcome = _parse_message(await pubsub.get_message(timeout=LISTEN_POLL_S))
                if outcome is None:
                    continue
                flight = self._flights.get(outcome.job)
                if flight is not None and not flight.future.done():
                    flight.future.set_result(outcome)
                for inbox in self._inboxes:
                    inbox.put_nowait(outcome)
        except (redis.RedisError, OSError) as e:
            # Waiters notice (`_listening`), subscribe again and re-run the script.
            log.warning("reader.subscription_lost error=%s: %s", type(e).__name__, e)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 5


class SyncFetches:
    """On-demand fetches for one blocking reader: a pub/sub subscription per wait."""

    def __init__(self, client: redis.Redis, timeout_s: float) -> None:
        self._redis = client
        self._timeout_s = timeout_s
        self._script = client.register_script(ENQUEUE_SCRIPT)
        self._revalidations = _Revalidations()

    def enqueue(self, request: FetchRequest, mode: Mode) -> Outcome | None:
        return self.enqueue_many([(request, mode)])[0]

    def enqueue_many(self, asks: Sequence[tuple[FetchRequest, Mode]]) -> list[Outcome | None]:
        """See `AsyncFetches.enqueue_many`."""
        return _decode_answers(asks, cast("list[Any]", self._script(args=enqueue_args(asks))))

    def revalidate(self, *requests: FetchRequest) -> None:
        """See `AsyncFetches.revalidate`."""
        due = [r for r in requests if self._revalidations.due(r.job_id)]
        if due:
            try:
                self.enqueue_many([(r, "refresh") for r in due])
            except redis.RedisError as e:
                _revalidation_failed(due, e)

    def subscription(self) -> redis.client.PubSub:
        """A pub/sub connection subscribed to the announcements (confirmed); the caller closes it."""
        pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
        try:
            pubsub.subscribe(keys.FETCHED)
            if pubsub.get_message(timeout=self._timeout_s) is None:  # the subscription's confirmation
                raise _unconfirmed(self._timeout_s)
        except BaseException:
            pubsub.close()
            raise
        return cast("redis.client.PubSub", pubsub)

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
        if wait_s == 0:
            outcome = self.enqueue(request, mode)
            if outcome is None:
                raise _timeout(miss, wait_s, fresh)
            try:
                return self._finish(outcome, read, miss, fresh)
            except _StaleAnswer as stale:
                raise _already_stale(miss, stale) from None
        deadline = time.monotonic() + wait_s
        pubsub = self.subscription()
        try:
            retries = 0
            while True:
                got = self._attempt(pubsub, request, read, mode, fresh, deadline)
                if got is None:
                    raise _timeout(miss, wait_s, fresh)
                if not isinstance(got, Outcome):
                    return got
                try:
                    return self._finish(got, read, miss, fresh)
                except _StaleAnswer as stale:  # see AsyncFetches.wait
                    if stale.status == "fresh" or retries >= STALE_RETRIES or time.monotonic() >= deadline:
                        raise _already_stale(miss, stale) from None
                    retries += 1
                    mode = "refresh"
        finally:
            pubsub.close()

    def _attempt(
        self,
        pubsub: redis.client.PubSub,
        request: FetchRequest,
        read: Callable[[], _Item],
        mode: Mode,
        fresh: bool,
        deadline: float,
    ) -> _Item | Outcome | None:
        """See `AsyncFetches._attempt`."""
        outcome = self.enqueue(request, mode)
        next_read = time.monotonic() + FALLBACK_READ_S
        while outcome is None and (remaining := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=min(remaining, max(next_read - time.monotonic(), 0.0)))
            got = _parse_message(message)
            if got is not None and got.job == request.job_id:
                return got
            if time.monotonic() >= next_read:
                next_read = time.monotonic() + FALLBACK_READ_S
                with contextlib.suppress(NotCached):
                    item = read()
                    if _usable(item, fresh):
                        return item
                outcome = self.enqueue(request, mode)  # a lost message, or a job that vanished
        return outcome

    def _finish(self, outcome: Outcome, read: Callable[[], _Item], miss: NotCached, fresh: bool) -> _Item:
        _settle(outcome, miss)
        item = read()
        if _usable(item, fresh):
            return item
        raise _StaleAnswer(outcome.status, item.fetched_at)
