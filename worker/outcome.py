"""What fetching one symbol of one per-symbol dataset came to: one explicit outcome per symbol.

A fetch (`worker.datasets.DatasetFetcher`) returns one of these, or raises an `UpstreamError`
(which `worker.refresh.refresh_symbols` turns into `Failed`). The refresh reads them to decide
what to store and what to report; retries, the on-demand negative cache and the answer a reader
gets follow from the report:

- `Stored`: data to store.
- `NoData`: the upstream answered with nothing of this kind for the symbol (no bars yet for a new
  listing, no intraday bars on a day without a session, no listed options). `entries` are the
  empty items that remember it (a `PriceHistory` without bars, `Expirations` without dates, a
  `ChainIndex` without expirations), fresh until the dataset's next scheduled refresh, so neither
  a restart nor a reader's miss calls the upstream again for it before then. The upstreams answer
  an unknown symbol the same way, so a `NoData` is stored only for a symbol known to be listed
  (`listed`, else the refresh asks the quotes endpoint: `worker.listing`); one that is not becomes
  `NoSuchSymbol`, one whose listing cannot be told (the quotes call failed) `Failed`.
- `NoSuchSymbol`: the upstream does not know the symbol (negative-cached on demand).
- `NotListed`: an on-demand chain of an expiration the underlying does not list; `entries` are the
  expirations fetched on the way (stored, so the next ask costs no call).
- `Failed`: nothing stored; `reason` says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.store import Entry


@dataclass(frozen=True)
class Stored:
    """Data to store."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class NoData:
    """The upstream has nothing of this dataset for the symbol now; `entries` remember it.
    `listed`: the symbol is already known to be listed (no check needed)."""

    entries: tuple[Entry, ...]
    listed: bool = False


@dataclass(frozen=True)
class NoSuchSymbol:
    """The upstream does not know the symbol (its quotes endpoint says so)."""


@dataclass(frozen=True)
class NotListed:
    """The expiration asked for is not listed; `entries` (the listed expirations) are stored."""

    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Failed:
    """Nothing stored, for `reason`."""

    reason: str


SymbolOutcome = Stored | NoData | NoSuchSymbol | NotListed | Failed
"""What fetching one symbol of one dataset came to."""
