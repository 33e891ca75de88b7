"""The tick's work: turn what `worker.schedule` says is due into arq jobs, once per fleet.

State lives in Redis so that every worker process agrees: the last refresh time enqueued per
dataset (a tick claims a slot with a compare-and-set, so two tickers never enqueue it twice) and
the latest job of each batch (a batch whose previous job is still queued or running is skipped,
and the skip counted, instead of stacking a second one behind it). Job ids are deterministic,
`refresh:{dataset}:{slot}:{batch}`, which arq refuses to enqueue twice.

A catch-up, at start and after a config reload, enqueues at once whatever is missing from the
cache or already stale, whatever the phase of the market.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from reader import keys
from reader.calendar import exchange_date
from reader.jobs import DATASETS, refresh_job
from reader.models import PublishedCalendar
from reader.ondemand import FetchRequest
from worker import schedule
from worker.logs import fields
from worker.published import published_plan
from worker.runtime import Runtime

log = logging.getLogger(__name__)

_RUNNING = frozenset({JobStatus.deferred, JobStatus.queued, JobStatus.in_progress})
_BATCH_MEMORY_S = 7 * 86_400
BATCH_CLAIM_MS = 5000
"""The longest a worker holds a batch's claim (it gives it back once enqueued; this if it died)."""
QUEUED_INTERVALS = 3
"""A refresh job not started within this many refresh intervals of its dataset is dropped."""
MIN_QUEUED_S = 60.0
MAX_QUEUED_S = 86_400.0

# Compare-and-set of a dataset's last enqueued slot: set ARGV[1] only if it is later.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

# `fresh_until` of each key's item, read inside Redis (the envelope comes first in the JSON, so
# this reads a few dozen bytes of even a large item); false for a missing key.
_FRESH_UNTIL = """
local out = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  out[i] = value and string.match(value, '"fresh_until":"([^"]+)"') or false
end
return out
"""


@dataclass
class TickReport:
    """What one tick did, per dataset."""

    enqueued: Counter[str]
    skipped: Counter[str]
    catch_up: Counter[str]


