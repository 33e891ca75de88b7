"""The arq jobs of the worker and its startup/shutdown hooks.

`tick` runs every `worker.tick_s` seconds on one worker of the fleet (an arq cron job with a
unique id) and enqueues the batches due now under deterministic job ids, so however many
workers tick, each batch of a slot is queued, and run, once. `refresh_<dataset>` runs one batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from arq.connections import ArqRedis
from arq.typing import WorkerCoroutine

from reader import keys
from reader.clock import utc_now
from reader.jobs import refresh_job
from worker.config import Config, Secrets
from worker.logs import fields
from worker.runtime import Runtime

log = logging.getLogger(__name__)

Ctx = dict[str, Any]


async def startup(ctx: Ctx) -> None:
    """Open the runtime (HTTP session, providers, store) on arq's Redis connection."""
    config: Config = ctx["config"]
    secrets: Secrets = ctx["secrets"]
    stack = AsyncExitStack()
    runtime = await stack.enter_async_context(
        Runtime.open(config, secrets, ctx["redis"], clock=ctx.get("clock", utc_now))
    )
    ctx["runtime"] = runtime
    ctx["exit_stack"] = stack
    log.info(
        "worker.started %s",
        fields(
            symbols=len(config.watchlist),
            datasets=",".join(f"{name}:{interval:g}s" for name, interval in runtime.intervals.items()),
        ),
    )


async def shutdown(ctx: Ctx) -> None:
    stack: AsyncExitStack | None = ctx.get("exit_stack")
    if stack is not None:
        await stack.aclose()


def refresh_job_function(dataset: str) -> WorkerCoroutine:
    """The arq job of `dataset`: refresh one batch; a failure is logged and reported, not raised
    (the next slot retries)."""

    async def refresh(ctx: Ctx, symbols: list[str]) -> dict[str, Any]:
        runtime: Runtime = ctx["runtime"]
        report = await runtime.refresh(dataset, symbols)
        return report.summary()

    refresh.__name__ = refresh.__qualname__ = refresh_job(dataset)
    return refresh


async def tick(ctx: Ctx) -> int:
    """Enqueue the batches due now; returns how many were new (the others were already queued or done)."""
    runtime: Runtime = ctx["runtime"]
    redis: ArqRedis = ctx["redis"]
    enqueued: Counter[str] = Counter()
    for batch in runtime.due(runtime.clock()):
        job = await redis.enqueue_job(
            refresh_job(batch.dataset),
            list(batch.symbols),
            _job_id=batch.job_id,
            _queue_name=keys.QUEUE,
            _expires=runtime.intervals[batch.dataset],
        )
        enqueued[batch.dataset] += job is not None
    if enqueued.total():
        log.debug("tick.enqueued %s", fields(**{k: v for k, v in enqueued.items() if v}))
    return enqueued.total()
