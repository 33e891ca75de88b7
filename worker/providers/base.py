"""The seam between the refresh code and the upstream APIs: one small Protocol per dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reader.models import Quote

Freshness = Callable[[datetime], datetime]
"""Maps the time an item was fetched to its `fresh_until` (the schedule's next refresh)."""


@dataclass(frozen=True)
class QuoteBatch:
    """What one upstream call answered: the quotes, and the symbols it does not know."""

    quotes: tuple[Quote, ...]
    unmatched: tuple[str, ...]


class QuoteProvider(Protocol):
    """Fetches quotes of up to `batch_size` symbols in one upstream call."""

    name: str
    batch_size: int

    async def fetch_quotes(self, symbols: Sequence[str], *, freshness: Freshness) -> QuoteBatch:
        """Quotes stamped with `source`, `fetched_at` (when the answer came) and
        `fresh_until = freshness(fetched_at)`; raises `UpstreamError`."""
        ...
