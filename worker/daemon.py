"""The worker daemon: arq's `Worker`, made to outlive a Redis outage and to give up jobs fast on a crash.

arq ends its worker on the first Redis error of its poll loop, and marks each job it starts "in
progress" for the longest timeout of all registered functions plus 10 s (130 s with the shipped
config), so that a job whose worker was killed is retaken only after two minutes. `MarketWorker`:

- waits for Redis at start, with one log line, instead of giving up after arq's five tries, and
  bounds every Redis command by `REDIS_TIMEOUT_S` (arq sets no read timeout);
- survives Redis errors in its poll loop (down, restarting, stalled, or refusing writes at
  `maxmemory`): one line when they start, polls again with a capped backoff, one line when Redis
  answers again; then asks the scheduler for a catch-up (a restarted Redis may
  have lost the cache and the queue) and records its health key at once;
- holds each running job's in-progress key as a lease of `LEASE_S`, renewed every
  `LEASE_RENEW_S` while the job runs, and keeps its job key at least `JOB_KEPT_S`: a job whose
  worker died is retaken by another within `LEASE_S` plus a poll, whatever its timeout, even
  past the time its key would have expired unstarted;
- starts the queued jobs by priority (`worker.admission`): on-demand fetches first, then quote
  refreshes, then the background datasets in config.yaml's order, with job slots kept for the
  better ranks and at most two background refreshes per upstream running in the whole fleet;
- writes a health key of its own besides arq's shared one (`worker.presence`): who it is and the
  jobs it runs now, for `python -m worker status`;
- samples the queue's depth for its Prometheus metrics, when it serves them, at most once every
  `worker.metrics.QUEUE_SAMPLE_EVERY_S` (one script call);
- starts one on-demand quote fetch per poll, and waits for it to take the other pending ones out
  of the queue (`worker.claims`) before polling again: arq would start each (up to `max_jobs`) as
  a job of its own, each an upstream call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import pickle
import signal
import time
from typing import Any

import redis
import redis.asyncio
from arq import Worker
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import Deserializer

from reader import keys
from reader.clock import utc_now
from reader.redis_url import redact_url
from worker import metrics
from worker.admission import Admission
from worker.errors import ConfigError
from worker.logs import fields
from worker.presence import Presence
from worker.providers import running_health

log = logging.getLogger(__name__)

QUOTE_FETCHES = keys.fetch_jobs_of("quotes").encode()

LEASE_S = 5.0
"""How long a running job's in-progress key outlives its worker's last renewal."""

LEASE_RENEW_S = 1.0
"""How often a worker renews the leases of the jobs it runs."""

JOB_KEPT_S = 2 * LEASE_S
"""The least time a running job's arq job key (its function and arguments) outlives its lease's
last renewal. A scheduled job's key expires at the dataset's next refresh time (unstarted by then,
it is superseded), but the next refresh of a batch is skipped while the batch runs: without this,
a batch whose worker died just before that time could not be retaken ("job expired"), and its
symbols would wait a whole cadence more."""

_RENEW_LEASE = """
redis.call('pexpire', KEYS[1], ARGV[1])
local ttl = redis.call('pttl', KEYS[2])
if ttl >= 0 and ttl < tonumber(ARGV[2]) then redis.call('pexpire', KEYS[2], ARGV[2]) end
return ttl
"""
"""Renew the lease (KEYS[1], the in-progress key, to ARGV[1] ms) and keep the job key (KEYS[2])
at least ARGV[2] ms more; Redis 6.2 has no `PEXPIRE ... GT`."""

REDIS_TIMEOUT_S = 5.0
"""The longest the worker waits for Redis to answer one command before it counts Redis as away."""

REDIS_RETRY_MAX_S = 2.0
"""The longest pause between two attempts to reach Redis while it is away."""

CLAIM_WAIT_S = 1.0
"""The longest a poll waits for the quote fetch it started to take the other pending ones."""

REDIS_ERRORS = (redis.RedisError, OSError)
"""What a Redis that is down, restarting, stalled or out of memory (`maxmemory` with `noeviction`:
"OOM command not allowed") raises."""

_STARTING_JOB: contextvars.ContextVar[str | None] = contextvars.ContextVar("starting_job", default=None)
"""The id of the job whose `run_job` runs in this task, until its definition was read."""


class Leads:
    """The quote fetch jobs this process started whose claim of the other pending quote fetches
    has not run yet (`worker.claims`): the poll that started one waits for it."""

    def __init__(self) -> None:
        self._claims: dict[str, asyncio.Event] = {}

    def starting(self, job_id: str) -> None:
        self._claims[job_id] = asyncio.Event()

    def claimed(self, job_id: str) -> None:
        """Called by the job once it has claimed (or failed to)."""
        event = self._claims.get(job_id)
        if event is not None:
            event.set()

    async def wait(self, job_id: str, task: asyncio.Task[Any] | None) -> None:
        """Until `job_id`'s claim ran, its `task` ended, or `CLAIM_WAIT_S` passed."""
        event = self._claims.get(job_id)
        try:
            if event is None or task is None:
                return
            claimed = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({claimed, task}, timeout=CLAIM_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                claimed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await claimed
        finally:
            self._claims.pop(job_id, None)


class MarketWorker(Worker):
    """arq's worker for marketcache: `MarketWorker(**worker.settings.worker_options(config, ...))`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis_url: str = self.ctx["config"].redis_url
        self.in_progress_timeout_s = LEASE_S
        self.redis_down_since: float | None = None
        self.redis_failures = 0
        self._renewed_at = 0.0
        self._leased: set[str] = set()
        self.leads = self.ctx["leads"] = Leads()
        self.admission: Admission | None = None
        self.presence = Presence(self.ctx.get("clock", utc_now), self.health_check_interval)
        self.queue_sample_every_s = metrics.QUEUE_SAMPLE_EVERY_S
        self._queue_sampled_at = float("-inf")
        self.job_deserializer = self._noting_jobs(self.job_deserializer or pickle.loads)

    async def main(self) -> None:
        await wait_for_redis(self.redis_url)
        if self._pool is None:
            self._pool = await self._bounded_pool()
        self.admission = Admission(self._pool, self.max_jobs, lease_ms=int(LEASE_S * 1000))
        await super().main()

    async def _bounded_pool(self) -> ArqRedis:
        """arq's pool, with a read timeout on every command (arq sets none: a stalled Redis would
        hang the poll loop and every job for good)."""
        pool = await create_pool(
            self.redis_settings or RedisSettings.from_dsn(self.redis_url),
            job_deserializer=self.job_deserializer,
            job_serializer=self.job_serializer,
            default_queue_name=self.queue_name,
            expires_extra_ms=self.expires_extra_ms,
        )
        pool.connection_pool.connection_kwargs["socket_timeout"] = REDIS_TIMEOUT_S
        # The connection arq opened was made without it: close it and forget it, so that every
        # connection from now on is made with the timeout.
        await pool.connection_pool.disconnect()
        pool.connection_pool.reset()  # type: ignore[no-untyped-call]  # untyped in redis-py 5
        return pool

    async def _poll_iteration(self) -> None:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # arq cancelled this loop (SIGINT, SIGTERM) but the cancellation was lost on its way:
            # redis-py checks each pooled connection under `asyncio.timeout(0)`, and on Python 3.11
            # a cancel that lands there is taken for the timeout's own, and the loop ran on forever.
            raise asyncio.CancelledError
        try:
            await super()._poll_iteration()
            await self._renew_leases()
            await self._sample_queue()
        except REDIS_ERRORS as e:
            await self._redis_failed(e)
            return
        if self.redis_down_since is not None:
            self._redis_back()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # A job whose lease lapsed while this process's loop was busy is still its own: never run
        # it twice here (another worker may take it; then both finish, and newer data wins).
        running = set(self._running())
        job_ids = [job_id for job_id in job_ids if job_id.decode() not in running]
        quote_fetches = [job_id for job_id in job_ids if job_id.startswith(QUOTE_FETCHES)]
        lead = quote_fetches[0].decode() if quote_fetches else None
        job_ids = [job_id for job_id in job_ids if job_id not in quote_fetches[1:]]
        job_ids = await self._by_priority(job_ids, running)
        if lead is not None and lead.encode() not in job_ids:
            lead = None
        if lead is not None:
            self.leads.starting(lead)
        try:
            await super().start_jobs(job_ids)
        except REDIS_ERRORS:
            # arq took a job slot for the job it was checking when Redis failed: give it back.
            self.job_counter -= 1
            self.sem.release()
            raise
        finally:
            if lead is not None:
                await self.leads.wait(lead, self.tasks.get(lead) if lead in self._running() else None)

    async def _by_priority(self, job_ids: list[bytes], running: set[str]) -> list[bytes]:
        """`job_ids` in the order and number to start now (`worker.admission`)."""
        runtime = self.ctx.get("runtime")
        if self.admission is None or runtime is None:  # before on_startup: only the tick is queued
            return job_ids
        chosen = await self.admission.choose(
            [j.decode() for j in job_ids],
            running,
            runtime.ranks,
            runtime.upstreams,
            occupied=self.job_counter,
        )
        return [job_id.encode() for job_id in chosen]

    async def run_job(self, job_id: str, score: int) -> None:
        """arq's `run_job`; the job is listed in this process's health key from when arq has read
        its definition (`_noting_jobs`) until it ends. Its start and end are logged at DEBUG (arq's
        own lines are dropped as chatter: `worker.logs.DropJobChatter`)."""
        _STARTING_JOB.set(job_id)  # this task's own context: arq runs each job in a task of its own
        started = time.monotonic()
        log.debug("job.started %s", fields(job_id=job_id, worker=self.presence.worker_id))
        try:
            await super().run_job(job_id, score)
        finally:
            self.presence.ended(job_id)
            log.debug(
                "job.ended %s",
                fields(
                    job_id=job_id,
                    worker=self.presence.worker_id,
                    elapsed_s=round(time.monotonic() - started, 3),
                ),
            )

    def _noting_jobs(self, deserializer: Deserializer) -> Deserializer:
        """`deserializer`, which also tells `presence` the function and arguments of the job whose
        definition `run_job` reads (the first payload read in its task); arq gives no other hook
        that sees them, and reading the job again would cost a round trip per job."""

        def deserialize(data: bytes) -> dict[str, Any]:
            payload = deserializer(data)
            job_id = _STARTING_JOB.get()
            if job_id is not None:
                _STARTING_JOB.set(None)
                self.presence.starting(job_id, str(payload.get("f")), payload.get("a"))
            return payload

        return deserialize

    async def record_health(self) -> None:
        """arq's shared health key, then this process's own (`worker.presence`): every health
        interval, when its jobs change (at most once a second), and at once after Redis came back."""
        force = self._last_health_check == 0  # set by `_redis_failed`: write as soon as Redis takes it
        await super().record_health()
        if self.presence.due(force=force):
            runtime = self.ctx.get("runtime")  # None until on_startup ran
            upstreams = running_health(runtime.providers) if runtime is not None else {}
            await self.presence.beat(self.pool, self._counters(), upstreams)

    def _counters(self) -> dict[str, int]:
        return {
            "jobs_complete": self.jobs_complete,
            "jobs_failed": self.jobs_failed,
            "jobs_retried": self.jobs_retried,
            "jobs_ongoing": len(self._running()),
        }

    async def close(self) -> None:
        """arq's close (wait for the jobs, delete the health keys, run on_shutdown, close the pool),
        which stops cleanly with Redis away too: the health keys then expire by themselves."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:
            await self.pool.delete(self.health_check_key)
            await self.presence.leave(self.pool)
        except REDIS_ERRORS as e:
            log.warning("worker.stopped_without_redis %s", fields(error=f'"{type(e).__name__}: {e}"'))
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None

    def _running(self) -> list[str]:
        """Ids of the jobs this process runs now (arq keeps finished tasks until its next poll)."""
        return [job_id for job_id, task in self.tasks.items() if not task.done()]

    async def _sample_queue(self) -> None:
        """The queue's depth for the metrics, if this process serves them, every `queue_sample_every_s`."""
        now = time.monotonic()
        if "metrics" not in self.ctx or now - self._queue_sampled_at < self.queue_sample_every_s:
            return
        self._queue_sampled_at = now
        await metrics.sample_queue(self.pool)

    async def _renew_leases(self) -> None:
        """Every `LEASE_RENEW_S`, and at once for a job that started since the last renewal."""
        now = time.monotonic()
        running = self._running()
        new = not self._leased.issuperset(running)
        if not new and now - self._renewed_at < LEASE_RENEW_S:
            return
        self._renewed_at = now
        self._leased = set(running)
        if self.admission is not None:
            await self.admission.renew(running)
        if not running:
            return
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in running:
                pipe.eval(
                    _RENEW_LEASE,
                    2,
                    in_progress_key_prefix + job_id,
                    job_key_prefix + job_id,
                    str(int(LEASE_S * 1000)),
                    str(int(JOB_KEPT_S * 1000)),
                )
            await pipe.execute()

    async def _redis_failed(self, error: BaseException) -> None:
        self.redis_failures += 1
        # The next poll writes the health key: Redis is back only when it takes writes again (at
        # maxmemory it still answers reads, and a poll with nothing to write would look fine).
        self._last_health_check = 0
        if self.redis_down_since is None:
            self.redis_down_since = time.monotonic()
            log.warning(
                "worker.redis_unavailable %s",
                fields(
                    url=redact_url(self.redis_url),
                    error=f'"{type(error).__name__}: {error}"',
                    note='"the cache keeps its last good data; retrying until Redis answers"',
                ),
            )
        await asyncio.sleep(min(REDIS_RETRY_MAX_S, 0.1 * 2 ** min(self.redis_failures, 5)))

    def _redis_back(self) -> None:
        down_s = time.monotonic() - (self.redis_down_since or time.monotonic())
        log.warning(
            "worker.redis_available %s",
            fields(url=redact_url(self.redis_url), down_s=round(down_s, 1), failed_polls=self.redis_failures),
        )
        self.redis_down_since = None
        self.redis_failures = 0
        scheduler = self.ctx.get("scheduler")
        if scheduler is not None:
            scheduler.catch_up_pending = True  # a restarted Redis may have lost the cache and the queue


