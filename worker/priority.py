"""Who spends an upstream's allowance first: on-demand fetches, then quotes, then the other
datasets in the order of config.yaml's `priority` list.

A rank is an int, 0 first: `ON_DEMAND` (a reader is waiting), `QUOTES` (one call refreshes a
hundred symbols), then 2, 3, ... for the background datasets. A job declares the rank of the
upstream requests it makes with `spending(rank)`; the rate gate reads it with `current_rank()`
(a `ContextVar`, so that every task a job gathers inherits it without a parameter through each
provider). A request made outside any job (`python -m worker refresh`, a test) is a person
waiting: it ranks as `ON_DEMAND`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

ON_DEMAND = 0
"""The rank of an on-demand fetch (any dataset): a reader waits for it."""

QUOTES = 1
"""The rank of a scheduled quotes refresh."""

TICK_JOB = "tick"
"""The name of the worker's own cron job (`worker.settings`; arq queues it as "tick:<ms>"): it
plans the refreshes, and `python -m worker status` counts it apart, after every dataset."""

BACKGROUND = ("expirations", "chains", "intraday", "history", "indicators")
"""The datasets ranked by config.yaml's `priority`, in their default order: expirations first
(chains read them), chains, then bars and indicators."""

_rank: ContextVar[int] = ContextVar("marketcache_rank", default=ON_DEMAND)


def dataset_ranks(order: Sequence[str] = BACKGROUND) -> dict[str, int]:
    """The rank of each dataset's scheduled refresh: quotes `QUOTES`, then `order` from 2 on
    (a background dataset `order` leaves out comes after it, in `BACKGROUND` order).
    Raises `ValueError` naming a dataset that is not a background one."""
    unknown = [name for name in order if name not in BACKGROUND]
    if unknown:
        raise ValueError(
            f"priority lists {', '.join(map(repr, unknown))}: expected datasets of "
            f"{', '.join(BACKGROUND)} (on-demand fetches and quotes always come first)"
        )
    ranked = list(dict.fromkeys([*order, *BACKGROUND]))
    return {"quotes": QUOTES} | {name: QUOTES + 1 + i for i, name in enumerate(ranked)}


def gate_rank(rank: int) -> int:
    """The rank a job of `rank` spends at the rate gate: background datasets share one
    (`QUOTES + 1`). Their order holds when their jobs start (`worker.admission`); two started
    background jobs then share the allowance, instead of the worse one waiting out its timeout
    while jobs of the better one keep coming."""
    return min(rank, QUOTES + 1)


def current_rank() -> int:
    """The rank of the requests made in this context (`ON_DEMAND` outside any job)."""
    return _rank.get()


@contextmanager
def spending(rank: int) -> Iterator[None]:
    """Requests made inside this block (and in tasks started in it) rank `rank`."""
    token = _rank.set(rank)
    try:
        yield
    finally:
        _rank.reset(token)
