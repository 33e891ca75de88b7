"""`python -m worker status` for people: a `worker.snapshot.Snapshot` as `rich` tables, one per section.

Colour only on a terminal (rich's `Console` drops it when the output is piped, and honours
`NO_COLOR`); piped, the tables have no borders, so that each row is one line of columns separated
by spaces, for grep and awk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rich import box
from rich.console import Console
from rich.measure import Measurement
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
    its head) on a terminal; piped, its rows are plain lines. Names and ids (datasets, providers,
    priorities, workers) are never cut: on a console too narrow for a whole table, its secondary
    columns are left out (its caption names them)."""
    for section in _sections(snapshot, console):
        console.print(section)


def _sections(snapshot: Snapshot, console: Console) -> list[Table | Text | str]:
    sections: list[Table | Text | str] = []
    if snapshot.market is not None:
        sections.append(_market(snapshot.market, snapshot.at))
        if snapshot.plan_published_at is None:
            sections.append("no plan published: no worker has started against this Redis yet")
        if snapshot.datasets:
            sections.append(_datasets(snapshot.datasets, snapshot.market.phase, console))
        if snapshot.providers:
            sections.append(_providers(snapshot.providers, console))
            sections += _incidents(snapshot.providers, snapshot.at)
    if snapshot.queue is not None:
        sections.append(_queue_line(snapshot.queue))
        if snapshot.queue.by_priority:
            sections.append(_queue(snapshot.queue, console))
    workers = _workers(snapshot.workers, snapshot.at, console)
    sections.append(workers if workers is not None else Text(NO_WORKER, style="bold red"))
    if snapshot.workers:
        running = sum(len(worker.jobs) for worker in snapshot.workers)
        sections.append(f"{_count(len(snapshot.workers), 'worker')} running, {_count(running, 'job')}")
    return sections


@dataclass(frozen=True)
class _Column:
    """A column of a status table. `key`: a name or id, never cut nor left out; `wrap`: free text
    (errors, jobs) that may take several lines; else one line, whole. On a narrow console the
    columns of lowest `keep` are left out first."""

    header: str
    key: bool = False
    wrap: bool = False
    keep: int = 0


def _fitted(
    console: Console,
    title: str | None,
    columns: Sequence[_Column],
    rows: Sequence[Sequence[str | Text]],
) -> Table:
    """The table of `rows` with as many `columns` as fit `console`'s width whole (`_Column`); its
    caption names the columns left out."""
    shown = list(range(len(columns)))
    while True:
        left_out = ", ".join(column.header for i, column in enumerate(columns) if i not in shown)
        table = Table(
            title=title,
            title_justify="left",
            title_style="bold",
            caption=f"left out at {console.width} columns: {left_out} (see --json)" if left_out else None,
            caption_justify="left",
            caption_style="dim",
            box=box.SIMPLE_HEAD if console.is_terminal else None,
            header_style="bold",
            pad_edge=False,
        )
        for i in shown:
            table.add_column(columns[i].header, no_wrap=not columns[i].wrap, overflow="fold")
        for row in rows:
            table.add_row(*(row[i] for i in shown))
        droppable = [i for i in shown if not columns[i].key]
        if not droppable or _least_width(console, table) <= console.width:
            return table
        shown.remove(min(droppable, key=lambda i: (columns[i].keep, -i)))


def _least_width(console: Console, table: Table) -> int:
    """The width `table` needs for no cell to be cut: each one-line column as wide as its widest
    cell (head included), each wrapping one as its longest word; plus the padding between columns
    and, framed, the edges and the rules between them. (rich's own measure of a table is clamped
    to the console's width, so it cannot tell.)"""
    options = console.options.update_width(10_000)
    widths = []
    for column in table.columns:
        cells = [Measurement.get(console, options, cell) for cell in (column.header, *column.cells)]
        widths.append(max(m.minimum if not column.no_wrap else m.maximum for m in cells))
    n = len(widths)
    framing = 2 + (n - 1) if table.box is not None else 0
    return sum(widths) + 2 * (n - 1) + framing


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


