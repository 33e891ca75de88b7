"""What `python -m worker status` tells: the `Snapshot` document and its sections.

`worker.survey` reads it from Redis, `worker.status_view` renders it as tables, and `--json` prints
it as is (`Snapshot.model_dump(mode="json")`). Times are aware UTC from the injected clock; ages and
durations in seconds.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from reader.models import Phase
from reader.telemetry import CircuitState, RefreshRecord, WorkerHealth


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)


class MarketNow(_Model):
    """The exchange's phase at `at` and the next change (`next_phase` from `next_change_at`), by
    the worker's calendar (`calendar` "worker": the installed one plus the closures it published,
    `extra_closed` those from today on) or, when none is published, the installed one."""

    exchange: str
    calendar: Literal["worker", "installed"]
    phase: Phase
    next_phase: Phase
    next_change_at: datetime
    extra_closed: tuple[date, ...] = ()


class DatasetStatus(_Model):
    """One dataset's items for the watchlist: `fresh`, `stale` (read after `fresh_until`, still
    served) and `missing` (chains: each listed expiration is an item, an underlying without a
    chain index one missing); `oldest_age_s` since the oldest present item was fetched. Cadences
    are for the phase now (None: off): as configured and as the allowance holds them."""

    provider: str | None
    rank: int
    items: int
    fresh: int
    stale: int
    missing: int
    oldest_age_s: float | None
    configured_cadence_s: float | None
    held_cadence_s: float | None
    last_refresh: RefreshRecord | None = None
    last_refresh_age_s: float | None = None
    """Seconds since the last refresh job ended."""


class Incident(_Model):
    """The incident in progress at an upstream (`reader.keys.upstream_incident`)."""

    started_at: datetime | None
    kind: str
    error: str


class ProviderStatus(_Model):
    """One upstream today (its exchange-local day): `calls` sent, answers by HTTP `statuses`,
    `errors` (faults by kind), `throttled` (429 answers), `waits` for the rate budget and
    `wait_s` the seconds of those waits added up (requests wait side by side: the sum may exceed
    the wall time); `calls_last_minute` the calls in `last_minute` (the last whole exchange-local
    minute, "HH:MM": the one in progress is not counted yet) and `allowance_used` those over
    `rate_per_min`;
    `circuit` the worst breaker state a live worker reports (None: none reports it)."""

    rate_per_min: int
    calls: int
    statuses: dict[int, int]
    errors: dict[str, int]
    throttled: int
    calls_last_minute: int
    last_minute: str
    allowance_used: float
    circuit: CircuitState | None
    waits: int
    wait_s: float
    incident: Incident | None = None


class QueuePriority(_Model):
    """The jobs of one priority (`worker.priority`): on-demand fetches (rank 0), then each
    dataset's refreshes by rank; then `tick`, the worker's own cron job (it plans the refreshes:
    one is always queued); `other` for any other job."""

    rank: int
    name: str
    waiting: int
    running: int
    deferred: int


class QueueStatus(_Model):
    """arq's queue (`reader.keys.QUEUE`): jobs `waiting` (due, not running), `running` (a live
    worker says so), `deferred` (due later: retries in their backoff); `oldest_age_s` how long the
    oldest waiting job has been due."""

    waiting: int
    running: int
    deferred: int
    on_demand_waiting: int
    oldest_age_s: float | None
    by_priority: tuple[QueuePriority, ...]


class WorkerView(WorkerHealth):
    """A live worker's health key, with `up_s` since it started and `beat_age_s` since it wrote it."""

    up_s: float
    beat_age_s: float


class Snapshot(_Model):
    """The whole status at `at`. `market` None when only the workers were asked for (`--self`);
    `plan_published_at` None when no worker has published a plan (datasets and providers are
    then empty)."""

    at: datetime
    market: MarketNow | None = None
    plan_published_at: datetime | None = None
    datasets: dict[str, DatasetStatus] = {}
    providers: dict[str, ProviderStatus] = {}
    queue: QueueStatus | None = None
    workers: tuple[WorkerView, ...] = ()
