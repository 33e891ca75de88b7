"""The arq jobs of the worker and its startup/shutdown hooks.

`tick` runs every `worker.tick_s` seconds on one worker of the fleet (an arq cron job with a
unique id): it applies an edited config file, then enqueues what the exchange-calendar schedule
says is due (`worker.scheduler`). `refresh_<dataset>` runs one batch. `fetch` runs an on-demand
fetch that a reader enqueued on a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from arq.typing import WorkerCoroutine
from redis.exceptions import RedisError

from reader import keys
from reader.clock import utc_now
from reader.errors import ReaderError
from reader.jobs import DATASETS, loads, refresh_job
from reader.ondemand import FetchRequest, Outcome
from reader.symbols import normalize_symbol
from reader.telemetry import CircuitState
from worker import metrics
from worker.claims import Claims
from worker.config import Config, Secrets
from worker.daemon import Leads
from worker.errors import ConfigError
from worker.logs import fields
from worker.ondemand import fetch_on_demand, fetch_quotes_on_demand, publish
from worker.presence import circuit_states
from worker.priority import gate_rank, spending
from worker.providers import running_health
from worker.published import refresh_outcome, refresh_record
from worker.refresh import RefreshReport
from worker.reload import ConfigWatcher
from worker.retry import retry_failures
from worker.runtime import Runtime
from worker.scheduler import Scheduler
from worker.usage import flush_usage

log = logging.getLogger(__name__)

Ctx = dict[str, Any]

FETCH_TIMEOUT_S = 30.0
"""The longest an on-demand fetch may run (a reader waits seconds, not minutes)."""

FETCH_MARGIN_S = 1.0
"""An on-demand fetch gives up this long before arq's limit, to publish why in its own words."""


async def startup(ctx: Ctx) -> None:
    """Open the runtime (HTTP session, providers, store) on arq's Redis connection, and its scheduler;
    watch the config file if the worker was started from one."""
    config: Config = ctx["config"]
    secrets: Secrets = ctx["secrets"]
    stack = AsyncExitStack()
    runtime = await stack.enter_async_context(
        Runtime.open(config, secrets, ctx["redis"], clock=ctx.get("clock", utc_now))
    )
    ctx["runtime"] = runtime
    ctx["scheduler"] = Scheduler(runtime, ctx["redis"])
    path: Path | None = ctx.get("config_path")
    ctx["watcher"] = ConfigWatcher(path, config) if path is not None else None
    ctx["exit_stack"] = stack
    _serve_metrics(ctx, stack, runtime)
    log.info(
        "worker.started %s",
        fields(symbols=len(config.watchlist), datasets=",".join(runtime.scheduled), config=path or "-"),
    )


def _serve_metrics(ctx: Ctx, stack: AsyncExitStack, runtime: Runtime) -> None:
    """Serve the Prometheus metrics (`worker.metrics`) if `metrics.port` is set, until shutdown;
    the circuit states are read from this runtime's breakers. `ctx["metrics"]` is the server."""
    settings = runtime.config.metrics
    if settings.port is None:
        return
    server = metrics.MetricsServer(settings.host, settings.port)
    stack.callback(server.close)

    def source() -> dict[str, CircuitState]:
        return circuit_states(running_health(runtime.providers))

    metrics.watch_circuits(source)
    stack.callback(metrics.unwatch_circuits, source)
    ctx["metrics"] = server


async def shutdown(ctx: Ctx) -> None:
    stack: AsyncExitStack | None = ctx.get("exit_stack")
    if stack is not None:
        await stack.aclose()


def refresh_job_function(dataset: str) -> WorkerCoroutine:
    """The arq job of `dataset`: refresh one batch; a failure is logged and reported, not raised.
    The symbols that failed of a transient fault are retried with backoff until the next scheduled
    refresh (`worker.retry`): a retry is this same job, with `attempt` (retries before it) and the
    id of the job that failed first. At its end the job saves the upstreams' fault counts, and
    its record (`reader.keys.last_refresh`) for `python -m worker status`."""

    async def refresh(
        ctx: Ctx, symbols: list[str], attempt: int = 0, first_job_id: str | None = None
    ) -> dict[str, Any]:
        if _enqueued_by_a_reader(ctx):
            return {"refused": "a reader may enqueue on-demand fetches only"}
        await _apply_config_edits(ctx)  # every process, not only the one that ticks
        runtime: Runtime = ctx["runtime"]
        started_at = runtime.clock()
        started = time.monotonic()
        try:
            with spending(gate_rank(runtime.ranks[dataset])):
                report = await runtime.refresh(dataset, symbols)
        except BaseException as e:
            metrics.refresh_ended(dataset, "failed", time.monotonic() - started)
            if isinstance(e, Exception):  # a cancelled job is not over: it goes back on the queue
                await _record_refresh(ctx, dataset, symbols, None, started_at)
            raise
        _refresh_metrics(ctx, dataset, report, time.monotonic() - started)
        summary = report.summary()
        summary["attempt"] = attempt
        try:
            retry = await retry_failures(
                ctx["redis"],
                runtime,
                dataset,
                report,
                job_id=first_job_id or ctx.get("job_id"),
                attempts_before=max(int(attempt), 0),
            )
        except RedisError as e:
            log.warning("refresh.retry_failed %s", fields(dataset=dataset, error=f'"{e}"'))
            retry = None
        if retry is not None:
            summary["retry"] = {"job": retry.job_id, "attempt": retry.attempt, "delay_s": retry.delay_s}
        await _save_fault_counts(ctx)
        await _record_refresh(ctx, dataset, symbols, report, started_at)
        return summary

    refresh.__name__ = refresh.__qualname__ = refresh_job(dataset)
    return refresh


