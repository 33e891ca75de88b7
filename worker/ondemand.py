"""On-demand fetches: what a reader's miss (or stale read) asks of the worker.

A reader enqueues `fetch(dataset, symbol, option)` under a deterministic job id
(`reader.ondemand`), so one job runs however many readers miss at once. The job:

1. makes no upstream call if the item is fresh by now (a concurrent job, or the schedule, stored
   it after the reader's miss);
2. fetches and stores through the schedule's own refresh path: the same rate gates, the same
   freshness rules, newer data winning;
3. remembers an upstream's "no such symbol" for `on_demand.unknown_ttl_s` (the negative cache
   the readers check before enqueueing); a listed symbol without such data now (`outcome.NoData`)
   is remembered by the empty items the refresh stores, until the dataset's next refresh, and
   answered `no_data` without an upstream call while they are fresh;
4. counts the symbol's on-demand fetches of the exchange day; with `on_demand.adopt`, a symbol
   fetched `adopt_after` times joins the schedule of that dataset for the rest of the day;
5. publishes the `Outcome` on `keys.FETCHED`, which the waiting readers listen to.

Quote fetches pending at once run together (`fetch_quotes_on_demand`): one job takes the others
out of the queue (`worker.claims`), and steps 1-4 run for each with one upstream call for all.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio

from reader import keys
from reader.calendar import exchange_date
from reader.models import CachedItem, ChainIndex, Expirations, PriceHistory
from reader.ondemand import FetchRequest, Outcome, Unknown
from reader.symbols import parse_symbol
from worker.logs import fields
from worker.refresh import RefreshReport
from worker.runtime import Runtime

log = logging.getLogger(__name__)

_DEMAND_MEMORY_S = 2 * 86_400

_NO_DATA = {
    "expirations": "{symbol} lists no options",
    "chains": "{symbol} lists no options",
    "history": "{source} has no daily bars of {symbol} yet (a new listing?)",
    "intraday": "{source} has no {option} bars of {symbol} in the lookback (no session in it?)",
    "indicators": "{source} has no indicators of {symbol} yet (a new listing?)",
}
"""What an asker is told of a listed symbol without data now (`outcome.NoData`), by the dataset
whose refresh serves the ask (computed indicators: the daily bars)."""

_EMPTY_ANSWERS = frozenset({"expirations", "history", "intraday"})
"""Datasets whose empty item (no dates, no bars), stored under the key asked for, is the answer."""

_WHAT = {
    "expirations": "options",
    "chains": "options",
    "history": "price history",
    "intraday": "intraday bars",
    "indicators": "indicators",
}


async def fetch_on_demand(runtime: Runtime, client: redis.asyncio.Redis, request: FetchRequest) -> Outcome:
    """Run one on-demand fetch (steps 1-4 above) and return its outcome; the caller publishes it."""
    started = time.perf_counter()
    outcome = await _fetch(runtime, client, request)
    log.info(
        "on_demand.done %s",
        fields(
            dataset=request.dataset,
            symbol=request.symbol,
            option=request.option or "-",
            status=outcome.status,
            elapsed_s=round(time.perf_counter() - started, 3),
            **({"detail": f'"{outcome.detail}"'} if outcome.detail else {}),
        ),
    )
    return outcome


async def fetch_quotes_on_demand(
    runtime: Runtime, client: redis.asyncio.Redis, requests: Sequence[FetchRequest]
) -> dict[str, Outcome]:
    """Run the on-demand fetches of quote `requests` (at most the provider's batch size) as
    `fetch_on_demand` runs one, with one upstream call for all of them that are not fresh by now.
    Returns job id -> outcome; the caller publishes them."""
    started = time.perf_counter()
    now = runtime.clock()
    fresh = await asyncio.gather(*(_fresh(runtime, r, now) for r in requests))
    due = [r for r, is_fresh in zip(requests, fresh, strict=True) if not is_fresh]
    report = await runtime.refresh("quotes", [r.symbol for r in due]) if due else RefreshReport("quotes")
    outcomes = {r.job_id: Outcome(job=r.job_id, status="fresh") for r in requests}
    for request in due:
        outcomes[request.job_id] = await _answer(runtime, client, request, _of(report, request.symbol), now)
    statuses: dict[str, int] = dict(Counter(o.status for o in outcomes.values()))
    log.info(
        "on_demand.batch_done %s",
        fields(
            dataset="quotes",
            symbols=len(requests),
            calls=1 if due else 0,
            **statuses,
            elapsed_s=round(time.perf_counter() - started, 3),
        ),
    )
    return outcomes


def _of(report: RefreshReport, symbol: str) -> RefreshReport:
    """The part of a quotes batch's report about `symbol`; its error is the one that names it (a
    refused value), else the batch's first (a failed call, no quote returned)."""

    def only(symbols: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s for s in symbols if s == symbol)

    named = re.compile(rf"(?<![\w.^/:-]){re.escape(symbol)}(?![\w.^/:-])")
    errors = tuple(e for e in report.errors if named.search(e))[:1] or report.errors[:1]
    return RefreshReport(
        report.dataset,
        requested=only(report.requested),
        stored=only(report.stored),
        unmatched=only(report.unmatched),
        failed=only(report.failed),
        errors=errors if symbol in report.failed else (),
        retryable=only(report.retryable),
        no_data=only(report.no_data),
    )


