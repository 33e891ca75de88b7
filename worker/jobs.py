"""The arq jobs of the worker and its startup/shutdown hooks.

`tick` runs every `worker.tick_s` seconds on one worker of the fleet (an arq cron job with a
unique id) and enqueues the batches due now under deterministic job ids, so however many
workers tick, each batch of a slot is queued, and run, once. `refresh_quotes` runs one batch.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

from arq.connections import ArqRedis

from reader import keys
from reader.clock import utc_now
from reader.jobs import REFRESH_QUOTES
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
    ctx["runtime"] = await stack.enter_async_context(
        Runtime.open(config, secrets, ctx["redis"], clock=ctx.get("clock", utc_now))
    )
    ctx["exit_stack"] = stack
    log.info(
        "worker.started %s",
        fields(
            symbols=len(config.watchlist),
            provider=ctx["runtime"].provider.name,
            interval_s=config.datasets.quotes.interval_s,
        ),
    )


async def shutdown(ctx: Ctx) -> None:
    stack: AsyncExitStack | None = ctx.get("exit_stack")
    if stack is not None:
        await stack.aclose()


async def refresh_quotes(ctx: Ctx, symbols: list[str]) -> dict[str, Any]:
    """Refresh one batch of quotes; a failure is logged and reported, not raised (the next slot retries)."""
    runtime: Runtime = ctx["runtime"]
    report = await runtime.refresh_quotes(symbols)
    return report.summary()


async def tick(ctx: Ctx) -> int:
    """Enqueue the batches due now; returns how many were new (the others were already queued or done)."""
    runtime: Runtime = ctx["runtime"]
    redis: ArqRedis = ctx["redis"]
    interval_s = runtime.config.datasets.quotes.interval_s
    enqueued = 0
    for batch in runtime.due(runtime.clock()):
        job = await redis.enqueue_job(
            REFRESH_QUOTES,
            list(batch.symbols),
            _job_id=batch.job_id,
            _queue_name=keys.QUEUE,
            _expires=interval_s,
        )
        enqueued += job is not None
    if enqueued:
        log.debug("tick.enqueued %s", fields(dataset="quotes", batches=enqueued))
    return enqueued
