"""Reading a `worker.snapshot.Snapshot` from Redis alone, for `python -m worker status`.

Everything comes from what the workers publish (`reader.telemetry`: the plan, the last refresh of
each dataset, each upstream's day counters, each worker's health key), the calendar
(`reader.keys.CALENDAR`), arq's queue and the cached items themselves; no config file. The
commands are those the reader's Redis user may run (GET, MGET, ZRANGE, HGETALL and EVALSHA of a
script that only GETs), so it runs from any machine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar, cast
from zoneinfo import ZoneInfo

import redis
from pydantic import BaseModel, ValidationError

from reader import keys
from reader.calendar import MarketCalendar, exchange_date
from reader.market_status import DEFAULT_EXCHANGE
from reader.models import ChainIndex, Phase, PublishedCalendar
from reader.telemetry import CircuitState, PublishedPlan, RefreshRecord, UpstreamDay, WorkerHealth
from worker.priority import ON_DEMAND, TICK_JOB, dataset_ranks
from worker.schedule import day_segments
from worker.snapshot import (
    DatasetStatus,
    Incident,
    MarketNow,
    ProviderStatus,
    QueuePriority,
    QueueStatus,
    Snapshot,
    WorkerView,
)

_ENVELOPES = """
local out = {}
for i, key in ipairs(ARGV) do
  local value = redis.call('GET', key)
  if value then
    out[i] = (string.match(value, '"fetched_at":"([^"]+)"') or '') .. ' ' ..
             (string.match(value, '"fresh_until":"([^"]+)"') or '')
  else
    out[i] = false
  end
end
return out
"""
"""`fetched_at fresh_until` of each key's item (false: no such key), read inside Redis: the
envelope comes first in the JSON, and a chain of a thousand contracts never crosses the network.
The keys travel in ARGV, as in `reader._results.CHAINS_SCRIPT`: Redis checks a script's declared
keys for write access, and the reader's user may only read them."""

KEYS_PER_CALL = 500
"""Items whose envelope one script call reads (a call blocks Redis while it runs)."""

_M = TypeVar("_M", bound=BaseModel)

_CIRCUIT_ORDER: dict[CircuitState, int] = {"closed": 0, "half_open": 1, "open": 2}


def live_workers(client: redis.Redis) -> list[WorkerHealth]:
    """The workers whose health key has not expired, by host then pid. A key that does not parse
    (a newer worker's format) is skipped. Raises redis-py's errors if Redis cannot be read."""
    ids = [member.decode() for member in cast(list[bytes], client.zrange(keys.WORKERS, 0, -1))]
    if not ids:
        return []
    workers = []
    for raw in cast(list[bytes | None], client.mget([keys.worker(worker_id) for worker_id in ids])):
        if raw is None:
            continue  # expired: the process died without deleting it
        try:
            workers.append(WorkerHealth.model_validate_json(raw))
        except ValidationError:
            continue
    return sorted(workers, key=lambda worker: (worker.host, worker.pid, worker.worker_id))


def worker_views(workers: Iterable[WorkerHealth], now: datetime) -> tuple[WorkerView, ...]:
    return tuple(
        WorkerView(
            **worker.model_dump(),
            up_s=round((now - worker.started_at).total_seconds(), 3),
            beat_age_s=round((now - worker.beat_at).total_seconds(), 3),
        )
        for worker in workers
    )


def take_snapshot(client: redis.Redis, now: datetime) -> Snapshot:
    """Everything status tells, read from `client` at `now` (aware UTC). Raises redis-py's errors
    if Redis cannot be read."""
    workers = live_workers(client)
    calendar_raw, plan_raw = cast(list[bytes | None], client.mget([keys.CALENDAR, keys.PLAN]))
    plan = _parse(PublishedPlan, plan_raw)
    market = market_now(_parse(PublishedCalendar, calendar_raw), now)
    datasets: dict[str, DatasetStatus] = {}
    providers: dict[str, ProviderStatus] = {}
    if plan is not None:
        datasets = _datasets(client, plan, market.phase, now)
        providers = _providers(client, plan, workers, now)
    queue = _queue(client, plan, workers, now)
    return Snapshot(
        at=now,
        market=market,
        plan_published_at=plan.published_at if plan is not None else None,
        datasets=datasets,
        providers=providers,
        queue=queue,
        workers=worker_views(workers, now),
    )


