"""JSON models of what the worker stores and the reader returns.

Every cached item carries the envelope of `CachedItem`: which provider it came from, when it was
fetched, and until when it counts as fresh. Timestamps are aware datetimes in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, PrivateAttr


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An aware datetime, converted to UTC; a naive one is refused."""


class CachedItem(BaseModel):
    """The envelope of every cached item, and its freshness as seen at read time."""

    # Unknown fields are ignored so that a reader keeps working when a newer worker adds some.
    model_config = ConfigDict(frozen=True, extra="ignore")

    source: str
    fetched_at: UtcDatetime
    fresh_until: UtcDatetime

    _read_at: datetime | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        """Equal when the data is: when each was read does not matter."""
        if not isinstance(other, CachedItem):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    @property
    def read_at(self) -> datetime:
        """When the reader read this item (its clock); `fetched_at` for an item not read from Redis."""
        return self._read_at or self.fetched_at

    @property
    def age_s(self) -> float:
        """Seconds between the fetch from upstream and the read."""
        return (self.read_at - self.fetched_at).total_seconds()

    @property
    def stale(self) -> bool:
        """True when the item was read after `fresh_until` (it is still served, flagged)."""
        return self.read_at > self.fresh_until


class Quote(CachedItem):
    """A quote with Tradier's field names and units; None where the upstream has no value.

    `change_percentage` is in percent (1.5 means 1.5 %). `bidsize`/`asksize` are in the
    upstream's units (hundreds of shares on Tradier). `trade_date`, `bid_date` and `ask_date`
    are None when the upstream reports no trade or quote (it sends 0).
    """

    symbol: str
    description: str | None = None
    exch: str | None = None
    type: str | None = None
    last: float | None = None
    change: float | None = None
    change_percentage: float | None = None
    volume: int | None = None
    average_volume: int | None = None
    last_volume: int | None = None
    trade_date: UtcDatetime | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    prevclose: float | None = None
    week_52_high: float | None = None
    week_52_low: float | None = None
    bid: float | None = None
    bidsize: int | None = None
    bidexch: str | None = None
    bid_date: UtcDatetime | None = None
    ask: float | None = None
    asksize: int | None = None
    askexch: str | None = None
    ask_date: UtcDatetime | None = None
    root_symbols: str | None = None
