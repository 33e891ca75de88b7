"""Which parts of an underlying's options the cache keeps: pure functions of the config and the day."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from worker.dataset_config import ChainSelection
from worker.providers.base import StrikeRange


def select_expirations(listed: Iterable[date], today: date, selection: ChainSelection) -> tuple[date, ...]:
    """The first `selection.expirations` listed dates from `today` (included) to `max_days` ahead."""
    last = today + timedelta(days=selection.max_days)
    upcoming = sorted(d for d in set(listed) if today <= d <= last)
    return tuple(upcoming[: selection.expirations])


def strike_range(price: float | None, selection: ChainSelection) -> StrikeRange | None:
    """Strikes within `strike_window_pct` % of `price`; None (all strikes) without a window or a price."""
    pct = selection.strike_window_pct
    if pct is None or price is None or price <= 0:
        return None
    return StrikeRange(low=price * (1 - pct / 100), high=price * (1 + pct / 100))
