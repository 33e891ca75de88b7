"""Each worker process's own health key: who it is and what it runs now, for `python -m worker status`.

arq's health key (`reader.keys.WORKER_HEALTH`) is one for the whole fleet: any live worker keeps it,
so it says that some worker runs, not which. Each process also writes its own
(`reader.keys.worker(worker_id)`, a JSON `reader.models.WorkerHealth`) every health interval and
when the jobs it runs change (at most once every `CHANGE_EVERY_S`), with a TTL of `TTL_INTERVALS`
health intervals, and lists its id in `reader.keys.WORKERS`. A killed process's key expires by
itself; a process that stops cleanly deletes it.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from reader import keys
from reader.clock import Clock
from reader.jobs import DATASETS
from reader.telemetry import CircuitState, RunningJob, WorkerHealth
from worker.breaker import BreakerState
from worker.health import UpstreamHealth

TTL_INTERVALS = 3
"""A worker's key outlives its last write by this many health intervals: one late write is not death."""

CHANGE_EVERY_S = 1.0
"""The most often a worker rewrites its key because the jobs it runs changed."""

FORGET_AFTER_S = 3600.0
"""Ids in `reader.keys.WORKERS` whose last write is older than this are dropped (their keys have
long expired: this only keeps the set from growing with every killed process)."""


def new_worker_id(host: str, pid: int) -> str:
    """ "<host>-<pid>-<4 hex digits>": a pid is reused after a restart, and a container's is often 1."""
    return f"{host}-{pid}-{secrets.token_hex(2)}"


def running_job(job_id: str, function: str, args: Any, started_at: Any) -> RunningJob:
    """What a job of arq's `function` with positional `args` (as enqueued) works on: the dataset of
    a `refresh_<dataset>(symbols, ...)` or a `fetch(dataset, symbol, option)`, and its symbols."""
    args = list(args) if isinstance(args, list | tuple) else []
    dataset: str | None = None
    symbols = 0
    refreshed = function.removeprefix("refresh_")
    if refreshed != function and refreshed in DATASETS:
        dataset = refreshed
        symbols = len(args[0]) if args and isinstance(args[0], list) else 0
    elif function == "fetch" and args and isinstance(args[0], str):
        dataset, symbols = args[0], 1
    return RunningJob(
        job_id=job_id, function=function, dataset=dataset, symbols=symbols, started_at=started_at
    )


def circuit_states(upstreams: Mapping[str, UpstreamHealth]) -> dict[str, CircuitState]:
    """The state of each upstream's breaker in this process, by upstream name."""
    return {name: _CIRCUIT[health.breaker.state] for name, health in sorted(upstreams.items())}


_CIRCUIT: dict[BreakerState, CircuitState] = {"closed": "closed", "open": "open", "half-open": "half_open"}


class Presence:
    """The health key of this process: `starting` / `ended` track its jobs, `beat` writes the key
    when `due`, `leave` deletes it. `health_every_s` is arq's `health_check_interval`."""

    def __init__(self, clock: Clock, health_every_s: float, *, host: str | None = None) -> None:
        self.clock = clock
        self.host = host or socket.gethostname()
        self.pid = os.getpid()
        self.worker_id = new_worker_id(self.host, self.pid)
        self.key = keys.worker(self.worker_id)
        self.started_at = clock()
        self.health_every_s = health_every_s
        self.ttl_s = TTL_INTERVALS * health_every_s
        self.jobs: dict[str, RunningJob] = {}
        self._written_at = -math.inf  # time.monotonic() of the last write that Redis took
        self._written_jobs: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"<Presence {self.worker_id} jobs={len(self.jobs)} ttl_s={self.ttl_s:g}>"

    def starting(self, job_id: str, function: str, args: Any) -> None:
        """`job_id` (arq's `function(*args)`) has started here."""
        self.jobs[job_id] = running_job(job_id, function, args, self.clock())

    def ended(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def due(self, *, force: bool = False) -> bool:
        """Whether to write now: a health interval since the last write, or the jobs changed and
        `CHANGE_EVERY_S` passed, or `force`."""
        since_s = time.monotonic() - self._written_at
        changed = frozenset(self.jobs) != self._written_jobs
        return force or since_s >= self.health_every_s or (changed and since_s >= CHANGE_EVERY_S)

    def health(
        self, counters: dict[str, int], upstreams: Mapping[str, UpstreamHealth] | None = None
    ) -> WorkerHealth:
        """The document `beat` writes; `counters` are arq's `jobs_complete`, `jobs_failed`,
        `jobs_retried` and `jobs_ongoing`; `upstreams` the health of each upstream this process
        calls (`worker.providers.running_health`), whose breakers give `circuits`."""
        return WorkerHealth(
            worker_id=self.worker_id,
            host=self.host,
            pid=self.pid,
            started_at=self.started_at,
            beat_at=self.clock(),
            health_every_s=self.health_every_s,
            ttl_s=self.ttl_s,
            jobs=tuple(sorted(self.jobs.values(), key=lambda job: job.started_at)),
            circuits=circuit_states(upstreams or {}),
            **counters,
        )

    async def beat(
        self, redis: Redis, counters: dict[str, int], upstreams: Mapping[str, UpstreamHealth] | None = None
    ) -> None:
        """Write this process's key (TTL `ttl_s`) and list it in `reader.keys.WORKERS`, in one
        round trip (`health` says what it holds). Redis errors propagate (the poll loop handles them)."""
        jobs = frozenset(self.jobs)
        now_s = time.time()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(
                self.key,
                self.health(counters, upstreams).model_dump_json(),
                px=max(int(self.ttl_s * 1000), 1),
            )
            pipe.zadd(keys.WORKERS, {self.worker_id: now_s})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now_s - FORGET_AFTER_S)
            await pipe.execute()
        self._written_at = time.monotonic()
        self._written_jobs = jobs

    async def leave(self, redis: Redis) -> None:
        """Delete this process's key and id: it stops cleanly."""
        async with redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.key)
            pipe.zrem(keys.WORKERS, self.worker_id)
            await pipe.execute()