def _refresh_metrics(ctx: Ctx, dataset: str, report: RefreshReport, duration_s: float) -> None:
    """The refresh's outcome and duration, and the lag of what it stored (`worker.metrics`)."""
    metrics.refresh_ended(dataset, refresh_outcome(report), duration_s)
    if report.stored or report.no_data:
        runtime: Runtime = ctx["runtime"]
        metrics.items_stored(dataset, ctx.get("job_id"), runtime.clock())


def fetch_timeout_s(config: Config) -> float:
    """arq's time limit of an on-demand fetch: `worker.job_timeout_s`, at most `FETCH_TIMEOUT_S`."""
    return min(config.worker.job_timeout_s, FETCH_TIMEOUT_S)


async def fetch(ctx: Ctx, dataset: str, symbol: str, option: str) -> str:
    """An on-demand fetch a reader enqueued (`worker.ondemand`); its outcome is published whatever
    happens, so waiting readers never wait for a job that has ended. Returns the outcome's status.

    A quote fetch first takes the other pending quote fetches out of the queue (`worker.claims`)
    and fetches them all in one upstream call, answering each job with its own outcome.

    It gives up `FETCH_MARGIN_S` before arq's time limit, with one line and an outcome that says
    why, instead of being cancelled by arq (a traceback at ERROR, and "see its log" for readers).

    Its requests rank first at the rate gate (`worker.priority.ON_DEMAND`, the rank of any request
    made outside a refresh job)."""
    job_id: str = ctx["job_id"]
    runtime: Runtime = ctx["runtime"]
    claims = Claims(ctx["redis"], job_id)
    outcomes: dict[str, Outcome] = {}
    limit_s = max(fetch_timeout_s(runtime.config) - FETCH_MARGIN_S, FETCH_MARGIN_S)
    try:
        async with asyncio.timeout(limit_s) as limit:
            await _apply_config_edits(ctx)
            request = FetchRequest(dataset, normalize_symbol(symbol), option)
            if request.job_id != job_id:
                raise ValueError(f"job id {job_id!r} does not match its arguments ({request.job_id!r})")
            if request.dataset == "quotes":
                outcomes = await _fetch_quotes(ctx, claims, request)
            else:
                outcomes[job_id] = await fetch_on_demand(runtime, ctx["redis"], request)
    except (ValueError, ReaderError) as e:
        log.warning("on_demand.bad_request job=%s error=%s", job_id, e)
        outcomes[job_id] = Outcome(job=job_id, status="failed", detail=f"bad request: {e}")
    except TimeoutError:
        if not limit.expired():
            raise
        detail = (
            f"the fetch took longer than its {limit_s:g} s limit (a slow upstream, or a full rate "
            "limit); ask again later"
        )
        log.warning("on_demand.timed_out %s", fields(job=job_id, limit_s=limit_s, claimed=len(claims.taken)))
        outcomes = {
            job: Outcome(job=job, status="failed", detail=detail) for job in _answering(job_id, claims)
        }
    finally:
        _claimed(ctx, job_id)  # a poll waiting for this job's claim goes on
        failed = "the worker failed on it; see its log"
        try:
            await publish(
                ctx["redis"],
                *(
                    outcomes.get(job) or Outcome(job=job, status="failed", detail=failed)
                    for job in _answering(job_id, claims)
                ),
            )
        finally:
            await claims.release()
        _fetch_metrics(ctx, dataset, claims, outcomes)
        await _save_fault_counts(ctx)
    return outcomes[job_id].status if job_id in outcomes else "failed"


async def _fetch_quotes(ctx: Ctx, claims: Claims, request: FetchRequest) -> dict[str, Outcome]:
    """The quote fetch `request`, with the other quote fetches pending now, in one upstream call."""
    runtime: Runtime = ctx["runtime"]
    try:
        taken = await claims.take(runtime.batch_size("quotes") - 1)
    finally:
        _claimed(ctx, request.job_id)
    outcomes = {c.job_id: Outcome(job=c.job_id, status="failed", detail=c.error) for c in taken if c.error}
    requests = [request, *(c.request for c in taken if c.request is not None)]
    outcomes.update(await fetch_quotes_on_demand(runtime, ctx["redis"], requests))
    return outcomes


