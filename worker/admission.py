"""Which queued jobs a worker process starts now, and in what order: job slots spent by priority.

arq reads the ready jobs of the queue in score order (when each was enqueued) and starts each in
one of `max_jobs` slots. `MarketWorker.start_jobs` passes them through `Admission.choose` first:

- **By rank** (`worker.priority`): the tick, on-demand fetches, quote refreshes, then the
  background datasets in config.yaml's `priority` order; first come, first served within a rank.
- **Slots kept for better ranks**: background refreshes hold at most `max_jobs - 2` slots of a
  process and quote refreshes `max_jobs - 1`, so an on-demand fetch always finds a slot free, and
  so does a quote refresh, whatever number of background jobs are queued (each kind may always
  take one slot: with `max_jobs` under 3 some slots cannot be kept, and check-config says so).
- **Background jobs one upstream at a time**: at most `BACKGROUND_PER_UPSTREAM` background
  refreshes of one upstream run at once in the whole fleet. A started job then gets its share of
  the allowance and ends well within its timeout; ten started at once would share it tenfold and
  run out of time together. The others wait in arq's queue, in order, and the next is started by
  whichever worker polls first. Each running one holds a lease in Redis (`keys.background_jobs`,
  a sorted set of `<process token>|<job id>` scored by the lease's end on the Redis server's
  clock), renewed (and put back if Redis lost it) with
  the job's in-progress key, so that the slot of a killed worker's job is free again within
  `LEASE_S`.

A job running elsewhere (arq keeps it in the queue until it ends) is passed over. A job `choose`
leaves out stays queued; one it lets through that arq then does not start (started elsewhere in
the meantime) gives its lease back within `LEASE_S`, as it is not renewed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio
from arq.constants import in_progress_key_prefix

from reader import keys
from worker.priority import ON_DEMAND, QUOTES

TICK = -1
"""The rank of arq's cron job (the tick that enqueues what is due): it runs for milliseconds."""

BACKGROUND_PER_UPSTREAM = 2
"""Background refreshes of one upstream run at once in the whole fleet: two, so that one's last
requests overlap the next one's first and the allowance is never left unspent between jobs."""

KEPT_FOR_ON_DEMAND = 1
"""Job slots of a process that only on-demand fetches (and the tick) may take."""

KEPT_FOR_QUOTES = 1
"""Job slots of a process that only on-demand fetches and quote refreshes may take, besides
`KEPT_FOR_ON_DEMAND`."""

CHECKED_AT_ONCE = 32
"""Queued job ids checked for a run elsewhere in one round trip."""


# Take a background slot of one upstream for ARGV[1] (a job id) until the lease of ARGV[3] ms
# ends, if fewer than ARGV[2] unexpired leases are held (a lease already held is renewed). A lease
# is `<process token>|<job id>`: two processes that chose the same job each hold their own, and
# each gives back only its own (the one arq did not start the job on, at its next renewal).
_TAKE = """
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1
"""

# Extend the leases ARGV[2..] to end ARGV[1] ms from now, adding back any that lapsed or that a
# restarted Redis lost: the jobs run.
_RENEW = """
local t = redis.call('TIME')
local until_ms = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], until_ms, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return 1
"""


@dataclass(frozen=True)
class QueuedJob:
    """A job id read from the queue, with what decides when it starts."""

    job_id: str
    rank: int
    dataset: str | None
    """The dataset of a refresh job; None for the tick and on-demand fetches."""