def _parse(model: type[_M], raw: bytes | None) -> _M | None:
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None  # a newer worker's format: told as absent


def market_now(published: PublishedCalendar | None, now: datetime) -> MarketNow:
    """The phase at `now` and the next change, by the published calendar (else the installed one
    of `DEFAULT_EXCHANGE`)."""
    exchange = published.exchange if published is not None else DEFAULT_EXCHANGE
    closed = published.extra_closed if published is not None else ()
    calendar = MarketCalendar(exchange, closed)
    phase = calendar.phase(now)
    next_phase, at = next_phase_change(calendar, now)
    today = exchange_date(now)
    return MarketNow(
        exchange=exchange,
        calendar="worker" if published is not None else "installed",
        phase=phase,
        next_phase=next_phase,
        next_change_at=at,
        extra_closed=tuple(day for day in closed if day >= today),
    )


def next_phase_change(calendar: MarketCalendar, now: datetime) -> tuple[Phase, datetime]:
    """The first phase after `now` that differs from the one at `now`, and when it starts."""
    current = calendar.phase(now)
    day = exchange_date(now)
    for offset in range(31):
        for segment in day_segments(calendar, day + timedelta(days=offset)):
            if segment.start > now and segment.phase != current:
                return segment.phase, segment.start
    raise LookupError(f"{calendar.exchange}: no change of phase in the 31 days after {now}")


def _item_keys(client: redis.Redis, plan: PublishedPlan, dataset: str, interval: str | None) -> list[str]:
    """The keys of `dataset`'s items for the watchlist; chains through each underlying's index
    (an underlying without one stands as its index key, which is then missing)."""
    symbols = plan.watchlist
    if dataset == "quotes":
        return [keys.quote(s) for s in symbols]
    if dataset == "expirations":
        return [keys.expirations(s) for s in symbols]
    if dataset in ("history", "intraday"):
        return [keys.history(s, interval or "1d") for s in symbols]
    if dataset == "indicators":
        return [keys.indicators(s) for s in symbols]
    if dataset != "chains" or not symbols:
        return []
    found: list[str] = []
    indexes = cast(list[bytes | None], client.mget([keys.chain_index(s) for s in symbols]))
    for symbol, raw in zip(symbols, indexes, strict=True):
        index = _parse(ChainIndex, raw)
        if index is None:
            found.append(keys.chain_index(symbol))
        else:
            found += [keys.chain(symbol, expiration) for expiration in index.expirations]
    return found


def _envelopes(client: redis.Redis, item_keys: Sequence[str]) -> list[bytes | None]:
    script = client.register_script(_ENVELOPES)
    found: list[bytes | None] = []
    for start in range(0, len(item_keys), KEYS_PER_CALL):
        part = item_keys[start : start + KEYS_PER_CALL]
        found += cast(list[bytes | None], script(keys=[], args=part))
    return found


def _datasets(
    client: redis.Redis, plan: PublishedPlan, phase: Phase, now: datetime
) -> dict[str, DatasetStatus]:
    names = list(plan.datasets)
    records = cast(list[bytes | None], client.mget([keys.last_refresh(name) for name in names]))
    datasets = {}
    for name, raw_record in zip(names, records, strict=True):
        dataset = plan.datasets[name]
        item_keys = _item_keys(client, plan, name, dataset.interval)
        fresh = stale = missing = 0
        oldest: datetime | None = None
        for envelope in _envelopes(client, item_keys):
            if envelope is None:
                missing += 1
                continue
            fetched_at, fresh_until = (_instant(part) for part in envelope.decode().partition(" ")[::2])
            if fresh_until is not None and now <= fresh_until:
                fresh += 1
            else:
                stale += 1
            if fetched_at is not None and (oldest is None or fetched_at < oldest):
                oldest = fetched_at
        record = _parse(RefreshRecord, raw_record)
        datasets[name] = DatasetStatus(
            provider=dataset.provider,
            rank=dataset.rank,
            items=len(item_keys),
            fresh=fresh,
            stale=stale,
            missing=missing,
            oldest_age_s=_age_s(oldest, now),
            configured_cadence_s=dataset.configured_cadence_s.get(phase),
            held_cadence_s=dataset.held_cadence_s.get(phase),
            last_refresh=record,
            last_refresh_age_s=_age_s(record.finished_at if record is not None else None, now),
        )
    return datasets


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _age_s(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 3)