# Answers that waiting will not change: a password missing or wrong, a user without the rights,
# something else than Redis at that address.
MISCONFIGURED = (
    redis.AuthenticationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.InvalidResponse,
)


async def wait_for_redis(url: str, *, retry_s: float = 1.0) -> float:
    """Return once Redis at `url` answers PING, logging one line if it does not at first; the
    seconds waited. Raises `ConfigError` at once if the answer says the URL is wrong (a password,
    a user's rights, not a Redis there): waiting would not change it."""
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=retry_s, socket_timeout=retry_s)
    started = time.monotonic()
    first_error: BaseException | None = None
    try:
        while True:
            try:
                await client.ping()
                break
            except MISCONFIGURED as e:
                raise ConfigError(
                    f"Redis at {redact_url(url)} refused the worker: {type(e).__name__}: {e}; check "
                    "REDIS_URL (or redis_url in config.yaml): its user, password, host and port"
                ) from None
            except REDIS_ERRORS as e:
                if first_error is None:
                    first_error = e
                    log.warning(
                        "worker.waiting_for_redis %s",
                        fields(
                            url=redact_url(url),
                            error=f'"{type(e).__name__}: {e}"',
                            note=f'"retrying every {retry_s:g} s; the worker starts when Redis answers"',
                        ),
                    )
                await asyncio.sleep(retry_s)
    finally:
        await client.aclose()
    waited_s = time.monotonic() - started
    if first_error is not None:
        log.info("worker.redis_available %s", fields(url=redact_url(url), waited_s=round(waited_s, 1)))
    return waited_s
