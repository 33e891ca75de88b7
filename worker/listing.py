"""Whether the upstream lists a symbol: what tells "no such symbol" from "no data of this kind now".

Tradier answers an unknown symbol and a listed one without data alike on its history, timesales,
expirations and chains endpoints (`{"history": null}`, `{"options": null}`...), and Polygon its
aggregates alike (200 without `results`). Only the quotes endpoints tell them apart (Tradier's
`unmatched_symbols`, Polygon's missing or NOT_FOUND ticker). So a symbol is listed if a quote of
it is stored (any age: it was listed then; no upstream call), else if the quotes endpoint
answers a quote for it: one call per `batch_size` symbols, whose quotes are stored with the
refresh (the call is not wasted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reader import keys
from worker.errors import UpstreamError
from worker.incidents import transient
from worker.providers.base import Freshness, QuoteProvider
from worker.schedule import batches
from worker.store import Entry, Store


@dataclass(frozen=True)
class Listing:
    """Which symbols are `listed`, which the upstream says it does not know (`unknown`), the quotes
    fetched to tell (`entries`, to store), and why the others could not be told (`error`; worth
    asking again soon if `transient`)."""

    listed: frozenset[str]
    unknown: frozenset[str]
    entries: tuple[Entry, ...] = ()
    error: str | None = None
    transient: bool = False


async def check_listed(
    provider: QuoteProvider, store: Store, symbols: Sequence[str], *, freshness: Freshness
) -> Listing:
    """Which of `symbols` (normalised) the upstream lists; see the module's docstring. A quotes call
    that fails leaves its symbols neither listed nor unknown; raises `redis.RedisError`."""
    listed = {s for s in symbols if await store.exists(keys.quote(s))}
    unknown: set[str] = set()
    entries: list[Entry] = []
    error: str | None = None
    passing = False
    for batch in batches([s for s in symbols if s not in listed], provider.batch_size):
        try:
            answer = await provider.fetch_quotes(batch, freshness=freshness)
        except UpstreamError as e:
            error, passing = str(e), transient(e)
            continue
        wanted = set(batch)
        quoted = [q for q in answer.quotes if q.symbol in wanted]
        entries += [(keys.quote(q.symbol), q) for q in quoted]
        listed |= {q.symbol for q in quoted} | {s for s, _ in answer.refused if s in wanted}
        unknown |= {s for s in answer.unmatched if s in wanted}
        if missing := wanted - listed - unknown:
            error = f"the quotes endpoint answered nothing for {', '.join(sorted(missing))}"
    return Listing(frozenset(listed), frozenset(unknown - listed), tuple(entries), error, passing)
