"""`python -m worker status` for people: a `worker.snapshot.Snapshot` as `rich` tables, one per section.

Colour only on a terminal (rich's `Console` drops it when the output is piped, and honours
`NO_COLOR`); piped, the tables have no borders, so that each row is one line of columns separated
by spaces, for grep and awk.
"""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reader.calendar import EXCHANGE_TZ
from worker.snapshot import DatasetStatus, MarketNow, ProviderStatus, QueueStatus, Snapshot, WorkerView

WORKER_COLUMNS = ("WORKER", "HOST", "PID", "UP", "BEAT", "DONE", "FAILED", "RETRIED", "RUNNING")

NO_WORKER = "no worker is running (no worker health key in Redis)"

_PHASE_STYLE = {"regular": "bold green", "pre": "cyan", "post": "cyan", "closed": "dim"}
_CIRCUIT_STYLE = {"closed": "green", "half_open": "yellow", "open": "bold red"}


def duration(seconds: float) -> str:
    """`seconds` for people: "9s", "3m05s", "2h03m", "4d02h" (negative counts as 0)."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def render(snapshot: Snapshot, console: Console) -> None:
    """Print each section of `snapshot` on `console`: market, datasets, providers, queue, workers
    (only the workers when the snapshot has no market: `--self`). A table is framed (a rule under
    its head) on a terminal; piped, its rows are plain lines."""
    for table in _sections(snapshot):
        if isinstance(table, Table) and console.is_terminal:
            table.box = box.SIMPLE_HEAD
        console.print(table)


def _sections(snapshot: Snapshot) -> list[Table | Text | str]:
    sections: list[Table | Text | str] = []
    if snapshot.market is not None:
        sections.append(_market(snapshot.market, snapshot.at))
        if snapshot.plan_published_at is None:
            sections.append("no plan published: no worker has started against this Redis yet")
        if snapshot.datasets:
            sections.append(_datasets(snapshot.datasets, snapshot.market.phase))
        if snapshot.providers:
            sections.append(_providers(snapshot.providers))
            sections += _incidents(snapshot.providers, snapshot.at)
    if snapshot.queue is not None:
        sections.append(_queue_line(snapshot.queue))
        if snapshot.queue.by_priority:
            sections.append(_queue(snapshot.queue))
    workers = _workers(snapshot.workers, snapshot.at)
    sections.append(workers if workers is not None else Text(NO_WORKER, style="bold red"))
    if snapshot.workers:
        running = sum(len(worker.jobs) for worker in snapshot.workers)
        sections.append(f"{_count(len(snapshot.workers), 'worker')} running, {_count(running, 'job')}")
    return sections


def _table(title: str | None, *columns: str) -> Table:
    """A table whose rows are lines of columns; `render` draws its head rule on a terminal only."""
    return Table(
        *columns,
        title=title,
        title_justify="left",
        title_style="bold",
        box=None,
        header_style="bold",
        pad_edge=False,
    )


def _local(at: datetime) -> str:
    return f"{at.astimezone(EXCHANGE_TZ):%a %Y-%m-%d %H:%M %Z}"


def _market(market: MarketNow, now: datetime) -> Text:
    text = Text(f"market {market.exchange}: ")
    text.append(market.phase, style=_PHASE_STYLE[market.phase])
    left_s = (market.next_change_at - now).total_seconds()
    text.append(f" until {_local(market.next_change_at)} (in {duration(left_s)}), then {market.next_phase}; ")
    source = "the worker's calendar" if market.calendar == "worker" else "the installed calendar"
    closures = ", ".join(day.isoformat() for day in market.extra_closed)
    text.append(source + (f", extra closures {closures}" if closures else ""))
    return text


def _cadence(dataset: DatasetStatus) -> Text:
    configured, held = dataset.configured_cadence_s, dataset.held_cadence_s
    if configured is None:
        return Text("off", style="dim")
    if held is not None and held != configured:
        return Text(f"{configured:g}s held {held:g}s", style="yellow")
    return Text(f"{configured:g}s")


def _datasets(datasets: dict[str, DatasetStatus], phase: str) -> Table:
    table = _table(
        "Datasets",
        "DATASET",
        "PROVIDER",
        "FRESH",
        "STALE",
        "MISSING",
        "OLDEST",
        f"CADENCE ({phase})",
        "LAST REFRESH",
        "TOOK",
    )
    for name, dataset in sorted(datasets.items(), key=lambda item: item[1].rank):
        record = dataset.last_refresh
        if record is None or dataset.last_refresh_age_s is None:
            last, took = Text("-"), "-"
        else:
            style = {"ok": "green", "partial": "yellow", "failed": "bold red"}[record.outcome]
            last = Text(record.outcome, style=style) + f" {duration(dataset.last_refresh_age_s)} ago"
            took = f"{record.duration_s:.1f}s"
        table.add_row(
            name,
            dataset.provider or "computed",
            str(dataset.fresh),
            Text(str(dataset.stale), style="yellow" if dataset.stale else ""),
            Text(str(dataset.missing), style="red" if dataset.missing else ""),
            duration(dataset.oldest_age_s) if dataset.oldest_age_s is not None else "-",
            _cadence(dataset),
            last,
            took,
        )
    return table


def _providers(providers: dict[str, ProviderStatus]) -> Table:
    table = _table(
        "Providers (today)", "PROVIDER", "CALLS", "ERRORS", "429S", "ALLOWANCE", "CIRCUIT", "WAITS"
    )
    for name, provider in providers.items():
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(provider.errors.items())) or "-"
        allowance = (
            f"{provider.allowance_used:.0%} ({provider.calls_last_minute}/{provider.rate_per_min} last min)"
        )
        circuit = provider.circuit or "-"
        table.add_row(
            name,
            str(provider.calls),
            Text(errors, style="red" if provider.errors else ""),
            Text(str(provider.throttled), style="yellow" if provider.throttled else ""),
            allowance,
            Text(circuit, style=_CIRCUIT_STYLE.get(circuit, "dim")),
            f"{provider.waits} ({provider.wait_s:.1f}s)",
        )
    return table


def _incidents(providers: dict[str, ProviderStatus], now: datetime) -> list[Text]:
    lines = []
    for name, provider in providers.items():
        incident = provider.incident
        if incident is None:
            continue
        since = (
            f" for {duration((now - incident.started_at).total_seconds())}"
            if incident.started_at is not None
            else ""
        )
        lines.append(Text(f"incident at {name}{since}: {incident.kind}: {incident.error}", style="bold red"))
    return lines


def _queue_line(queue: QueueStatus) -> Text:
    oldest = f", oldest waiting {duration(queue.oldest_age_s)}" if queue.oldest_age_s is not None else ""
    return Text(
        f"Queue: {queue.waiting} waiting ({queue.on_demand_waiting} on-demand){oldest}, "
        f"{queue.running} running, {queue.deferred} deferred",
        style="bold",
    )


def _queue(queue: QueueStatus) -> Table:
    table = _table(
        None,
        "PRIORITY",
        "RANK",
        "WAITING",
        "RUNNING",
        "DEFERRED",
    )
    for row in queue.by_priority:
        table.add_row(row.name, str(row.rank), str(row.waiting), str(row.running), str(row.deferred))
    return table


def _running(worker: WorkerView, now: datetime) -> str:
    jobs = [
        f"{job.function}:{job.symbols} {duration((now - job.started_at).total_seconds())}"
        for job in worker.jobs
    ]
    return ", ".join(jobs) or "-"


def _workers(workers: tuple[WorkerView, ...], now: datetime) -> Table | None:
    """One row per worker; RUNNING lists each job as "<function>:<symbols> <age>"."""
    if not workers:
        return None
    table = _table("Workers", *WORKER_COLUMNS)
    for worker in workers:
        table.add_row(
            worker.worker_id,
            worker.host,
            str(worker.pid),
            duration(worker.up_s),
            duration(worker.beat_age_s) + " ago",
            str(worker.jobs_complete),
            str(worker.jobs_failed),
            str(worker.jobs_retried),
            _running(worker, now),
        )
    return table


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
