"""A refresh: fetch a batch from its provider, store what came back, report what happened.

A failed upstream call or Redis write stores nothing and leaves the previous values in place;
it is logged as one line naming the provider, the batch size and the reason: at INFO when the
upstream's incident log counted the fault (it warns once per incident, not per batch), else at
WARNING. The report tells which failed symbols are worth retrying soon (`worker.retry`). Quotes come a batch
per upstream call; the other datasets a symbol at a time (`refresh_symbols`), concurrently within
a batch, as far as the provider's rate gate lets them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker.errors import UpstreamError, WorkerError
from worker.incidents import reported_kind, transient
from worker.listing import Listing
from worker.logs import fields
from worker.outcome import Failed, NoData, NoSuchSymbol, NotListed, Stored, SymbolOutcome
from worker.providers.base import Freshness, QuoteProvider
from worker.store import Entry, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshReport:
    """What one or more batches of one dataset achieved."""

    dataset: str
    requested: tuple[str, ...] = ()
    stored: tuple[str, ...] = ()
    unmatched: tuple[str, ...] = ()  # the upstream does not know them (`outcome.NoSuchSymbol`)
    failed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    retryable: tuple[str, ...] = ()  # failed symbols whose fault is transient (`incidents.transient`)
    no_data: tuple[str, ...] = ()  # listed, nothing of this dataset now; remembered (`outcome.NoData`)

    @property
    def complete(self) -> bool:
        """True when every requested symbol was stored, or is remembered as having no data now."""
        return set(self.stored) | set(self.no_data) >= set(self.requested)

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
            retryable=tuple(s for r in parts for s in r.retryable),
            no_data=tuple(s for r in parts for s in r.no_data),
        )

    def summary(self) -> dict[str, Any]:
        """Counts and problems, small enough for a log line or an arq result."""
        return {
            "dataset": self.dataset,
            "requested": len(self.requested),
            "stored": len(self.stored),
            "unmatched": list(self.unmatched),
            "no_data": list(self.no_data),
            "failed": len(self.failed),
            "errors": list(self.errors),
            "retryable": len(self.retryable),
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
        written = await store.put_quotes(quotes)
    except (UpstreamError, redis.RedisError) as e:
        _log_failure(reported_kind(e) is not None, breaker_open=reported_kind(e) == "circuit_open")(
            "refresh.batch_failed %s",
            fields(dataset="quotes", provider=provider.name, symbols=len(requested), error=f'"{e}"'),
        )
        retryable = requested if transient(e) else ()
        return RefreshReport(
            "quotes", requested=requested, failed=requested, errors=(str(e),), retryable=retryable
        )
    stored = tuple(q.symbol for q in quotes)
    unmatched = tuple(s for s in batch.unmatched if s in wanted)
    refused = {symbol: reason for symbol, reason in batch.refused if symbol in wanted}
    missing = wanted - set(stored) - set(unmatched) - set(refused)
    log.info(
        "refresh.batch_done %s",
        fields(
            dataset="quotes",
            provider=provider.name,
            symbols=len(requested),
            stored=len(stored),
            unmatched=",".join(unmatched) or "-",
            missing=len(missing),
            refused=",".join(sorted(refused)) or "-",
            kept_newer=len(quotes) - written,
            elapsed_s=round(time.perf_counter() - started, 3),
        ),
    )
    errors: tuple[str, ...] = (f"{provider.name} returned no quote for {sorted(missing)}",) if missing else ()
    # A quote with a value the model refuses keeps its previous value; the others are stored.
    errors += tuple(f"{provider.name} {symbol}: {reason}" for symbol, reason in sorted(refused.items()))
    return RefreshReport(
        "quotes",
        requested=requested,
        stored=stored,
        unmatched=unmatched,
        failed=tuple(sorted(missing | set(refused))),
        errors=errors,
    )


FetchOne = Callable[[str], Awaitable[SymbolOutcome]]
"""Fetches what one symbol of a dataset stores (`worker.outcome`); raises `UpstreamError`."""

CheckListed = Callable[[Sequence[str]], Awaitable[Listing]]
"""Tells which symbols the upstream lists (`worker.listing.check_listed`)."""


async def refresh_symbols(
    dataset: str,
    provider_name: str,
    store: Store,
    symbols: Sequence[str],
    fetch_one: FetchOne,
    *,
    check_listed: CheckListed,
) -> RefreshReport:
    """Fetch each symbol concurrently, then store every symbol that succeeded in one transaction.

    A symbol whose fetch fails stores nothing (its previous items stay); the others are stored.
    A symbol the upstream answered with no data (`NoData`) has its empty items stored once
    `check_listed` tells it is listed (one quotes call for the batch's symbols without a stored
    quote, none otherwise); it is unmatched if the quotes endpoint does not know it, and failed if
    that could not be told.
    """
    started = time.perf_counter()
    requested = tuple(symbols)
    outcomes = await asyncio.gather(*(fetch_one(s) for s in requested), return_exceptions=True)
    resolved: dict[str, SymbolOutcome] = {}
    errors: list[str] = []
    retryable: list[str] = []
    counted = True  # every failure was counted as an upstream fault, which the incident log tells
    breaker_open = True  # every failure was the breaker's: not called at all
    for symbol, outcome in zip(requested, outcomes, strict=True):
        if isinstance(outcome, WorkerError | ValueError | redis.RedisError):
            resolved[symbol] = Failed(str(outcome))
            counted = counted and reported_kind(outcome) is not None
            breaker_open = breaker_open and reported_kind(outcome) == "circuit_open"
            if transient(outcome):
                retryable.append(symbol)
        elif isinstance(outcome, Exception):
            # A bug for one symbol must not cost the others their refresh; it is logged with its trace.
            log.error("refresh.symbol_crashed dataset=%s symbol=%s", dataset, symbol, exc_info=outcome)
            resolved[symbol] = Failed(f"{type(outcome).__name__}: {outcome}")
            counted = breaker_open = False
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            if isinstance(outcome, Failed):
                counted = breaker_open = False
            resolved[symbol] = outcome
    entries, unlisted_retryable = await _resolve_listing(resolved, check_listed)
    retryable += unlisted_retryable
    stored: list[str] = []
    no_data: list[str] = []
    unmatched: list[str] = []
    failed: list[str] = []
    for symbol, outcome in resolved.items():
        if isinstance(outcome, Stored | NotListed):
            entries.extend(outcome.entries)
            stored.append(symbol)
        elif isinstance(outcome, NoData):
            entries.extend(outcome.entries)
            no_data.append(symbol)
        elif isinstance(outcome, NoSuchSymbol):
            unmatched.append(symbol)
        else:
            failed.append(symbol)
            errors.append(f"{symbol}: {outcome.reason}")
    written = 0
    try:
        written = await store.put(entries)
    except redis.RedisError as e:
        failed.extend(stored + no_data)
        retryable.extend(stored + no_data)
        errors.append(f"redis: {e}")
        stored.clear()
        no_data.clear()
        counted = breaker_open = False
    log_line = _log_failure(counted, breaker_open=breaker_open) if failed else log.info
    log_line(
        "refresh.batch_%s %s",
        "failed" if failed else "done",
        fields(
            dataset=dataset,
            provider=provider_name,
            symbols=len(requested),
            stored=len(stored),
            no_data=",".join(no_data) or "-",
            unmatched=",".join(unmatched) or "-",
            failed=len(failed),
            kept_newer=len(entries) - written if stored or no_data else 0,
            elapsed_s=round(time.perf_counter() - started, 3),
            **({"error": f'"{errors[0]}"'} if errors else {}),
        ),
    )
    return RefreshReport(
        dataset,
        requested=requested,
        stored=tuple(stored),
        unmatched=tuple(unmatched),
        failed=tuple(failed),
        errors=tuple(errors),
        retryable=tuple(retryable),
        no_data=tuple(no_data),
    )


async def _resolve_listing(
    resolved: dict[str, SymbolOutcome], check_listed: CheckListed
) -> tuple[list[Entry], list[str]]:
    """Turn each `NoData` of a symbol not known to be listed into `NoSuchSymbol` if the quotes
    endpoint does not know it, or `Failed` if that could not be told (in place); the quotes
    fetched to tell (to store with the batch), and the failed symbols worth a retry soon."""
    unsure = [s for s, o in resolved.items() if isinstance(o, NoData) and not o.listed]
    if not unsure:
        return [], []
    try:
        listing = await check_listed(unsure)
    except redis.RedisError as e:
        listing = Listing(frozenset(), frozenset(), error=f"redis: {e}", transient=True)
    retryable: list[str] = []
    for symbol in unsure:
        if symbol in listing.unknown:
            resolved[symbol] = NoSuchSymbol()
        elif symbol not in listing.listed:
            resolved[symbol] = Failed(
                f"the upstream answered no data, and whether it lists the symbol could not be told: "
                f"{listing.error}"
            )
            if listing.transient:
                retryable.append(symbol)
    return list(listing.entries), retryable


def _log_failure(counted: bool, *, breaker_open: bool = False) -> Callable[..., None]:
    """INFO for a failure the upstream's incident log counted (it warned once), else WARNING;
    DEBUG when every failure was the breaker refusing to call (a line per miss would flood)."""
    if breaker_open:
        return log.debug
    return log.info if counted else log.warning