def _fetch_metrics(ctx: Ctx, dataset: str, claims: Claims, outcomes: dict[str, Outcome]) -> None:
    """Each answered fetch's outcome, and its latency from its enqueue (arq's wall-clock time)."""
    now_s = time.time()
    enqueued_s = {ctx["job_id"]: ctx["enqueue_time"].timestamp()} if "enqueue_time" in ctx else {}
    for claimed in claims.taken:
        # A payload that is not arq's was answered "bad request": no latency to tell.
        with contextlib.suppress(ValueError, KeyError, TypeError):
            enqueued_s[claimed.job_id] = float(loads(claimed.payload)["et"]) / 1000
    label = dataset if dataset in DATASETS else "unknown"  # whoever writes the queue names it
    for job in _answering(ctx["job_id"], claims):
        outcome = outcomes.get(job)
        status = outcome.status if outcome is not None else "failed"
        latency_s = now_s - enqueued_s.get(job, now_s)
        metrics.on_demand_ended(label if job == ctx["job_id"] else "quotes", status, latency_s)


def _answering(job_id: str, claims: Claims) -> list[str]:
    """The jobs whose outcome this job publishes: its own and those it claimed."""
    return [job_id, *(c.job_id for c in claims.taken)]


def _claimed(ctx: Ctx, job_id: str) -> None:
    leads: Leads | None = ctx.get("leads")
    if leads is not None:
        leads.claimed(job_id)


async def _save_fault_counts(ctx: Ctx) -> None:
    """Save the upstreams' fault counts and incidents (`worker.incidents`), and their day counters
    (`worker.usage`, one pipeline for every upstream), of this process to Redis."""
    runtime: Runtime = ctx["runtime"]
    healths = running_health(runtime.providers).values()
    for health in healths:
        try:
            await health.incidents.flush(ctx["redis"])
        except RedisError as e:  # kept for the next job's flush
            log.debug("upstream.counts_not_saved provider=%s error=%s", health.name, e)
    try:
        await flush_usage(ctx["redis"], [health.usage for health in healths])
    except RedisError as e:  # kept for the next job's flush
        log.debug("upstream.day_counts_not_saved error=%s", e)


async def _record_refresh(
    ctx: Ctx, dataset: str, symbols: list[str], report: RefreshReport | None, started_at: datetime
) -> None:
    """Write the record of this refresh job (`worker.published.refresh_record`); a Redis error
    is logged, not raised: the refresh itself is done."""
    runtime: Runtime = ctx["runtime"]
    record = refresh_record(
        dataset, str(ctx.get("job_id", "")), len(symbols), report, started_at, runtime.clock()
    )
    try:
        await ctx["redis"].set(keys.last_refresh(dataset), record.model_dump_json())
    except RedisError as e:
        log.debug("refresh.record_not_saved %s", fields(dataset=dataset, error=f'"{e}"'))


async def tick(ctx: Ctx) -> int:
    """Apply an edited config file, then enqueue what is due; returns how many jobs were enqueued."""
    if _enqueued_by_a_reader(ctx):
        return 0
    scheduler: Scheduler = ctx["scheduler"]
    try:
        await _apply_config_edits(ctx)
        report = await scheduler.tick()
    except RedisError as e:  # the daemon logs the outage once; the next tick after it catches up
        log.debug("tick.skipped reason=redis error=%s: %s", type(e).__name__, e)
        return 0
    return report.enqueued.total() + report.catch_up.total()


def _enqueued_by_a_reader(ctx: Ctx) -> bool:
    """A reader's Redis user may write only on-demand job ids: under one, only `fetch` may run (the
    payload names any function; JSON payloads cannot run code, but a refresh costs upstream calls)."""
    job_id: str = ctx.get("job_id", "")
    if not job_id.startswith(keys.FETCH_JOBS):
        return False
    log.warning("job.refused job=%s reason=%s", job_id, "only fetch runs under an on-demand job id")
    return True


async def _apply_config_edits(ctx: Ctx) -> None:
    """Apply an edited config file to this process; the next tick, on any worker, catches up."""
    watcher: ConfigWatcher | None = ctx.get("watcher")
    if watcher is None:
        return
    new = watcher.poll()
    if new is None:
        return
    runtime: Runtime = ctx["runtime"]
    before = set(runtime.config.watchlist)
    try:
        ignored = runtime.reconfigure(new)
    except ConfigError as e:
        log.error("config.reload_failed path=%s kept=last-good error=%s", watcher.path, e)
        return
    watcher.accepted(runtime.config)
    # Added symbols (and newly enabled datasets) are fetched at once, by whichever worker ticks next.
    redis: ArqRedis = ctx["redis"]
    await redis.set(keys.catch_up(), 1)
    after = set(runtime.config.watchlist)
    log.info(
        "config.reloaded %s",
        fields(
            path=watcher.path,
            added=",".join(sorted(after - before)) or "-",
            removed=",".join(sorted(before - after)) or "-",
            symbols=len(after),
        ),
    )
    if ignored:
        log.warning(
            "config.restart_needed %s",
            fields(sections=",".join(ignored), note="these keep their running values until a restart"),
        )
