"""JSON models of what the worker stores and the reader returns.

Every cached item carries the envelope of `CachedItem`: which provider it came from, when it was
fetched, and until when it counts as fresh. Timestamps are aware datetimes in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    model_validator,
)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An aware datetime, converted to UTC; a naive one is refused."""

MAX_PRICE = 1e9
"""No share, contract or index has come near a billion: a price above it is a garbled value."""

Price = Annotated[float, Field(ge=0, le=MAX_PRICE)]
"""Dollars per share (or index points): finite, not negative, at most `MAX_PRICE`."""

Count = Annotated[int, Field(ge=0)]
"""Shares, contracts or lots: not negative."""

TICK = 0.01
"""The largest amount a bid may exceed its ask by (a locked or briefly crossed market): one cent."""

# Every float of every model below must be finite: pydantic would store NaN as `null`, which no
# model reads back (`allow_inf_nan=False` also refuses "NaN" and "Infinity" strings).
_FINITE = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


def crossed(bid: float | None, ask: float | None) -> bool:
    """True when both sides are quoted (above 0) and the bid exceeds the ask by more than `TICK`."""
    return bid is not None and ask is not None and bid > 0 and ask > 0 and bid - ask > TICK + 1e-9


def stamp(value: datetime) -> str:
    """`value` (aware) as fixed-width ISO 8601 in UTC, microseconds included, so that two stamps
    compare as strings in time order (the store's newer-wins write relies on it)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CachedItem(BaseModel):
    """The envelope of every cached item, and its freshness as seen at read time."""

    # Unknown fields are ignored so that a reader keeps working when a newer worker adds some.
    model_config = _FINITE

    source: str
    fetched_at: UtcDatetime
    fresh_until: UtcDatetime

    _read_at: datetime | None = PrivateAttr(default=None)

    @field_serializer("fetched_at", when_used="json")
    def _fixed_width(self, value: datetime) -> str:
        return stamp(value)

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
        # Pydantic's own storage of private attributes: `self._read_at` reaches it through
        # `BaseModel.__getattr__` after a failed lookup (about 5 us, paid per item of a batch).
        private = self.__pydantic_private__
        read_at: datetime | None = private.get("_read_at") if private else None
        return read_at or self.fetched_at

    @property
    def age_s(self) -> float:
        """Seconds between the fetch from upstream and the read."""
        return (self.read_at - self.fetched_at).total_seconds()

    @property
    def stale(self) -> bool:
        """True when the item was read after `fresh_until` (it is still served, flagged)."""
        return self.read_at > self.fresh_until

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict for tools and people: rows (contracts, bars) as objects with field
        names, None values left out, and the read-time `age_s` and `stale` added."""
        data = self.model_dump(mode="json", exclude_none=True)
        for name, value in self:
            if isinstance(value, tuple) and value and hasattr(value[0], "_fields"):
                names = value[0]._fields
                data[name] = [
                    {k: v for k, v in zip(names, row, strict=False) if v is not None} for row in data[name]
                ]
        data["age_s"] = round(self.age_s, 3)
        data["stale"] = self.stale
        return data


def mark_read(item: CachedItem, read_at: datetime) -> None:
    """Record on `item` when the reader read it (`read_at`, aware, from the reader's clock): what its
    `read_at`, `age_s` and `stale` are judged by. Writes pydantic's storage of private attributes
    directly: `item._read_at = read_at` goes through `BaseModel.__setattr__` (a few times slower,
    paid per item of a `quotes()` batch)."""
    private = item.__pydantic_private__
    if private is None:  # not built by pydantic's validation or `model_construct`
        item._read_at = read_at
    else:
        private["_read_at"] = read_at


