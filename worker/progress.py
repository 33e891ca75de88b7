"""How far `python -m worker refresh` has gone: per dataset, symbols done of the total, upstream
calls, time elapsed and the time left under the rate limit.

`Runtime.refresh_watchlist` tells a `RefreshProgress` after each batch (`update`) and when a
dataset is done (`finished`). `ProgressLines` prints one line per dataset done (output that is not
a terminal); `ProgressBars` draws a `rich` progress bar per dataset on a terminal, and prints the
same lines above them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from worker.refresh import RefreshReport


@dataclass
class DatasetProgress:
    """One dataset's refresh so far: `done` of `total` symbols, `calls` upstream calls sent.

    `planned_calls` are the calls a refresh of all `total` symbols takes (`worker.plan`), and
    `rate_per_min` what the fleet may send of its upstream steadily (None: it calls none): the
    time left is the longer of what the remaining calls take at that rate and what they take at
    the pace so far."""

    dataset: str
    total: int
    planned_calls: float = 0.0
    rate_per_min: float | None = None
    done: int = 0
    calls: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def eta_s(self) -> float:
        """Seconds left: 0 when done."""
        left = max(self.total - self.done, 0)
        if not left or not self.total:
            return 0.0
        at_rate_s = 0.0
        if self.rate_per_min:
            at_rate_s = self.planned_calls * left / self.total * 60 / self.rate_per_min
        at_pace_s = self.elapsed_s / self.done * left if self.done else 0.0
        return max(at_rate_s, at_pace_s)

    def figures(self) -> str:
        """ "3/3 symbols, 1 call, 0.2 s" (and the time left while not done)."""
        calls = f"{self.calls} call" + ("" if self.calls == 1 else "s")
        left = f", about {self.eta_s:.0f} s left" if self.done < self.total else ""
        return f"{self.done}/{self.total} symbols, {calls}, {self.elapsed_s:.1f} s{left}"


class RefreshProgress(Protocol):
    """What `Runtime.refresh_watchlist` tells as it goes."""

    def update(self, progress: DatasetProgress) -> None:
        """A batch of `progress.dataset` ended (or the dataset starts: `done` 0)."""

    def finished(self, progress: DatasetProgress, report: RefreshReport) -> None:
        """Every batch of `progress.dataset` ended; `report` says what they stored."""


ReportLine = Callable[[RefreshReport, DatasetProgress], str]


class ProgressLines:
    """One line per dataset done, on `out` (`line` writes it: the result and the figures)."""

    def __init__(self, line: ReportLine, out: TextIO | None = None) -> None:
        self._line = line
        self._out = out

    def update(self, progress: DatasetProgress) -> None:
        pass

    def finished(self, progress: DatasetProgress, report: RefreshReport) -> None:
        print(self._line(report, progress), file=self._out or sys.stdout, flush=True)


class ProgressBars:
    """A bar per dataset on `console` (done / total symbols, calls, elapsed, time left), and the
    line of each dataset done printed above the bars. Use inside `showing()`."""

    def __init__(self, line: ReportLine, console: Console) -> None:
        self._line = line
        self.console = console
        self._progress = Progress(
            TextColumn("{task.fields[dataset]:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("symbols  {task.fields[calls]}  {task.fields[elapsed]}  {task.fields[eta]}"),
            console=console,
            redirect_stderr=True,
            redirect_stdout=True,
        )
        self._tasks: dict[str, TaskID] = {}

    @contextmanager
    def showing(self) -> Iterator[ProgressBars]:
        """Draw the bars while the block runs; log lines written to stderr meanwhile are printed
        above them (through the console) instead of across them."""
        stderr = sys.stderr
        with self._progress:
            routed = _route_log_handlers(stderr, sys.stderr)  # to rich's proxy while bars are drawn
            try:
                yield self
            finally:
                for handler in routed:
                    handler.setStream(stderr)

    def update(self, progress: DatasetProgress) -> None:
        task = self._tasks.get(progress.dataset)
        if task is None:
            task = self._tasks[progress.dataset] = self._progress.add_task(
                progress.dataset, total=progress.total, **self._fields(progress)
            )
        self._progress.update(task, completed=progress.done, **self._fields(progress))

    def finished(self, progress: DatasetProgress, report: RefreshReport) -> None:
        self.update(progress)
        self.console.print(self._line(report, progress), highlight=False, markup=False)

    @staticmethod
    def _fields(progress: DatasetProgress) -> dict[str, Any]:
        left = f"~{progress.eta_s:.0f}s left" if progress.done < progress.total else "done"
        return {
            "dataset": progress.dataset,
            "calls": f"{progress.calls} call" + ("" if progress.calls == 1 else "s"),
            "elapsed": f"{progress.elapsed_s:.1f}s",
            "eta": left,
        }


def _route_log_handlers(old: TextIO, new: TextIO) -> list[logging.StreamHandler[TextIO]]:
    """Point the root logger's handlers that write to `old` at `new`; those handlers."""
    routed = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is old and new is not old:
            handler.setStream(new)
            routed.append(handler)
    return routed
