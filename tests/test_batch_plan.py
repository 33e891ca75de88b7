"""The bulk miss plan (`reader._batch.wait_many`) on its own: the steps it asks for and what it
answers, driven step by step without Redis or a worker, on a fake monotonic clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from reader import NotCached, Quote, UnknownSymbol
from reader._batch import Ask, Enqueue, Found, Listen, Plan, Read, Step, Subscribe, wait_many
from reader.ondemand import FetchRequest, Outcome
from tests.support import TUESDAY_10_ET


class Ticks:
    """A monotonic clock that moves only when a `Listen` step is answered (as if it waited)."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _quote(symbol: str, *, stale: bool) -> Quote:
    fetched = TUESDAY_10_ET - timedelta(minutes=5 if stale else 0)
    quote = Quote(
        source="tradier", fetched_at=fetched, fresh_until=fetched + timedelta(seconds=20), symbol=symbol
    )
    quote._read_at = TUESDAY_10_ET
    return quote


def _ask(symbol: str) -> Ask:
    return Ask(FetchRequest("quotes", symbol), NotCached("quote", symbol))


def _job(symbol: str) -> str:
    return FetchRequest("quotes", symbol).job_id


def _run(plan: Plan, answer: Any) -> tuple[list[Step], Found]:
    """Drive `plan`, answering each step with `answer(step)`; the steps asked, and what it found."""
    steps: list[Step] = []
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration as done:
            return steps, done.value
        steps.append(step)
        reply = answer(step)


def test_every_miss_is_enqueued_in_one_step_and_each_outcome_settles_its_own() -> None:
    """Three misses: one Enqueue of all three; stored, unknown and failed outcomes come in one
    Listen; the stored one is read; each gets its own answer."""
    ticks = Ticks()
    plan = wait_many([_ask("AAPL"), _ask("ZZZZ"), _ask("MSFT")], wait_s=5, fresh=False, now=ticks)

    def answer(step: Step) -> Any:
        if isinstance(step, Enqueue):
            return [None] * len(step.asks)
        if isinstance(step, Listen):
            return [
                Outcome(job=_job("AAPL"), status="stored"),
                Outcome(job=_job("ZZZZ"), status="unknown", detail="tradier does not know this symbol"),
                Outcome(job=_job("MSFT"), status="failed", detail="HTTP 500"),
                Outcome(job=_job("NVDA"), status="stored"),  # another reader's: ignored
            ]
        if isinstance(step, Read):
            return {r.job_id: _quote(r.symbol, stale=False) for r in step.requests}
        return None

    steps, found = _run(plan, answer)
    assert steps[0] == Subscribe()
    assert [len(s.asks) for s in steps if isinstance(s, Enqueue)] == [3]
    assert [[r.symbol for r in s.requests] for s in steps if isinstance(s, Read)] == [["AAPL"]]
    assert isinstance(found[_job("AAPL")], Quote)
    assert isinstance(found[_job("ZZZZ")], UnknownSymbol)
    assert isinstance(found[_job("MSFT")], NotCached)
    assert "an on-demand fetch failed: HTTP 500" in str(found[_job("MSFT")])


def test_with_wait_s_0_only_what_the_script_settles_is_answered() -> None:
    """wait_s=0: no subscription, one Enqueue; data that landed is read, the rest time out at once."""
    plan = wait_many([_ask("AAPL"), _ask("MSFT")], wait_s=0, fresh=False, now=Ticks())

    def answer(step: Step) -> Any:
        if isinstance(step, Enqueue):
            return [Outcome(job=_job("AAPL"), status="stored"), None]
        if isinstance(step, Read):
            return {r.job_id: _quote(r.symbol, stale=False) for r in step.requests}
        raise AssertionError(f"no {step} with wait_s=0")

    steps, found = _run(plan, answer)
    assert not any(isinstance(s, Subscribe | Listen) for s in steps)
    assert isinstance(found[_job("AAPL")], Quote)
    assert "a fetch is queued; waited 0 s" in str(found[_job("MSFT")])


def test_a_fresh_only_ask_answered_with_stale_data_is_enqueued_again_once() -> None:
    """fresh=True: 'stored' but what is read is stale (a late announcement): enqueued again in
    refresh mode, once; a second stale answer is the error naming the clocks."""
    ticks = Ticks()
    plan = wait_many([_ask("AAPL")], wait_s=5, fresh=True, now=ticks)
    enqueued: list[tuple[str, ...]] = []

    def answer(step: Step) -> Any:
        if isinstance(step, Enqueue):
            enqueued.append(tuple(mode for _, mode in step.asks))
            return [None] * len(step.asks)
        if isinstance(step, Listen):
            return [Outcome(job=_job("AAPL"), status="stored")]
        if isinstance(step, Read):
            return {r.job_id: _quote(r.symbol, stale=True) for r in step.requests}
        return None

    _, found = _run(plan, answer)
    assert enqueued == [("miss",), ("refresh",)]
    assert "is stale by this reader's clock" in str(found[_job("AAPL")])


def test_a_lost_announcement_is_made_up_for_by_the_fallback_read() -> None:
    """No announcement ever comes: every fallback period the plan reads what is missing (and
    enqueues it again); the item read settles it; at the deadline the rest time out."""
    ticks = Ticks()
    plan = wait_many([_ask("AAPL"), _ask("MSFT")], wait_s=1, fresh=False, now=ticks)
    reads = 0

    def answer(step: Step) -> Any:
        nonlocal reads
        if isinstance(step, Enqueue):
            return [None] * len(step.asks)
        if isinstance(step, Listen):
            ticks.now_s += step.timeout_s
            return []
        if isinstance(step, Read):
            reads += 1
            assert step.tolerant  # a fallback read: a Redis error there is not the caller's
            return {
                r.job_id: _quote(r.symbol, stale=False)
                if r.symbol == "AAPL"
                else NotCached("quote", r.symbol)
                for r in step.requests
            }
        return None

    steps, found = _run(plan, answer)
    assert isinstance(found[_job("AAPL")], Quote)
    assert "a fetch is queued; waited 1 s" in str(found[_job("MSFT")])
    assert reads == 3  # at 0.25, 0.5 and 0.75 s; at 1 s the wait is over
    assert [len(s.asks) for s in steps if isinstance(s, Enqueue)] == [2, 1, 1, 1]  # the first, then MSFT


@pytest.mark.parametrize("redis_failed", [True, False])
def test_a_failed_fallback_is_tolerated_and_the_wait_goes_on(redis_failed: bool) -> None:
    """A fallback read or enqueue that Redis failed (answered None) changes nothing: the
    announcement that comes later still settles the ask."""
    ticks = Ticks()
    plan = wait_many([_ask("AAPL")], wait_s=5, fresh=False, now=ticks)
    listens = 0

    def answer(step: Step) -> Any:
        nonlocal listens
        if isinstance(step, Enqueue):
            return None if step.tolerant and redis_failed else [None]
        if isinstance(step, Listen):
            listens += 1
            ticks.now_s += step.timeout_s
            return [Outcome(job=_job("AAPL"), status="stored")] if listens == 3 else []
        if isinstance(step, Read):
            if step.tolerant:
                return (
                    None if redis_failed else {r.job_id: NotCached("quote", r.symbol) for r in step.requests}
                )
            return {r.job_id: _quote(r.symbol, stale=False) for r in step.requests}
        return None

    _, found = _run(plan, answer)
    assert isinstance(found[_job("AAPL")], Quote)
