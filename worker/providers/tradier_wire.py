"""Tradier's expirations, option-chain, daily-history and time-and-sales payloads, parsed whole.

Wire quirks handled here (see the upstream reference, A.2-A.4): one element comes as a bare
object instead of a list, "no data" is a `null` (or `"null"`) wrapper, expirations come as bare
dates or as objects depending on the flags, greeks may be null or absent, an IV of 0.0 means
"none", `greeks.updated_at` is a `"YYYY-MM-DD HH:MM:SS"` string read as UTC, and time-and-sales
bars carry epoch seconds beside a New York wall-clock `time`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, model_validator

from reader.models import Bar, OptionContract
from worker.errors import UpstreamBadPayload
from worker.providers.base import StrikeRange
from worker.providers.wire import (
    WireModel,
    as_list,
    contract_order,
    eastern_midnight,
    eastern_to_utc,
    from_epoch,
    is_null,
    none_if_zero,
    shape,
    unique_bars,
    validate,
)

PROVIDER = "tradier"
EXPIRATIONS_ENDPOINT = "/v1/markets/options/expirations"
CHAINS_ENDPOINT = "/v1/markets/options/chains"
HISTORY_ENDPOINT = "/v1/markets/history"
TIMESALES_ENDPOINT = "/v1/markets/timesales"

T = TypeVar("T")


def _assume_utc(value: datetime) -> datetime:
    # The reference: the zone of `updated_at` is not stated; OpenBB reads it as UTC, so do we.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class WireGreeks(WireModel):
    """`greeks` of one contract (ORATS, refreshed about hourly)."""

    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None
    rho: float | None = None
    bid_iv: float | None = None
    mid_iv: float | None = None
    ask_iv: float | None = None
    smv_vol: float | None = None
    updated_at: Annotated[datetime, AfterValidator(_assume_utc)] | None = None


class _WireOption(WireModel):
    """One element of `options.option`."""

    symbol: str
    option_type: Literal["call", "put"]
    strike: float
    expiration_date: date
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    change: float | None = None
    volume: int | None = None
    open_interest: int | None = None
    greeks: WireGreeks | None = None


class _WireExpiration(WireModel):
    """One element of `expirations.expiration` (the shape when strikes or types are asked for)."""

    date: date


class _WireDay(WireModel):
    """One element of `history.day`."""

    date: date
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None  # 0 for an index


class _WireSale(WireModel):
    """One element of `series.data`; open/high/low/close fall back to `price` when absent."""

    time: datetime | None = None
    timestamp: int | None = None
    price: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: float
    vwap: float | None = None

    @model_validator(mode="after")
    def _complete(self) -> _WireSale:
        if self.timestamp is None and self.time is None:
            raise ValueError("neither 'timestamp' nor 'time' is given")
        if self.price is None and None in (self.open, self.high, self.low, self.close):
            raise ValueError("open/high/low/close missing and no 'price' to stand for them")
        return self

    def bar(self) -> Bar:
        if self.timestamp is not None:
            start = from_epoch(self.timestamp)
        elif self.time is not None:
            start = eastern_to_utc(self.time)
        else:  # refused by _complete
            raise ValueError("a sale without a time")
        open_, high, low, close = (
            self.price if v is None else v for v in (self.open, self.high, self.low, self.close)
        )
        if open_ is None or high is None or low is None or close is None:  # refused by _complete
            raise ValueError("a sale without a price")
        return Bar(
            start=start, open=open_, high=high, low=low, close=close, volume=self.volume, vwap=self.vwap
        )


@dataclass(frozen=True)
class ChainRows:
    """The contracts of one chain, sorted, and when their greeks were last computed (UTC)."""

    contracts: tuple[OptionContract, ...]
    greeks_updated_at: datetime | None


def parse_expirations(payload: Any) -> list[date] | None:
    """Expiration dates of `/v1/markets/options/expirations`, ascending and unique; None for none."""
    body = _unwrap(payload, "expirations", EXPIRATIONS_ENDPOINT)
    if body is None:
        return None
    if "date" in body:
        dates = _validate(list[date], as_list(body["date"]), "expirations.date", EXPIRATIONS_ENDPOINT)
    elif "expiration" in body:
        items = _validate(
            list[_WireExpiration], as_list(body["expiration"]), "expirations.expiration", EXPIRATIONS_ENDPOINT
        )
        dates = [item.date for item in items]
    else:
        raise _bad(EXPIRATIONS_ENDPOINT, f"expirations: expected 'date' or 'expiration', got {shape(body)}")
    return sorted(set(dates)) or None


def parse_chain(payload: Any, expiration: date, strikes: StrikeRange | None = None) -> ChainRows | None:
    """The contracts of `/v1/markets/options/chains` expiring on `expiration` (other roots may list
    other dates), with strikes in `strikes` if given; None if none are left."""
    body = _unwrap(payload, "options", CHAINS_ENDPOINT)
    if body is None:
        return None
    options = _validate(list[_WireOption], as_list(body.get("option")), "options.option", CHAINS_ENDPOINT)
    kept = [
        o for o in options if o.expiration_date == expiration and (strikes is None or o.strike in strikes)
    ]
    if not kept:
        return None
    updated = [o.greeks.updated_at for o in kept if o.greeks is not None and o.greeks.updated_at is not None]
    contracts = sorted((_contract(o) for o in kept), key=contract_order)
    return ChainRows(contracts=tuple(contracts), greeks_updated_at=max(updated, default=None))


def parse_daily_history(payload: Any) -> list[Bar] | None:
    """Daily bars of `/v1/markets/history`, oldest first, each starting at midnight New York time."""
    body = _unwrap(payload, "history", HISTORY_ENDPOINT)
    if body is None:
        return None
    days = _validate(list[_WireDay], as_list(body.get("day")), "history.day", HISTORY_ENDPOINT)
    bars = [
        Bar(
            start=eastern_midnight(d.date),
            open=d.open,
            high=d.high,
            low=d.low,
            close=d.close,
            volume=d.volume,
        )
        for d in days
    ]
    return unique_bars(bars)


def parse_timesales(payload: Any) -> list[Bar] | None:
    """Intraday bars of `/v1/markets/timesales`, oldest first; start from `timestamp` (epoch s),
    else from `time` read as New York wall-clock time."""
    body = _unwrap(payload, "series", TIMESALES_ENDPOINT)
    if body is None:
        return None
    sales = _validate(list[_WireSale], as_list(body.get("data")), "series.data", TIMESALES_ENDPOINT)
    return unique_bars([s.bar() for s in sales])


def _contract(wire: _WireOption) -> OptionContract:
    greeks = wire.greeks or WireGreeks()
    mid_iv = none_if_zero(greeks.mid_iv)
    if mid_iv is None and greeks.smv_vol is not None and greeks.smv_vol > 0:
        mid_iv = greeks.smv_vol
    return OptionContract(
        symbol=wire.symbol.upper(),
        option_type=wire.option_type,
        strike=wire.strike,
        bid=wire.bid,
        ask=wire.ask,
        last=wire.last,
        change=wire.change,
        volume=wire.volume,
        open_interest=wire.open_interest,
        bid_iv=none_if_zero(greeks.bid_iv),
        mid_iv=mid_iv,
        ask_iv=none_if_zero(greeks.ask_iv),
        delta=greeks.delta,
        gamma=greeks.gamma,
        theta=greeks.theta,
        vega=greeks.vega,
        rho=greeks.rho,
    )


def _unwrap(payload: Any, key: str, endpoint: str) -> dict[str, Any] | None:
    """`payload[key]` as an object, or None for a `null`/`"null"` wrapper."""
    if not isinstance(payload, dict) or key not in payload:
        raise _bad(endpoint, f"expected an object with {key!r}, got {shape(payload)}")
    body = payload[key]
    if is_null(body):
        return None
    if not isinstance(body, dict):
        raise _bad(endpoint, f"{key}: expected an object, got {shape(body)}")
    return body


def _validate(kind: type[T], data: Any, root: str, endpoint: str) -> T:
    return validate(kind, data, root=root, provider=PROVIDER, endpoint=endpoint)


def _bad(endpoint: str, detail: str) -> UpstreamBadPayload:
    return UpstreamBadPayload(PROVIDER, endpoint, detail)
