"""A refresh: fetch a batch from its provider, store what came back, report what happened.

A failed upstream call or Redis write stores nothing and leaves the previous values in place;
it is logged as one line naming the provider, the batch size and the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker.errors import UpstreamError
from worker.logs import fields
from worker.providers.base import Freshness, QuoteProvider
from worker.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshReport:
    """What one or more batches of one dataset achieved."""

    dataset: str
    requested: tuple[str, ...] = ()
    stored: tuple[str, ...] = ()
    unmatched: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every requested symbol was stored."""
        return set(self.stored) >= set(self.requested)

    @classmethod
    def combine(cls, dataset: str, reports: Iterable[RefreshReport]) -> RefreshReport:
        parts = list(reports)
        return cls(
            dataset=dataset,
            requested=tuple(s for r in parts for s in r.requested),
            stored=tuple(s for r in parts for s in r.stored),
            unmatched=tuple(s for r in parts for s in r.unmatched),
            failed=tuple(s for r in parts for s in r.failed),
            errors=tuple(e for r in parts for e in r.errors),
        )

    def summary(self) -> dict[str, Any]:
        """Counts and problems, small enough for a log line or an arq result."""
        return {
            "dataset": self.dataset,
            "requested": len(self.requested),
            "stored": len(self.stored),
            "unmatched": list(self.unmatched),
            "failed": len(self.failed),
            "errors": list(self.errors),
        }


async def refresh_quotes(
    provider: QuoteProvider, store: Store, symbols: Sequence[str], *, freshness: Freshness
) -> RefreshReport:
    """Fetch one batch of quotes and store it atomically."""
    started = time.perf_counter()
    requested = tuple(symbols)
    try:
        batch = await provider.fetch_quotes(requested, freshness=freshness)
        wanted = set(requested)
        quotes = [q for q in batch.quotes if q.symbol in wanted]
        await store.put_quotes(quotes)
    except (UpstreamError, redis.RedisError) as e:
        log.warning(
            "refresh.batch_failed %s",
            fields(dataset="quotes", provider=provider.name, symbols=len(requested), error=f'"{e}"'),
        )
        return RefreshReport("quotes", requested=requested, failed=requested, errors=(str(e),))
    stored = tuple(q.symbol for q in quotes)
    unmatched = tuple(s for s in batch.unmatched if s in wanted)
    missing = wanted - set(stored) - set(unmatched)
    log.info(
        "refresh.batch_done %s",
        fields(
            dataset="quotes",
            provider=provider.name,
            symbols=len(requested),
            stored=len(stored),
            unmatched=",".join(unmatched) or "-",
            missing=len(missing),
            elapsed_s=round(time.perf_counter() - started, 3),
        ),
    )
    errors = (f"{provider.name} returned no quote for {sorted(missing)}",) if missing else ()
    return RefreshReport(
        "quotes",
        requested=requested,
        stored=stored,
        unmatched=unmatched,
        failed=tuple(sorted(missing)),
        errors=errors,
    )
