"""What the worker publishes about its schedule and its refreshes, for `python -m worker status`.

The documents are the contract of `reader.telemetry`: `published_plan` builds the `PublishedPlan`
the scheduler writes to `reader.keys.PLAN` with the calendar, `refresh_record` the `RefreshRecord`
each refresh job writes to `reader.keys.last_refresh` when it ends.
"""

from __future__ import annotations

from datetime import datetime

from reader.calendar import EXCHANGE_TZ
from reader.telemetry import DatasetPlan, ProviderPlan, PublishedPlan, RefreshOutcome, RefreshRecord
from worker.plan import used_upstreams
from worker.ratelimit import steady_rate_per_min
from worker.refresh import RefreshReport
from worker.runtime import Runtime


def published_plan(runtime: Runtime, now: datetime) -> PublishedPlan:
    """The schedule `runtime` runs, as of `now`: every enabled dataset (scheduled, or computed
    indicators) with its upstream, rank, configured and held cadences (`worker.plan`, which holds
    them under the allowance), and every upstream called with its allowance."""
    config = runtime.config
    intraday = config.datasets.history.intraday
    intervals = {"history": "1d", "intraday": intraday.bar if intraday is not None else None}
    datasets = {
        name: DatasetPlan(
            provider=plan.upstream,
            rank=runtime.ranks[name],
            configured_cadence_s=dict(plan.configured.seconds),
            held_cadence_s=dict(plan.cadence.seconds),
            close_refresh=plan.cadence.close_refresh,
            symbols=len(config.watchlist),
            interval=intervals.get(name),
        )
        for name, plan in runtime.plans.items()
        if plan.scheduled or (name == "indicators" and config.datasets.indicators.enabled)
    }
    providers = {
        name: ProviderPlan(
            rate_per_min=getattr(config.providers, name).rate_per_min,
            planned_per_min=round(steady_rate_per_min(getattr(config.providers, name).rate_per_min), 3),
        )
        for name in used_upstreams(config)
    }
    return PublishedPlan(
        published_at=now,
        timezone=EXCHANGE_TZ.key,
        priority=tuple(config.priority),
        keep_stale_s=config.cache.keep_stale_s,
        watchlist=tuple(config.watchlist),
        datasets=datasets,
        providers=providers,
    )


def refresh_outcome(report: RefreshReport | None) -> RefreshOutcome:
    """`ok` when no symbol failed (stored, or known to have nothing), `failed` when none was
    stored (or there is no report: the job raised), else `partial`."""
    if report is None:
        return "failed"
    if not report.failed:
        return "ok"
    return "partial" if report.stored or report.no_data else "failed"


def refresh_record(
    dataset: str,
    job_id: str,
    symbols: int,
    report: RefreshReport | None,
    started_at: datetime,
    finished_at: datetime,
) -> RefreshRecord:
    """The record of one refresh job of `dataset` given `symbols` symbols; `report` None when it
    raised."""
    return RefreshRecord(
        dataset=dataset,
        job_id=job_id,
        started_at=started_at,
        finished_at=finished_at,
        duration_s=round(max((finished_at - started_at).total_seconds(), 0.0), 3),
        symbols=symbols,
        stored=len(report.stored) if report is not None else 0,
        failed=len(report.failed) if report is not None else symbols,
        outcome=refresh_outcome(report),
    )
