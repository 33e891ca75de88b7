"""What the workers publish about themselves, for `python -m worker status` on any machine.

The worker writes these, the status command reads them; both import this module (the contract).
Nothing here is cached market data: a reader's data calls never read it.

- `WorkerHealth` (`keys.worker(worker_id)`): one per live worker process, what it runs now and the
  circuit state of each upstream as that process sees it.
- `PublishedPlan` (`keys.PLAN`): the schedule the fleet runs, published with the calendar (at
  start, after each reload, after Redis comes back), so that status needs no config file.
- `RefreshRecord` (`keys.last_refresh(dataset)`): the last refresh job of each dataset that ended.
- `UpstreamDay` (`keys.upstream_day(provider, day)`, a hash): one upstream's calls on one
  exchange-local day, added to by every worker process (field names: `UPSTREAM_DAY_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from reader.models import Count, Phase, UtcDatetime

CircuitState = Literal["closed", "open", "half_open"]
"""A breaker's state: `closed` (calls go through), `open` (no call until it half-opens),
`half_open` (one probe in flight decides)."""


class RunningJob(BaseModel):
    """One job a worker process runs now: its arq `job_id` and `function` ("refresh_quotes",
    "fetch", "tick"), the `dataset` it works on (None for the tick), how many `symbols` it was
    given, and when it started (`started_at`, the worker's clock)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str
    function: str
    dataset: str | None = None
    symbols: Count = 0
    started_at: UtcDatetime


class WorkerHealth(BaseModel):
    """One worker process's own health key (`reader.keys.worker`), written by that process every
    `health_every_s` seconds and when the jobs it runs change, with a TTL of `ttl_s`: while the key
    exists the process is alive. `python -m worker status` lists them.

    `worker_id` is "<host>-<pid>-<4 hex digits>", unique per process (a container's host is its
    id); `started_at` when the process started, `beat_at` when it wrote this (its clock, UTC);
    the `jobs_*` counters are arq's since the start (`jobs_ongoing` counts `jobs`' arq tasks);
    `jobs` what it runs now; `circuits` the state of each upstream's breaker in this process
    (provider name -> state; breakers are per process).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    worker_id: str
    host: str
    pid: int
    started_at: UtcDatetime
    beat_at: UtcDatetime
    health_every_s: float = Field(gt=0)
    ttl_s: float = Field(gt=0)
    jobs_complete: Count = 0
    jobs_failed: Count = 0
    jobs_retried: Count = 0
    jobs_ongoing: Count = 0
    jobs: tuple[RunningJob, ...] = ()
    circuits: dict[str, CircuitState] = Field(default_factory=dict)


class DatasetPlan(BaseModel):
    """How the fleet refreshes one dataset now. Cadences are seconds between refreshes per phase
    (a phase absent is off): `configured_cadence_s` as config.yaml says, `held_cadence_s` as the
    allowance holds (`worker.allowance`; the same when nothing is stretched). `provider` is the
    upstream it calls (None: computed, no call); `rank` its place in spending (1 quotes, 2.. the
    `priority` list); `symbols` how many the schedule keeps; `interval` the bar length of a
    history dataset ("1d", "5m"; None for the others)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    provider: str | None
    rank: int = Field(ge=0)
    configured_cadence_s: dict[Phase, float] = Field(default_factory=dict)
    held_cadence_s: dict[Phase, float] = Field(default_factory=dict)
    close_refresh: bool = False
    symbols: Count = 0
    interval: str | None = None


class ProviderPlan(BaseModel):
    """One upstream's allowance: `rate_per_min` as configured, `planned_per_min` what the fleet's
    rate budget spends of it steadily (`worker.ratelimit.steady_rate_per_min`)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    rate_per_min: int = Field(gt=0)
    planned_per_min: float = Field(ge=0)


class PublishedPlan(BaseModel):
    """The schedule the fleet runs (`reader.keys.PLAN`), written by the worker that started or
    reloaded last, at `published_at`. `timezone` is the exchange's (the day of `UpstreamDay`),
    `priority` config's list, `keep_stale_s` how long an item stays readable past `fresh_until`,
    `watchlist` the symbols scheduled, `datasets` by name (`reader.jobs.DATASETS`; a dataset
    switched off is absent), `providers` by name ("tradier", "polygon")."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    published_at: UtcDatetime
    timezone: str
    priority: tuple[str, ...]
    keep_stale_s: float = Field(ge=0)
    watchlist: tuple[str, ...] = ()
    datasets: dict[str, DatasetPlan] = Field(default_factory=dict)
    providers: dict[str, ProviderPlan] = Field(default_factory=dict)


RefreshOutcome = Literal["ok", "partial", "failed"]
"""`ok`: every symbol of the job stored (or known to have nothing); `partial`: some failed;
`failed`: none stored, or the job raised."""


class RefreshRecord(BaseModel):
    """One refresh job of a dataset that ended (`reader.keys.last_refresh`): scheduled or a retry,
    not on-demand fetches. `symbols` it was given, `stored` and `failed` of them; `duration_s`
    from its start to its end (waits for the rate budget included)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    dataset: str
    job_id: str
    started_at: UtcDatetime
    finished_at: UtcDatetime
    duration_s: float = Field(ge=0)
    symbols: Count = 0
    stored: Count = 0
    failed: Count = 0
    outcome: RefreshOutcome


UPSTREAM_DAY_FIELDS = {
    "calls": "requests sent (whatever the answer, or none)",
    "status:<code>": "answers by HTTP status, e.g. status:200, status:429",
    "fault:<kind>": "faults by kind (worker.incidents.FaultKind: server_error, timeout, ...)",
    "waits": "requests that waited at the rate budget (over 10 ms)",
    "wait_s": "seconds those requests waited, in total (HINCRBYFLOAT)",
    "minute:<HH:MM>": "requests sent in that exchange-local minute",
}
"""The fields of one `keys.upstream_day` hash and what each counts; every field is optional."""


class UpstreamDay(BaseModel):
    """One upstream's calls on one exchange-local day, as every worker counted them (the hash
    `reader.keys.upstream_day`, parsed by `from_hash`)."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    provider: str
    day: date
    calls: Count = 0
    statuses: dict[int, int] = Field(default_factory=dict)
    faults: dict[str, int] = Field(default_factory=dict)
    waits: Count = 0
    wait_s: float = Field(default=0.0, ge=0)
    calls_by_minute: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def from_hash(cls, provider: str, day: date, fields: Mapping[bytes | str, bytes | str]) -> UpstreamDay:
        """Parse the hash's `fields` (as HGETALL returns them); unknown fields are ignored."""
        statuses: dict[int, int] = {}
        faults: dict[str, int] = {}
        minutes: dict[str, int] = {}
        calls = waits = 0
        wait_s = 0.0
        for raw_name, raw_value in fields.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
            kind, _, rest = name.partition(":")
            if name == "calls":
                calls = int(value)
            elif name == "waits":
                waits = int(value)
            elif name == "wait_s":
                wait_s = float(value)
            elif kind == "status" and rest.isdigit():
                statuses[int(rest)] = int(value)
            elif kind == "fault" and rest:
                faults[rest] = int(value)
            elif kind == "minute" and rest:
                minutes[rest] = int(value)
        return cls(
            provider=provider,
            day=day,
            calls=calls,
            statuses=statuses,
            faults=faults,
            waits=waits,
            wait_s=wait_s,
            calls_by_minute=minutes,
        )