def _datasets(datasets: dict[str, DatasetStatus], phase: str, console: Console) -> Table:
    columns = (
        _Column("DATASET", key=True),
        _Column("PROVIDER", key=True),
        _Column("FRESH", keep=8),
        _Column("STALE", keep=7),
        _Column("MISSING", keep=9),
        _Column("OLDEST", keep=5),
        _Column(f"CADENCE ({phase})", keep=4),
        _Column("LAST REFRESH", keep=6),
        _Column("TOOK", keep=3),
    )
    rows: list[list[str | Text]] = []
    for name, dataset in sorted(datasets.items(), key=lambda item: item[1].rank):
        record = dataset.last_refresh
        if record is None or dataset.last_refresh_age_s is None:
            last, took = Text("-"), "-"
        else:
            style = {"ok": "green", "partial": "yellow", "failed": "bold red"}[record.outcome]
            last = Text(record.outcome, style=style) + f" {duration(dataset.last_refresh_age_s)} ago"
            took = f"{record.duration_s:.1f}s"
        rows.append(
            [
                name,
                dataset.provider or "computed",
                str(dataset.fresh),
                Text(str(dataset.stale), style="yellow" if dataset.stale else ""),
                Text(str(dataset.missing), style="red" if dataset.missing else ""),
                duration(dataset.oldest_age_s) if dataset.oldest_age_s is not None else "-",
                _cadence(dataset),
                last,
                took,
            ]
        )
    return _fitted(console, "Datasets", columns, rows)


def _providers(providers: dict[str, ProviderStatus], console: Console) -> Table:
    """One row per upstream: LAST WHOLE MINUTE is "<calls>/<rate_per_min> at HH:MM (<share>)" for
    the last whole exchange-local minute; RATE WAITS the waits for the rate budget today and their
    seconds added up (requests wait side by side: the sum may exceed the wall time)."""
    columns = (
        _Column("PROVIDER", key=True),
        _Column("CALLS", keep=8),
        _Column("ERRORS", wrap=True, keep=5),
        _Column("429S", keep=6),
        _Column("LAST WHOLE MINUTE", keep=7),
        _Column("CIRCUIT", keep=9),
        _Column("RATE WAITS", keep=4),
    )
    rows: list[list[str | Text]] = []
    for name, provider in providers.items():
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(provider.errors.items())) or "-"
        minute = (
            f"{provider.calls_last_minute}/{provider.rate_per_min} at {provider.last_minute}"
            f" ({provider.allowance_used:.0%})"
        )
        circuit = provider.circuit or "-"
        rows.append(
            [
                name,
                str(provider.calls),
                Text(errors, style="red" if provider.errors else ""),
                Text(str(provider.throttled), style="yellow" if provider.throttled else ""),
                minute,
                Text(circuit, style=_CIRCUIT_STYLE.get(circuit, "dim")),
                f"{_count(provider.waits, 'wait')}, {provider.wait_s:.1f}s in all",
            ]
        )
    return _fitted(console, "Providers (today)", columns, rows)


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


def _queue(queue: QueueStatus, console: Console) -> Table:
    columns = (
        _Column("PRIORITY", key=True),
        _Column("RANK", keep=1),
        _Column("WAITING", keep=4),
        _Column("RUNNING", keep=3),
        _Column("DEFERRED", keep=2),
    )
    rows: list[list[str | Text]] = [
        [row.name, str(row.rank), str(row.waiting), str(row.running), str(row.deferred)]
        for row in queue.by_priority
    ]
    return _fitted(console, None, columns, rows)


def _running(worker: WorkerView, now: datetime) -> str:
    jobs = [
        f"{job.function}:{job.symbols} {duration((now - job.started_at).total_seconds())}"
        for job in worker.jobs
    ]
    return ", ".join(jobs) or "-"


def _workers(workers: tuple[WorkerView, ...], now: datetime, console: Console) -> Table | None:
    """One row per worker; RUNNING lists each job as "<function>:<symbols> <age>". On a narrow
    console PID and HOST go first: the worker id holds them."""
    if not workers:
        return None
    keep = {"PID": 1, "HOST": 2, "RETRIED": 4, "DONE": 5, "FAILED": 6, "UP": 7, "BEAT": 8, "RUNNING": 9}
    columns = [
        _Column(name, key=name == "WORKER", wrap=name == "RUNNING", keep=keep.get(name, 0))
        for name in WORKER_COLUMNS
    ]
    rows: list[list[str | Text]] = [
        [
            worker.worker_id,
            worker.host,
            str(worker.pid),
            duration(worker.up_s),
            duration(worker.beat_age_s) + " ago",
            str(worker.jobs_complete),
            str(worker.jobs_failed),
            str(worker.jobs_retried),
            _running(worker, now),
        ]
        for worker in workers
    ]
    return _fitted(console, "Workers", columns, rows)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