def _providers(
    client: redis.Redis, plan: PublishedPlan, workers: Sequence[WorkerHealth], now: datetime
) -> dict[str, ProviderStatus]:
    local = now.astimezone(ZoneInfo(plan.timezone))
    today = local.date()
    last_minute = local.replace(second=0, microsecond=0) - timedelta(minutes=1)
    names = list(plan.providers)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.upstream_day(name, today))
            pipe.hgetall(keys.upstream_day(name, last_minute.date()))  # yesterday's just after midnight
            pipe.hgetall(keys.upstream_incident(name))
        answers = cast(list[Mapping[bytes | str, bytes | str]], pipe.execute())
    providers = {}
    for i, name in enumerate(names):
        day = UpstreamDay.from_hash(name, today, answers[3 * i])
        minute_day = UpstreamDay.from_hash(name, last_minute.date(), answers[3 * i + 1])
        per_minute = minute_day.calls_by_minute.get(f"{last_minute:%H:%M}", 0)
        rate_per_min = plan.providers[name].rate_per_min
        providers[name] = ProviderStatus(
            rate_per_min=rate_per_min,
            calls=day.calls,
            statuses=day.statuses,
            errors=day.faults,
            throttled=day.statuses.get(429, 0),
            calls_last_minute=per_minute,
            last_minute=f"{last_minute:%H:%M}",
            allowance_used=round(per_minute / rate_per_min, 3),
            circuit=_circuit(name, workers),
            waits=day.waits,
            wait_s=round(day.wait_s, 3),
            incident=_incident(answers[3 * i + 2]),
        )
    return providers


def _circuit(provider: str, workers: Sequence[WorkerHealth]) -> CircuitState | None:
    states = [w.circuits[provider] for w in workers if provider in w.circuits]
    return max(states, key=_CIRCUIT_ORDER.__getitem__, default=None)


def _incident(fields: Mapping[bytes | str, bytes | str]) -> Incident | None:
    if not fields:
        return None
    text = {_text(name): _text(value) for name, value in fields.items()}
    return Incident(
        started_at=_instant(text.get("started_at", "")),
        kind=text.get("kind", "?"),
        error=text.get("error", ""),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def job_priority(job_id: str, ranks: dict[str, int]) -> tuple[int, str]:
    """The rank and name of the priority of arq job `job_id`: "on-demand" for a fetch, the
    dataset of a refresh (or its retry), "tick" for the worker's own cron job (`TICK_JOB`), after
    every dataset; "other" for anything else."""
    if job_id.startswith(keys.FETCH_JOBS):
        return ON_DEMAND, "on-demand"
    refresh = keys.refresh_job_parts(job_id)
    if refresh is not None and refresh[0] in ranks:
        return ranks[refresh[0]], refresh[0]
    last = max(ranks.values(), default=0)
    if job_id.startswith(TICK_JOB + ":"):
        return last + 1, TICK_JOB
    return last + 2, "other"


def _queue(
    client: redis.Redis, plan: PublishedPlan | None, workers: Sequence[WorkerHealth], now: datetime
) -> QueueStatus:
    ranks = dataset_ranks(plan.priority if plan is not None else ())
    entries = cast(list[tuple[bytes, float]], client.zrange(keys.QUEUE, 0, -1, withscores=True))
    running_ids = {job.job_id for worker in workers for job in worker.jobs}
    now_ms = now.timestamp() * 1000
    counts: dict[tuple[int, str], dict[str, int]] = defaultdict(
        lambda: {"waiting": 0, "running": 0, "deferred": 0}
    )
    oldest_ms: float | None = None
    for raw_id, score in entries:
        job_id = raw_id.decode()
        state = "running" if job_id in running_ids else "deferred" if score > now_ms else "waiting"
        counts[job_priority(job_id, ranks)][state] += 1
        if state == "waiting" and (oldest_ms is None or score < oldest_ms):
            oldest_ms = score
    by_priority = tuple(
        QueuePriority(rank=rank, name=name, **count) for (rank, name), count in sorted(counts.items())
    )
    return QueueStatus(
        waiting=sum(p.waiting for p in by_priority),
        running=sum(p.running for p in by_priority),
        deferred=sum(p.deferred for p in by_priority),
        on_demand_waiting=sum(p.waiting for p in by_priority if p.rank == ON_DEMAND),
        oldest_age_s=None if oldest_ms is None else round((now_ms - oldest_ms) / 1000, 3),
        by_priority=by_priority,
    )