class Admission:
    """`choose(...)` the jobs to start in one process of `max_jobs` slots, and `renew` the fleet
    leases of its background jobs; the datasets' ranks and upstreams are passed at each poll, so
    that they follow a reloaded config."""

    def __init__(
        self,
        redis_client: redis.asyncio.Redis,
        max_jobs: int,
        *,
        lease_ms: int,
        per_upstream: int = BACKGROUND_PER_UPSTREAM,
    ) -> None:
        self.redis = redis_client
        self.max_jobs = max_jobs
        self.lease_ms = lease_ms
        self.per_upstream = per_upstream
        self.token = uuid.uuid4().hex[:12]
        """This process's mark on the leases it holds."""
        self.leases: dict[str, str] = {}
        """Background job id -> the upstream whose slot it holds, for the jobs this process runs."""

    async def choose(
        self,
        job_ids: Sequence[str],
        running: Iterable[str],
        ranks: dict[str, int],
        upstreams: dict[str, str | None],
        *,
        occupied: int = 0,
    ) -> list[str]:
        """The ids of `job_ids` to start now, best rank first. `running`: ids this process runs;
        `ranks`/`upstreams`: each dataset's rank and the upstream its refresh calls (None: none);
        `occupied`: slots arq counts as taken (a job ending frees its slot a moment after its
        task is done), so that arq never waits for a slot in the middle of a poll."""
        queued = sorted(
            (classify(job_id, ranks) for job_id in job_ids),
            key=lambda job: job.rank,
        )
        busy = [classify(job_id, ranks) for job_id in running]
        background = sum(job.rank > QUOTES for job in busy)
        quotes = sum(job.rank == QUOTES for job in busy)
        free = self.max_jobs - max(len(busy), occupied)
        refused: set[str] = set()
        chosen: list[str] = []
        for job in await self._not_started(queued, free):
            if free <= 0:
                break
            if job.rank > QUOTES:
                if background >= max(1, self.max_jobs - KEPT_FOR_ON_DEMAND - KEPT_FOR_QUOTES):
                    continue
                upstream = upstreams.get(job.dataset or "")
                if upstream is not None:
                    if upstream in refused or not await self._take(upstream, job.job_id):
                        refused.add(upstream)
                        continue
                    self.leases[job.job_id] = upstream
                background += 1
            elif job.rank == QUOTES:
                if background + quotes >= max(1, self.max_jobs - KEPT_FOR_ON_DEMAND):
                    continue
                quotes += 1
            chosen.append(job.job_id)
            free -= 1
        return chosen

    async def _not_started(self, queued: list[QueuedJob], free: int) -> list[QueuedJob]:
        """The first of `queued` (in order) that no worker runs yet, enough for `free` slots of
        each kind: arq keeps a running job in its queue until it ends, and one running elsewhere
        must not take a slot here (nor its lease be renewed by this process). One round trip per
        `CHECKED_AT_ONCE` ids, seldom more than one."""
        found: list[QueuedJob] = []
        for start in range(0, len(queued), CHECKED_AT_ONCE):
            chunk = queued[start : start + CHECKED_AT_ONCE]
            async with self.redis.pipeline(transaction=False) as pipe:
                for job in chunk:
                    pipe.exists(in_progress_key_prefix + job.job_id)
                started = await pipe.execute()
            found += [job for job, running in zip(chunk, started, strict=True) if not running]
            if len(found) >= free * 3:  # room for the ones a kind's limit leaves out
                break
        return found

    async def renew(self, running: Iterable[str]) -> None:
        """Renew the leases of the background jobs this process runs; give back the others'."""
        alive = set(running)
        ended = [job_id for job_id in self.leases if job_id not in alive]
        by_upstream: dict[str, list[str]] = {}
        for job_id, upstream in self.leases.items():
            if job_id in alive:
                by_upstream.setdefault(upstream, []).append(job_id)
        if not by_upstream and not ended:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for upstream, held in by_upstream.items():
                leases = [self._lease(job_id) for job_id in held]
                pipe.eval(_RENEW, 1, keys.background_jobs(upstream), str(self.lease_ms), *leases)
            for job_id in ended:
                pipe.zrem(keys.background_jobs(self.leases[job_id]), self._lease(job_id))
            await pipe.execute()
        for job_id in ended:
            del self.leases[job_id]

    def _lease(self, job_id: str) -> str:
        return f"{self.token}|{job_id}"

    async def _take(self, upstream: str, job_id: str) -> bool:
        taken = await self.redis.eval(  # type: ignore[misc]  # redis-py types eval as sync|async
            _TAKE,
            1,
            keys.background_jobs(upstream),
            self._lease(job_id),
            str(self.per_upstream),
            str(self.lease_ms),
        )
        return bool(taken)


def classify(job_id: str, ranks: dict[str, int]) -> QueuedJob:
    """The rank of a queued job from its id: the tick, an on-demand fetch, or a refresh (of a
    dataset in `ranks`); anything else ranks with the tick, first (it is not ours to hold back)."""
    refresh = keys.refresh_job_parts(job_id)
    if refresh is not None and refresh[0] in ranks:
        return QueuedJob(job_id, ranks[refresh[0]], refresh[0])
    if job_id.startswith(keys.FETCH_JOBS):
        return QueuedJob(job_id, ON_DEMAND, None)
    return QueuedJob(job_id, TICK, None)
