"""The miss path of many requests at once (`quotes()`): one enqueue for all, one wait for all.

`wait_many` is the whole logic, free of I/O: a generator that yields what it needs done (subscribe,
run `ENQUEUE_SCRIPT` for these requests, read these items, listen for announcements) and is sent
the answers. `run_async` and `run_sync` carry those steps out for `Reader` and `SyncReader`, so both
faces wait the same way: subscribe, enqueue every miss in one script call, take each request's
`Outcome` as it is announced (reading the items it says are stored in one go), and every
`FALLBACK_READ_S` read what is still missing and run the script again for it (a lost message, a
job whose worker died). A fresh-only ask answered with stale data is enqueued again once, as in
`reader._fetch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from reader._fetch import (
    FALLBACK_READ_S,
    STALE_RETRIES,
    AsyncFetches,
    SyncFetches,
    _already_stale,
    _parse_message,
    _settle,
    _StaleAnswer,
    _timeout,
    _usable,
)
from reader.errors import NotCached, ReaderError
from reader.ondemand import FetchRequest, Mode, Outcome


@dataclass
class Ask:
    """One request of a batch wait: what to fetch, the miss that made it, and how to enqueue it."""

    request: FetchRequest
    miss: NotCached
    mode: Mode = "miss"
    retries: int = 0


@dataclass(frozen=True)
class Subscribe:
    """Subscribe to `keys.FETCHED` unless subscribed (errors are the caller's unless `tolerant`)."""

    tolerant: bool = False


@dataclass(frozen=True)
class Enqueue:
    """Run `ENQUEUE_SCRIPT` once for these asks; answered with the outcome each settles at once
    (None each), or None if Redis failed and `tolerant`."""

    asks: tuple[tuple[FetchRequest, Mode], ...]
    tolerant: bool = False


@dataclass(frozen=True)
class Read:
    """Read the items of these requests; answered with job id -> item or `ReaderError`, or None if
    Redis failed and `tolerant`."""

    requests: tuple[FetchRequest, ...]
    tolerant: bool = False


@dataclass(frozen=True)
class Listen:
    """Wait up to `timeout_s` for announcements; answered with those that came (maybe none)."""

    timeout_s: float


Step = Subscribe | Enqueue | Read | Listen
Found = dict[str, Any]
"""Job id -> the item, or the `ReaderError` that stands for it."""

Plan = Generator[Step, Any, Found]


def wait_many(
    asks: Sequence[Ask], *, wait_s: float, fresh: bool, now: Callable[[], float] = time.monotonic
) -> Plan:
    """Get every ask fetched within `wait_s` (0: enqueue, and answer with what the script knows);
    returns job id -> the usable item, or its error (`NotCached` on time out, `UnknownSymbol`...)."""
    pending = {ask.request.job_id: ask for ask in asks}
    found: Found = {}
    announced: dict[str, Outcome] = {}
    deadline = now() + wait_s

    def take(outcomes: Sequence[Outcome | None] | None, of: Sequence[Ask]) -> None:
        for ask, outcome in zip(of, outcomes or [None] * len(of), strict=True):
            if outcome is not None:
                announced[ask.request.job_id] = outcome

    def keep(job: str, item: Any) -> None:
        """Settle `job` with what the fallback read, if that settles it."""
        if isinstance(item, NotCached) or (not isinstance(item, ReaderError) and not _usable(item, fresh)):
            return
        found[job] = item  # usable, or an error no fetch will change
        del pending[job]

    if wait_s > 0:
        yield Subscribe()
    first = list(pending.values())
    take((yield Enqueue(tuple((a.request, a.mode) for a in first))), first)
    next_read = now() + FALLBACK_READ_S
    while pending:
        if announced:
            again = yield from _finish(announced, pending, found, fresh=fresh, late=now() >= deadline)
            announced.clear()
            if again:
                take((yield Enqueue(tuple((a.request, a.mode) for a in again), tolerant=True)), again)
            continue
        remaining = deadline - now()
        if remaining <= 0:
            break
        if now() < next_read:
            for outcome in (yield Listen(min(remaining, next_read - now()))):
                if outcome.job in pending:
                    announced[outcome.job] = outcome
            continue
        next_read = now() + FALLBACK_READ_S
        items = yield Read(tuple(a.request for a in pending.values()), tolerant=True)
        for job, item in (items or {}).items():
            if job in pending:
                keep(job, item)
        yield Subscribe(tolerant=True)  # again, if the connection dropped
        left = list(pending.values())
        if left:
            take((yield Enqueue(tuple((a.request, a.mode) for a in left), tolerant=True)), left)
    for job, ask in pending.items():
        found[job] = _timeout(ask.miss, wait_s, fresh)
    return found


def _finish(
    announced: Mapping[str, Outcome], pending: dict[str, Ask], found: Found, *, fresh: bool, late: bool
) -> Generator[Step, Any, list[Ask]]:
    """Settle the announced requests: their errors, else their items read in one go. Returns the
    fresh-only asks answered with stale data that are to be enqueued again (once each)."""
    stored: list[Ask] = []
    for job, outcome in announced.items():
        ask = pending[job]
        try:
            _settle(outcome, ask.miss)
        except ReaderError as e:
            found[job] = e
            del pending[job]
            continue
        stored.append(ask)
    items = (yield Read(tuple(a.request for a in stored))) if stored else {}
    again: list[Ask] = []
    for ask in stored:
        job = ask.request.job_id
        item = items[job]
        if isinstance(item, ReaderError) or _usable(item, fresh):
            found[job] = item
        else:
            stale = _StaleAnswer(announced[job].status, item.fetched_at)
            if stale.status == "fresh" or ask.retries >= STALE_RETRIES or late:
                found[job] = _already_stale(ask.miss, stale)
            else:  # the late announcement of an earlier job: see `AsyncFetches.wait`
                ask.retries += 1
                ask.mode = "refresh"
                again.append(ask)
                continue
        del pending[job]
    return again


_TOLERATED = (redis.RedisError, OSError)


def _advance(plan: Plan, answer: Any) -> Step | Found:
    """The plan's next step, or what it found when it is done."""
    try:
        return plan.send(answer)
    except StopIteration as done:
        return dict(done.value)


async def run_async(
    fetches: AsyncFetches,
    plan: Plan,
    read: Callable[[Sequence[FetchRequest]], Awaitable[Mapping[str, Any]]],
) -> Found:
    """Carry out `plan` (`wait_many`) with an async reader's Redis and subscription."""
    with fetches.inbox() as inbox:
        step = _advance(plan, None)
        while not isinstance(step, dict):
            answer: Any = None
            try:
                if isinstance(step, Subscribe):
                    await fetches.subscribe()
                elif isinstance(step, Enqueue):
                    answer = await fetches.enqueue_many(step.asks)
                elif isinstance(step, Read):
                    answer = await read(step.requests)
                else:
                    answer = []
                    with contextlib.suppress(TimeoutError):
                        answer.append(await asyncio.wait_for(inbox.get(), step.timeout_s))
                    while not inbox.empty():
                        answer.append(inbox.get_nowait())
            except _TOLERATED:
                if isinstance(step, Listen) or not step.tolerant:
                    raise
            step = _advance(plan, answer)
        return step


def run_sync(
    fetches: SyncFetches, plan: Plan, read: Callable[[Sequence[FetchRequest]], Mapping[str, Any]]
) -> Found:
    """Carry out `plan` (`wait_many`) with a blocking reader's Redis and a subscription of its own."""
    pubsub: redis.client.PubSub | None = None
    try:
        step = _advance(plan, None)
        while not isinstance(step, dict):
            answer: Any = None
            try:
                if isinstance(step, Subscribe):
                    pubsub = pubsub or fetches.subscription()
                elif isinstance(step, Enqueue):
                    answer = fetches.enqueue_many(step.asks)
                elif isinstance(step, Read):
                    answer = read(step.requests)
                else:
                    answer = _drain(pubsub, step.timeout_s)
            except _TOLERATED:
                if isinstance(step, Listen) or not step.tolerant:
                    raise
            step = _advance(plan, answer)
        return step
    finally:
        if pubsub is not None:
            pubsub.close()


def _drain(pubsub: redis.client.PubSub | None, timeout_s: float) -> list[Outcome]:
    """The announcements within `timeout_s`: the first waited for, then those already there."""
    if pubsub is None:
        time.sleep(timeout_s)
        return []
    got: list[Outcome] = []
    message = pubsub.get_message(timeout=timeout_s)
    while message is not None:
        outcome = _parse_message(message)
        if outcome is not None:
            got.append(outcome)
        message = pubsub.get_message(timeout=0.0)
    return got
