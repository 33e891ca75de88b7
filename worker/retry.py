"""Retries of a failed refresh: capped exponential backoff with full jitter, until the next
scheduled refresh supersedes them.

When a refresh job ends with symbols that failed of a transient fault (`RefreshReport.retryable`:
5xx, timeouts, connection failures, answers that are not JSON, 429s, the breaker open, Redis), it
enqueues one retry job for those symbols: the same `refresh_<dataset>` function, deferred by
`uniform(0, min(cap_s, base_s * 2**attempt))` seconds (attempt 0 for the first retry; "full
jitter", so that a fleet's retries spread out instead of arriving together), and never before the
upstream's breaker lets a probe through. The retry's own failure enqueues the next, one attempt
further. Each expires (arq drops it unstarted) at the dataset's next scheduled refresh, which
fetches the same symbols anyway; a retry that could not start before then is not enqueued at all.
So a failed closing refresh of the daily bars is retried all evening, not next day.

Retry job ids are `reader.keys.refresh_retry_job_id(first job id, attempt)`: one chain per failed
job, never enqueued twice. arq defers by its own (real) clock; the delay is computed from the
runtime's, so tests move both (see tests/test_upstream_faults.py).

Not `stamina` or `tenacity`: both retry inside the running call, sleeping between attempts,
which would hold a job slot (and its `job_timeout_s`) for minutes and lose the retry on a restart;
the delay here is one line of arithmetic, and the retry itself an arq job.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from arq.connections import ArqRedis

from reader import keys
from reader.jobs import refresh_job
from worker import schedule
from worker.config import RetryConfig
from worker.logs import fields
from worker.providers import running_health
from worker.refresh import RefreshReport
from worker.runtime import Runtime
from worker.scheduler import scheduled_symbols

log = logging.getLogger(__name__)

_MAX_EXPONENT = 30  # 2**30 times any sensible base is past any cap; keeps the arithmetic finite


def jitter() -> float:
    """A uniform draw in [0, 1): the jitter of every retry (tests replace it to fix the delays)."""
    return random.random()  # noqa: S311 - spreads retries; not a secret


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter."""

    base_s: float
    cap_s: float

    @classmethod
    def from_config(cls, config: RetryConfig) -> Backoff:
        return cls(config.base_s, config.cap_s)

    def ceiling_s(self, attempt: int) -> float:
        """The longest delay before retry number `attempt` + 1 (attempt 0: the first retry)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))

    def delay_s(self, attempt: int, rand: Callable[[], float]) -> float:
        """A delay drawn uniformly in [0, `ceiling_s(attempt)`]; `rand()` draws in [0, 1)."""
        return rand() * self.ceiling_s(attempt)


@dataclass(frozen=True)
class PlannedRetry:
    """A retry to enqueue: its job id, attempt number (1 for the first retry), symbols, delay and
    how long it may wait to start (until the next scheduled refresh)."""

    job_id: str
    attempt: int
    symbols: tuple[str, ...]
    delay_s: float
    expires_s: float


def plan_retry(
    *,
    first_job_id: str,
    attempts_before: int,
    symbols: Sequence[str],
    now: datetime,
    next_refresh: datetime,
    backoff: Backoff,
    probe_at: datetime | None = None,
    rand: Callable[[], float] | None = None,
) -> PlannedRetry | None:
    """The retry of `symbols` after `attempts_before` retries of the job `first_job_id` failed (0:
    the job itself failed); None if there is nothing to retry or the next refresh comes first.
    `probe_at`: when the upstream's open breaker lets a request through, if it is open; `rand`
    draws the jitter (default `jitter`)."""
    if not symbols:
        return None
    delay_s = backoff.delay_s(attempts_before, rand or jitter)
    if probe_at is not None:
        delay_s = max(delay_s, (probe_at - now).total_seconds())
    expires_s = (next_refresh - now).total_seconds()
    if delay_s >= expires_s:
        return None
    attempt = attempts_before + 1
    return PlannedRetry(
        job_id=keys.refresh_retry_job_id(first_job_id, attempt),
        attempt=attempt,
        symbols=tuple(symbols),
        delay_s=delay_s,
        expires_s=expires_s,
    )


async def enqueue_retry(redis: ArqRedis, dataset: str, retry: PlannedRetry, first_job_id: str) -> bool:
    """Enqueue `retry` of `dataset`; False if arq already has that job id."""
    job = await redis.enqueue_job(
        refresh_job(dataset),
        list(retry.symbols),
        attempt=retry.attempt,
        first_job_id=first_job_id,
        _job_id=retry.job_id,
        _queue_name=keys.QUEUE,
        _defer_by=retry.delay_s,
        _expires=retry.expires_s,
    )
    log.info(
        "refresh.retry_queued %s",
        fields(
            dataset=dataset,
            symbols=len(retry.symbols),
            attempt=retry.attempt,
            delay_s=round(retry.delay_s, 2),
            expires_s=round(retry.expires_s, 1),
            queued=job is not None,
        ),
    )
    return job is not None


def first_job_id(job_id: str | None, dataset: str, symbols: Sequence[str], now: datetime) -> str:
    """The id that names a chain of retries: the failed job's own (a scheduled or catch-up refresh),
    or, for a refresh run outside arq, one made like the scheduler's from now and the batch."""
    if job_id:
        return job_id
    return keys.refresh_job_id(dataset, schedule.slot_name(now), schedule.batch_id(symbols))


async def retry_failures(
    redis: ArqRedis,
    runtime: Runtime,
    dataset: str,
    report: RefreshReport,
    *,
    job_id: str | None,
    attempts_before: int,
) -> PlannedRetry | None:
    """Enqueue the retry of what `report` says is worth retrying, if the next scheduled refresh of
    `dataset` does not come first; returns it (None: no retry)."""
    if not report.retryable or not runtime.config.retry.enabled:
        return None
    now = runtime.clock()
    scheduled = set(await scheduled_symbols(redis, runtime, dataset, now))
    retryable = [s for s in report.retryable if s in scheduled]
    if not retryable:  # a reload took them off the watchlist: no refresh of theirs to stand in for
        return None
    plan = runtime.plans[dataset]
    health = running_health(runtime.providers).get(plan.source)
    first = first_job_id(job_id, dataset, report.requested, now)
    retry = plan_retry(
        first_job_id=first,
        attempts_before=attempts_before,
        symbols=retryable,
        now=now,
        next_refresh=schedule.next_refresh(plan.cadence, runtime.calendar, now),
        backoff=Backoff.from_config(runtime.config.retry),
        probe_at=health.breaker.probe_at if health is not None else None,
    )
    if retry is None:
        log.info(
            "refresh.retry_skipped %s",
            fields(
                dataset=dataset,
                symbols=len(retryable),
                reason="the next scheduled refresh comes first",
            ),
        )
        return None
    await enqueue_retry(redis, dataset, retry, first)
    return retry