class Scheduler:
    """Enqueues the refreshes of `runtime` on `redis` (arq's connection)."""

    def __init__(self, runtime: Runtime, redis: ArqRedis) -> None:
        self.runtime = runtime
        self.redis = redis
        self.catch_up_pending = True
        # arq's start-up tick and its first cron tick can start in the same millisecond: one at a
        # time, or both would run the catch-up and enqueue every batch twice.
        self._ticking = asyncio.Lock()

    async def tick(self) -> TickReport:
        """Enqueue what is due now (after a catch-up, when one is pending); one tick at a time."""
        async with self._ticking:
            return await self._tick()

    async def _tick(self) -> TickReport:
        report = TickReport(Counter(), Counter(), Counter())
        now = self.runtime.clock()
        caught_up = False
        # A process's own start, or a config reload anywhere in the fleet (a flag in Redis).
        if self.catch_up_pending or await self.redis.getdel(keys.catch_up()):
            await self._catch_up(now, report)
            self.catch_up_pending = False
            caught_up = True
        for name, plan in self.runtime.scheduled.items():
            last_raw = await self.redis.get(keys.last_slot(name))
            last = datetime.fromtimestamp(int(last_raw), UTC) if last_raw is not None else None
            slot = schedule.due_slot(plan.cadence, self.runtime.calendar, last, now)
            if slot is None or not await self._claim(name, slot):
                continue
            if last is None or caught_up:
                continue  # this tick's catch-up enqueued every item whose scheduled refresh has passed
            await self._enqueue_slot(name, slot, now, report)
        if report.enqueued.total() or report.skipped.total() or report.catch_up.total():
            log.info(
                "tick.enqueued %s",
                fields(
                    batches=_counts(report.enqueued),
                    skipped=_counts(report.skipped),
                    catch_up=_counts(report.catch_up),
                ),
            )
        return report

    async def _claim(self, dataset: str, slot: datetime) -> bool:
        claimed = await self.redis.eval(_CLAIM, 1, keys.last_slot(dataset), schedule.slot_name(slot))  # type: ignore[misc]
        return bool(claimed)

    async def _enqueue_slot(self, dataset: str, slot: datetime, now: datetime, report: TickReport) -> None:
        symbols = await scheduled_symbols(self.redis, self.runtime, dataset, now)
        for batch in self.runtime.batches(dataset, symbols):
            due = schedule.DueBatch(dataset, schedule.slot_name(slot), batch)
            enqueued = await self._enqueue_batch(due, now)
            if enqueued is None:
                report.skipped[dataset] += 1
                await self.redis.incr(keys.skipped(dataset))
                log.warning(
                    "tick.skipped %s",
                    fields(
                        dataset=dataset,
                        batch=due.batch_id,
                        symbols=len(batch),
                        reason="previous run not ended",
                    ),
                )
                continue
            if enqueued:
                report.enqueued[dataset] += 1

    async def _enqueue_batch(self, due: schedule.DueBatch, now: datetime) -> bool | None:
        """Enqueue `due` unless its batch's last job is still queued or running (None, skipped);
        False if arq refused the job id (it ran already). Under a claim of the batch in Redis, so
        that two workers never both find it ended and both enqueue it."""
        claim = keys.batch_claim(due.dataset, due.batch_id)
        if not await self.redis.set(claim, 1, nx=True, px=BATCH_CLAIM_MS):
            return None  # another worker is enqueueing it now
        try:
            if await self._still_running(due):
                return None
            return await self._enqueue(due, now)
        finally:
            await self.redis.delete(claim)

    async def _still_running(self, due: schedule.DueBatch) -> bool:
        previous = await self.redis.get(keys.batch_job(due.dataset, due.batch_id))
        if previous is None:
            return False
        status = await Job(previous.decode(), self.redis, _queue_name=keys.QUEUE).status()
        return status in _RUNNING

    async def _enqueue(self, due: schedule.DueBatch, now: datetime) -> bool:
        # A job may wait its turn in the queue (`worker.admission`) for a few refresh intervals: the
        # refreshes due meanwhile skip its batch (`_still_running`), so a batch queued behind others
        # keeps its place in line, instead of being dropped at the next refresh time and enqueued
        # again at the end of the line, where it would wait again (and again) while the first ones ran.
        # Counted in whole intervals after the next refresh time: a batch enqueued (by a catch-up)
        # just before a refresh time is not dropped a few seconds later.
        cadence = self.runtime.plans[due.dataset].cadence
        upcoming = schedule.next_refresh(cadence, self.runtime.calendar, now)
        after = schedule.next_refresh(cadence, self.runtime.calendar, upcoming)
        queued_s = (upcoming - now).total_seconds() + QUEUED_INTERVALS * (after - upcoming).total_seconds()
        job = await self.redis.enqueue_job(
            refresh_job(due.dataset),
            list(due.symbols),
            _job_id=due.job_id,
            _queue_name=keys.QUEUE,
            _expires=min(max(queued_s, MIN_QUEUED_S), MAX_QUEUED_S),
        )
        if job is None:
            return False
        await self.redis.set(keys.batch_job(due.dataset, due.batch_id), due.job_id, ex=_BATCH_MEMORY_S)
        return True

    async def _catch_up(self, now: datetime, report: TickReport) -> None:
        """Enqueue the batches of every scheduled dataset that hold a symbol whose item is missing,
        or whose next scheduled refresh has come (`fresh_until` minus the slack is at or before
        `now`): that covers the refresh due now too, so the tick claims its slot without enqueueing
        it again. The batches are the schedule's own: a batch already queued or running, by a
        refresh time or by another worker's catch-up, is not enqueued again under other symbols."""
        await self._publish_schedule(now)
        slack = timedelta(seconds=self.runtime.config.cache.fresh_slack_s)
        run = f"catchup-{int(now.timestamp() * 1000)}"
        symbols = self.runtime.config.watchlist
        behind: dict[str, list[str]] = {}
        for name in self.runtime.scheduled:
            found = await self.redis.eval(  # type: ignore[misc]
                _FRESH_UNTIL, len(symbols), *(_probe_key(name, s, self.runtime) for s in symbols)
            )
            behind[name] = [s for s, fresh in zip(symbols, found, strict=True) if _behind(fresh, now + slack)]
        if "chains" in behind and "expirations" in behind:
            # A chains refresh fetches (and stores) the expirations it finds missing or stale itself.
            with_chains = set(behind["chains"])
            behind["expirations"] = [s for s in behind["expirations"] if s not in with_chains]
        for name, late in behind.items():
            # The batches of the schedule (so their ids are the ones its refreshes use, and a batch
            # queued or running is found whoever enqueued it), those holding a symbol behind.
            wanted = set(late)
            scheduled = await scheduled_symbols(self.redis, self.runtime, name, now)
            for batch in self.runtime.batches(name, scheduled):
                if wanted.isdisjoint(batch):
                    continue
                enqueued = await self._enqueue_batch(schedule.DueBatch(name, run, batch), now)
                if enqueued is None:
                    report.skipped[name] += 1
                elif enqueued:
                    report.catch_up[name] += 1

    async def _publish_schedule(self, now: datetime) -> None:
        """Tell readers what the schedule follows, at start, after each reload and after Redis came
        back: the calendar (`keys.CALENDAR`: the exchange and its unscheduled closures, so their
        market status agrees with the worker's), which symbols each dataset's schedule keeps
        (`keys.kept`), so that a miss can say why: not kept, or kept and not stored yet; and the
        plan (`keys.PLAN`: datasets, cadences, allowances), so that `python -m worker status`
        needs no config file."""
        schedule_config = self.runtime.config.schedule
        published = PublishedCalendar(
            exchange=schedule_config.exchange,
            extra_closed=tuple(sorted(set(schedule_config.extra_closed))),
            published_at=now,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.CALENDAR, published.model_dump_json())
            pipe.set(keys.PLAN, published_plan(self.runtime, now).model_dump_json())
            for name in DATASETS:
                pipe.delete(keys.kept(name))
                if name in self.runtime.scheduled and self.runtime.config.watchlist:
                    pipe.sadd(keys.kept(name), *self.runtime.config.watchlist)
            await pipe.execute()