class Quote(CachedItem):
    """A quote with Tradier's field names and units; None where the upstream has no value.

    `change_percentage` is in percent (1.5 means 1.5 %). `bidsize`/`asksize` are in the
    upstream's units (hundreds of shares on Tradier). `trade_date`, `bid_date` and `ask_date`
    are None when the upstream reports no trade or quote (it sends 0). Prices and sizes are
    finite and not negative; a bid above the ask by more than `TICK` is refused.

    An index (`type` "index") has no bid, ask or volume: they are None (or 0 volume). A quote of
    an OCC option symbol (`type` "option") also carries the contract: `underlying` (reader form),
    `strike` (dollars), `expiration_date`, `option_type`, `open_interest`, `contract_size`,
    `root_symbol`, and when the upstream sends them its greeks and IVs (fractions) as in
    `OptionContract`, `greeks_updated_at` when they were computed. These are None on other quotes.
    """

    symbol: str
    description: str | None = None
    exch: str | None = None
    type: str | None = None
    last: Price | None = None
    change: float | None = None
    change_percentage: float | None = None
    volume: Count | None = None
    average_volume: Count | None = None
    last_volume: Count | None = None
    trade_date: UtcDatetime | None = None
    open: Price | None = None
    high: Price | None = None
    low: Price | None = None
    close: Price | None = None
    prevclose: Price | None = None
    week_52_high: Price | None = None
    week_52_low: Price | None = None
    bid: Price | None = None
    bidsize: Count | None = None
    bidexch: str | None = None
    bid_date: UtcDatetime | None = None
    ask: Price | None = None
    asksize: Count | None = None
    askexch: str | None = None
    ask_date: UtcDatetime | None = None
    root_symbols: str | None = None
    underlying: str | None = None
    strike: Annotated[float, Field(gt=0)] | None = None
    expiration_date: date | None = None
    option_type: Literal["call", "put"] | None = None
    open_interest: Count | None = None
    contract_size: Count | None = None
    root_symbol: str | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    rho: float | None = None
    bid_iv: Annotated[float, Field(ge=0)] | None = None
    mid_iv: Annotated[float, Field(ge=0)] | None = None
    ask_iv: Annotated[float, Field(ge=0)] | None = None
    greeks_updated_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _not_crossed(self) -> Quote:
        if crossed(self.bid, self.ask):
            raise ValueError(f"bid={self.bid!r} is above ask={self.ask!r} by more than a tick ({TICK})")
        return self

    @property
    def reference_price(self) -> float | None:
        """The price to centre an option chain on: `last`, else the midpoint of `bid` and `ask` when
        both are quoted, else `prevclose`; None when none of them is above 0 (never 0)."""
        if self.last:
            return self.last
        if self.bid and self.ask:
            return (self.bid + self.ask) / 2
        return self.prevclose or None


BarInterval = Literal["1d", "1m", "5m", "15m"]
"""Bar lengths the cache knows: daily, and intraday minutes."""

Side = Literal["calls", "puts", "both"]
"""Which contracts of a chain to return."""

Phase = Literal["pre", "regular", "post", "closed"]
"""Where the exchange is in its day: pre-market, regular session, post-market, or closed."""


class OptionContract(NamedTuple):
    """One contract of a chain. Prices in dollars per share; IVs as fractions (0.25 = 25 %).

    A named tuple: stored as a JSON array in field order (compact, and parsed by pydantic's core
    without a Python call per contract), read as attributes (`c.delta`); `c._asdict()` gives a
    dict. The field order is part of the stored format: append new fields at the end, with a
    default, or bump `reader.keys.PREFIX`.

    Greeks are per share: `theta` per calendar day, `vega` and `rho` per 1 point of volatility or
    rate. Fields an upstream does not send (Polygon has no `rho`, no bid/ask IV) are None, and so
    are Tradier's zero IVs.
    """

    symbol: str
    option_type: Literal["call", "put"]
    strike: Annotated[float, Field(gt=0)]
    bid: Price | None = None
    ask: Price | None = None
    last: Price | None = None
    change: float | None = None
    volume: Count | None = None
    open_interest: Count | None = None
    bid_iv: Annotated[float, Field(ge=0)] | None = None
    mid_iv: Annotated[float, Field(ge=0)] | None = None
    ask_iv: Annotated[float, Field(ge=0)] | None = None
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    rho: float | None = None


class OptionChain(CachedItem):
    """The contracts of one underlying for one expiration, sorted by strike, calls before puts.

    `underlying_price` is the underlying's price the chain was cut around: the upstream's own
    (Polygon sends it with the chain; `underlying_price_at` is then None, meaning as of
    `fetched_at`), or, for an upstream that sends none (Tradier), the reference price of the
    underlying's cached quote (`Quote.reference_price`), with that quote's `fetched_at` as
    `underlying_price_at`. None when neither is known.
    """

    symbol: str
    expiration: date
    underlying_price: Price | None = None
    underlying_price_at: UtcDatetime | None = None
    greeks_updated_at: UtcDatetime | None = None
    contracts: tuple[OptionContract, ...] = ()

    def priced_by(self, quote: Quote | None) -> OptionChain:
        """This chain with the underlying price of `quote` (its `reference_price`, as of its
        `fetched_at`) when the chain has none (None or 0); else this chain itself."""
        price = None if quote is None else quote.reference_price
        if self.underlying_price or quote is None or price is None:
            return self
        copy = self.model_copy(update={"underlying_price": price, "underlying_price_at": quote.fetched_at})
        copy._read_at = self._read_at
        return copy

    @model_validator(mode="after")
    def _not_crossed(self) -> OptionChain:
        for contract in self.contracts:  # about 0.1 us a contract; reads pay it too (one truth)
            if crossed(contract.bid, contract.ask):
                raise ValueError(
                    f"contract {contract.symbol}: bid={contract.bid!r} is above ask={contract.ask!r} "
                    f"by more than a tick ({TICK})"
                )
        return self

    @property
    def calls(self) -> tuple[OptionContract, ...]:
        return tuple(c for c in self.contracts if c.option_type == "call")

    @property
    def puts(self) -> tuple[OptionContract, ...]:
        return tuple(c for c in self.contracts if c.option_type == "put")

    def only(self, side: Side) -> OptionChain:
        """This chain with the contracts of `side` only ("calls", "puts" or "both")."""
        if side == "both":
            return self
        if side not in ("calls", "puts"):
            raise ValueError(f"side={side!r}: expected 'calls', 'puts' or 'both'")
        chosen = self.calls if side == "calls" else self.puts
        copy = self.model_copy(update={"contracts": chosen})
        copy._read_at = self._read_at
        return copy


