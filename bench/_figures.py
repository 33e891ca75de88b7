"""The figures a benchmark reports, and the one table `python -m bench` prints of them all.

Each bench script prints its own lines for people and, given `--figures-json PATH`, writes its
headline figures there as JSON (`write`): each a measured value beside the baseline measured in the
same run (what the project is compared with: the floor under a read, the approach most users would
pick instead, the naive way), and the target where the project has one. The runner (`bench/__main__.py`)
reads them back (`read`) and prints `table`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Operator = Literal["<=", "<", ">=", "=="]


@dataclass(frozen=True)
class Target:
    """What a figure must meet: its `value`, or its `ratio` to the baseline, `op` `limit`."""

    limit: float
    of: Literal["value", "ratio"] = "ratio"
    op: Operator = "<="

    def met(self, value: float, ratio: float | None) -> bool | None:
        """Whether it is met; None when the ratio it is about is unknown (no baseline, or 0)."""
        measured = value if self.of == "value" else ratio
        if measured is None or math.isnan(measured):
            return None
        if self.op == "<=":
            return measured <= self.limit
        if self.op == "<":
            return measured < self.limit
        if self.op == ">=":
            return measured >= self.limit
        return measured == self.limit

    def shown(self, unit: str) -> str:
        limit = f"{self.limit:g}"
        return f"ratio {self.op} {limit}" if self.of == "ratio" else f"{self.op} {limit} {unit}".rstrip()


@dataclass(frozen=True)
class Figure:
    """One measured figure: `value` in `unit`, beside `baseline` (same unit) measured in the same
    run and named by `baseline_name`; `target` if the project has one. `script` is filled in by
    the runner (the bench/ script that measured it)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    script: str = ""

    @property
    def ratio(self) -> float | None:
        """value / baseline; None without a baseline (or a baseline of 0)."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without a target (or without the ratio it is about)."""
        return None if self.target is None else self.target.met(self.value, self.ratio)


def write(path: Path, figures: Iterable[Figure]) -> None:
    """Write `figures` to `path` as a JSON list (what `read` takes back)."""
    path.write_text(json.dumps([asdict(f) for f in figures], indent=1))


def read(path: Path, script: str) -> list[Figure]:
    """The figures `write` wrote to `path`, marked as measured by `script`."""
    figures = []
    for item in json.loads(path.read_text()):
        target = item.pop("target")
        item["script"] = script
        figures.append(Figure(**item, target=None if target is None else Target(**target)))
    return figures


def number(value: float, unit: str) -> str:
    """`value` with `unit`, to about three significant digits (whole numbers as they are, MiB to
    the tenth)."""
    if unit == "MiB":  # memory: the tenths tell growth from noise
        text = f"{value:,.1f}"
    elif value == int(value) and abs(value) >= 1 and unit != "ms":
        text = f"{int(value):,}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}" if value else "0"
    return f"{text} {unit}".rstrip()


HEADERS = ("figure", "value", "baseline (same run)", "", "ratio", "target", "verdict")


def verdict(figure: Figure) -> str:
    met = figure.met
    if met is None:
        return "-" if figure.target is None else "n/a"
    return "ok" if met else "MISSED"


def _ratio(ratio: float) -> str:
    """Two decimals, as the targets are written (1.2, 1.3); two significant digits below 0.1."""
    return f"{ratio:.2f}" if ratio >= 0.095 else f"{ratio:.2g}"


def rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    """The cells of the table, one row per figure (after the header)."""
    out: list[tuple[str, ...]] = [HEADERS]
    for f in figures:
        ratio = f.ratio
        out.append(
            (
                f.name,
                number(f.value, f.unit),
                f.baseline_name if f.baseline is not None else "-",
                number(f.baseline, f.unit) if f.baseline is not None else "",
                "-" if ratio is None else _ratio(ratio),
                "-" if f.target is None else f.target.shown(f.unit),
                verdict(f),
            )
        )
    return out


def table(figures: Sequence[Figure], failed_scripts: Sequence[str] = ()) -> str:
    """The figures as one aligned text table; numbers right-aligned, the scripts that failed after it."""
    cells = rows(figures)
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    right = {1, 3, 4}
    lines = []
    for n, row in enumerate(cells):
        line = "  ".join(
            cell.rjust(width) if i in right and n else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        lines.append(line.rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    for script in failed_scripts:
        lines.append(f"{script} FAILED (see its output above): its figures are missing or incomplete")
    return "\n".join(lines)


def missed(figures: Sequence[Figure]) -> list[Figure]:
    """The figures that miss their target."""
    return [f for f in figures if f.met is False]
