"""When refreshes are due: pure functions of the configuration and `now`.

For now a fixed interval: time is cut into slots of `interval_s` seconds since the epoch, each
slot refreshes every batch of the watchlist once, and an item fetched in a slot is fresh until
the next slot begins. The exchange-calendar schedule replaces the fixed interval later; its
callers only see `due_batches` and `next_refresh`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from reader import keys


@dataclass(frozen=True)
class DueBatch:
    """One batch of one dataset to refresh in one slot; its job id is the same on every worker."""

    dataset: str
    slot: int
    index: int
    symbols: tuple[str, ...]

    @property
    def job_id(self) -> str:
        return keys.refresh_job_id(self.dataset, self.slot, self.index)


def slot_of(now: datetime, interval_s: float) -> int:
    """The number of the slot `now` falls in."""
    return int(now.timestamp() // interval_s)


def next_refresh(now: datetime, interval_s: float) -> datetime:
    """When the slot after the one of `now` begins."""
    return datetime.fromtimestamp((slot_of(now, interval_s) + 1) * interval_s, UTC)


def batches(symbols: Sequence[str], batch_size: int) -> list[tuple[str, ...]]:
    """`symbols` cut into consecutive batches of at most `batch_size`."""
    return [tuple(symbols[i : i + batch_size]) for i in range(0, len(symbols), batch_size)]


def due_batches(
    dataset: str, symbols: Sequence[str], *, batch_size: int, interval_s: float, now: datetime
) -> list[DueBatch]:
    """Every batch of `symbols` for the slot of `now`."""
    slot = slot_of(now, interval_s)
    return [
        DueBatch(dataset=dataset, slot=slot, index=index, symbols=batch)
        for index, batch in enumerate(batches(symbols, batch_size))
    ]