class Expirations(CachedItem):
    """Every expiration date the upstream lists for an underlying, ascending."""

    symbol: str
    dates: tuple[date, ...]


class ChainIndex(CachedItem):
    """The expirations of an underlying whose chains the worker keeps in the cache, ascending."""

    symbol: str
    expirations: tuple[date, ...]


class Bar(NamedTuple):
    """One price bar; `start` is when it begins (midnight ET of the session for daily bars).

    A named tuple, stored as a JSON array in field order, like `OptionContract`. `volume` is None
    when the upstream reports none (an index: Polygon's index bars carry no volume); such a bar
    is valid. `vwap` is None when not sent.
    """

    start: UtcDatetime
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Annotated[float, Field(ge=0)] | None
    vwap: Price | None = None


class PriceHistory(CachedItem):
    """Bars of one symbol at one interval, oldest first. The last bar may still be forming."""

    symbol: str
    interval: BarInterval
    bars: tuple[Bar, ...]


class Macd(BaseModel):
    """MACD(fast, slow, signal): `macd` = EMA(fast) - EMA(slow), `signal` = EMA(signal) of it."""

    model_config = _FINITE

    fast: int
    slow: int
    signal_window: int
    macd: float
    signal: float
    histogram: float


class Indicators(CachedItem):
    """Latest technical indicators of one symbol, on the close of `interval` bars.

    `as_of` is the start of the last bar used. Keys of `sma`, `ema` and `rsi` are windows in
    bars; a window longer than the history is absent.
    """

    symbol: str
    interval: BarInterval
    as_of: UtcDatetime
    close: float | None = None
    sma: dict[int, float] = Field(default_factory=dict)
    ema: dict[int, float] = Field(default_factory=dict)
    rsi: dict[int, float] = Field(default_factory=dict)
    macd: Macd | None = None


CalendarSource = Literal["worker", "installed", "installed-redis-unreadable"]
"""Where a `MarketStatus` took the exchange and its unscheduled closures from: the calendar the
worker published (`PublishedCalendar`); the installed exchange calendar alone, because no worker
has published one to this Redis; or the installed one alone because Redis could not be read."""


class PublishedCalendar(BaseModel):
    """The worker's calendar adjustments, published to `reader.keys.CALENDAR` at start, after each
    config reload and after Redis comes back, so that readers tell the phase the worker schedules by.

    `exchange` is the exchange-calendars code (config `schedule.exchange`, "XNYS"); `extra_closed`
    the unscheduled closures the installed calendar does not know (config `schedule.extra_closed`,
    exchange-local dates, ascending); `published_at` when the worker wrote it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    exchange: str
    extra_closed: tuple[date, ...] = ()
    published_at: UtcDatetime


class MarketStatus(BaseModel):
    """Where the exchange is at `at`, from its calendar. Not cached: computed on each ask.

    `session` is the exchange-local date of today's session (None on a closed day, including an
    unscheduled closure); `open` and `close` its hours. `next_open` and `next_close` are the first
    open and close after `at`; `phase_until` is when `phase` ends (the next pre-market start,
    open, close or after-hours end, whichever comes first): until then, everything here but `at`
    holds. `calendar` says whose calendar it is (`CalendarSource`).
    """

    model_config = ConfigDict(frozen=True)

    exchange: str
    at: UtcDatetime
    phase: Phase
    session: date | None
    open: UtcDatetime | None
    close: UtcDatetime | None
    early_close: bool
    next_open: UtcDatetime
    next_close: UtcDatetime
    phase_until: UtcDatetime
    calendar: CalendarSource = "installed"