async def publish(client: redis.asyncio.Redis, *outcomes: Outcome) -> None:
    """Tell the waiting readers (step 5), one message per outcome, in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for outcome in outcomes:
            pipe.publish(keys.FETCHED, outcome.model_dump_json())
        await pipe.execute()


async def _fetch(runtime: Runtime, client: redis.asyncio.Redis, request: FetchRequest) -> Outcome:
    job = request.job_id
    if request.dataset == "indicators" and not runtime.config.datasets.indicators.enabled:
        return Outcome(
            job=job, status="failed", detail="datasets.indicators is disabled in config.yaml; enable it"
        )
    now = runtime.clock()
    remembered = await _remembered_no_data(runtime, request, now)
    if remembered is not None:
        return Outcome(job=job, status="no_data", detail=_no_data_detail(runtime, request, remembered))
    if await _fresh(runtime, request, now):
        return Outcome(job=job, status="fresh")
    return await _answer(runtime, client, request, await runtime.fetch(request), now)


async def _answer(
    runtime: Runtime, client: redis.asyncio.Redis, request: FetchRequest, report: RefreshReport, now: datetime
) -> Outcome:
    """Steps 3-4 and the outcome, once `report` (of this request's symbol) says what the fetch did."""
    job = request.job_id
    if report.stored:
        if (
            request.dataset == "chains"
            and request.option
            and not await runtime.store.exists(request.data_key)
        ):
            return Outcome(job=job, status="unlisted", detail=await _listed(runtime, request))
        try:
            await _count_demand(runtime, client, request)
        except redis.RedisError as e:  # the data is stored: the count can miss one
            log.warning("on_demand.count_failed symbol=%s error=%s", request.symbol, e)
        return Outcome(job=job, status="stored")
    if report.no_data and request.dataset in _EMPTY_ANSWERS:
        return Outcome(job=job, status="stored")  # the empty item stored is the answer
    if report.no_data:
        key = _empty_item_key(runtime, request)
        found = None if key is None else await runtime.store.get(CachedItem, key)
        return Outcome(job=job, status="no_data", detail=_no_data_detail(runtime, request, found))
    if report.unmatched:
        dataset = runtime.on_demand_dataset(request)
        source, quotes = runtime.plans[dataset].source, runtime.providers.quotes.name
        detail = f"{quotes} does not know this symbol"
        occ = parse_symbol(request.symbol).occ
        if occ is not None and occ.expiration < exchange_date(now):
            detail = f"the contract expired on {occ.expiration.isoformat()}; {quotes} quotes it no more"
        elif request.dataset != "quotes":
            detail = f"{source} has no {_WHAT[request.dataset]} for it, and {detail}"
        unknown = Unknown(source=source, checked_at=now, detail=detail)
        await client.set(
            request.unknown_key, unknown.model_dump_json(), ex=runtime.config.on_demand.unknown_ttl_s
        )
        return Outcome(job=job, status="unknown", detail=detail)
    return Outcome(
        job=job, status="failed", detail=report.errors[0] if report.errors else "nothing was stored"
    )


async def _fresh(runtime: Runtime, request: FetchRequest, now: datetime) -> bool:
    """Whether what `request` asks for is stored and fresh, so the upstream need not be called. For
    the nearest chain, a fresh index is not enough: it must list a chain from today on that exists."""
    if request.dataset != "chains" or request.option:
        current = await runtime.store.get(CachedItem, request.data_key)
        return current is not None and current.fresh_until > now
    index = await runtime.store.get(ChainIndex, request.data_key)
    if index is None or index.fresh_until <= now:
        return False
    today = exchange_date(now)
    upcoming = [d for d in index.expirations if d >= today]
    return bool(upcoming) and await runtime.store.exists(keys.chain(request.symbol, upcoming[0]))


def _empty_item_key(runtime: Runtime, request: FetchRequest) -> str | None:
    """The key of the empty item that remembers "no data" for `request` (`outcome.NoData`): the
    chain index for chains, the daily bars for computed indicators; None for Polygon's indicators
    (no item remembers those)."""
    if request.dataset == "chains":
        return keys.chain_index(request.symbol)
    if request.dataset == "indicators":
        computed = runtime.on_demand_dataset(request) == "history"
        return keys.history(request.symbol, "1d") if computed else None
    return request.data_key


async def _remembered_no_data(runtime: Runtime, request: FetchRequest, now: datetime) -> CachedItem | None:
    """The stored item, still fresh, that says the upstream has no data for `request` now (so no call
    is made): an empty chain index or expirations for chains; daily bars without a bar for
    computed indicators. (Empty bars or expirations asked for directly are simply fresh.)"""
    found: list[CachedItem | None] = []
    if request.dataset == "chains":
        index = await runtime.store.get(ChainIndex, keys.chain_index(request.symbol))
        listed = await runtime.store.get(Expirations, keys.expirations(request.symbol))
        if listed is not None and listed.dates:
            return None  # it lists options (again): an empty index left from before is no answer
        found = [index if index is not None and not index.expirations else None, listed]
    elif request.dataset == "indicators" and runtime.on_demand_dataset(request) == "history":
        bars = await runtime.store.get(PriceHistory, keys.history(request.symbol, "1d"))
        found = [bars if bars is not None and not bars.bars else None]
    return next((item for item in found if item is not None and item.fresh_until > now), None)


def _no_data_detail(runtime: Runtime, request: FetchRequest, item: CachedItem | None) -> str:
    """What to tell an asker of `request` whose symbol is listed but has no such data now, with when
    that was checked and when the worker checks again (from `item`, the empty item stored)."""
    dataset = runtime.on_demand_dataset(request)
    source = item.source if item is not None else runtime.plans[dataset].source
    text = _NO_DATA[dataset].format(source=source, symbol=request.symbol, option=request.option)
    if item is None:
        return text
    return (
        f"{text} (checked {_minute(item.fetched_at)}; the worker checks again after "
        f"{_minute(item.fresh_until)}; asking before then gets this answer)"
    )


def _minute(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


async def _listed(runtime: Runtime, request: FetchRequest) -> str:
    """What to tell an asker whose expiration is not listed."""
    listed = await runtime.store.get(Expirations, keys.expirations(request.symbol))
    dates = [d.isoformat() for d in listed.dates] if listed is not None else []
    shown = ", ".join(dates[:8]) + (f" and {len(dates) - 8} more" if len(dates) > 8 else "")
    return (
        f"{request.symbol} lists no option expiration on {request.option} (listed: {shown or 'none'}); "
        "ask for one of those, or for the nearest chain"
    )


async def _count_demand(runtime: Runtime, client: redis.asyncio.Redis, request: FetchRequest) -> None:
    """Step 4: count a stored on-demand fetch of a symbol off the watchlist; adopt it if asked often."""
    dataset = runtime.on_demand_dataset(request)
    intraday = runtime.config.datasets.history.intraday
    if dataset == "intraday" and (intraday is None or request.option != intraday.bar):
        return  # a bar length the schedule does not refresh
    if request.symbol in runtime.config.watchlist:
        return
    day = exchange_date(runtime.clock())
    demand_key = keys.demand(dataset, day)
    async with client.pipeline(transaction=True) as pipe:
        pipe.zincrby(demand_key, 1, request.symbol)
        pipe.expire(demand_key, _DEMAND_MEMORY_S)
        count, _ = await pipe.execute()
    settings = runtime.config.on_demand
    if not settings.adopt or count < settings.adopt_after or dataset not in runtime.scheduled:
        return
    adopted_key = keys.adopted(dataset, day)
    async with client.pipeline(transaction=True) as pipe:
        pipe.sadd(adopted_key, request.symbol)
        pipe.expire(adopted_key, _DEMAND_MEMORY_S)
        added, _ = await pipe.execute()
    if added:
        log.info(
            "on_demand.adopted %s",
            fields(dataset=dataset, symbol=request.symbol, fetches=int(count), until=f"end of {day}"),
        )