async def scheduled_symbols(redis: ArqRedis, runtime: Runtime, dataset: str, now: datetime) -> list[str]:
    """The symbols the schedule of `dataset` refreshes at `now`: the watchlist, plus the symbols
    adopted today (with `on_demand.adopt`)."""
    symbols = list(runtime.config.watchlist)
    if not runtime.config.on_demand.adopt:
        return symbols
    adopted = await redis.smembers(keys.adopted(dataset, exchange_date(now)))  # type: ignore[misc]
    listed = set(symbols)
    return symbols + sorted(s for s in (m.decode() for m in adopted) if s not in listed)


def _probe_key(dataset: str, symbol: str, runtime: Runtime) -> str:
    """The key whose freshness stands for `dataset` of `symbol`: the one an on-demand fetch of it
    would write (intraday is scheduled only with an `intraday` section, hence a bar length)."""
    intraday = runtime.config.datasets.history.intraday
    option = intraday.bar if dataset == "intraday" and intraday is not None else ""
    return FetchRequest(dataset, symbol, option).data_key


def _behind(fresh_until: bytes | None, limit: datetime) -> bool:
    """True for a missing item, an unreadable one, or one fresh only until `limit` or earlier."""
    if not fresh_until:
        return True
    try:
        return datetime.fromisoformat(fresh_until.decode()) <= limit
    except ValueError:
        return True


def _counts(counter: Counter[str]) -> str:
    return ",".join(f"{name}:{count}" for name, count in counter.items() if count) or "-"
