"""Polygon (Massive) payloads: stock snapshots, option-chain snapshots, aggregates and indicators.

Each page is validated whole into the models below (unknown fields ignored); mapping to the
contract models happens only after. Units, per the upstream reference (B.1-B.5): snapshot
`lastQuote.t`, `lastTrade.t` and `updated` are epoch ns, aggregate `t` and indicator `timestamp`
epoch ms (`from_epoch` tells them apart by size anyway). In `lastQuote`, **`P`/`S` are the ask
and `p`/`s` the bid**. `todaysChangePerc` is already in percent, like Tradier's.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, model_validator

from reader.calendar import EXCHANGE_TZ
from reader.models import Bar, OptionContract, Quote
from worker.errors import UpstreamBadPayload
from worker.providers.base import StrikeRange
from worker.providers.wire import (
    WireModel,
    contract_order,
    eastern_midnight,
    from_epoch,
    none_if_zero,
    shape,
    unique_bars,
    validate,
)

PROVIDER = "polygon"
SNAPSHOT_ENDPOINT = "/v2/snapshot/locale/us/markets/stocks/tickers"
INDICES_ENDPOINT = "/v3/snapshot/indices"
OPTION_PREFIX = "O:"

_Model = TypeVar("_Model", bound=BaseModel)
PageT = TypeVar("PageT", bound="Page")
"""A page model, for functions that read pages of any one kind."""


class Page(WireModel):
    """What every paged answer may carry: the URL of the next page (without the key)."""

    next_url: str | None = None


# --- stock snapshot (B.1) -------------------------------------------------------------------


class _DayAgg(WireModel):
    """`day`, `prevDay` or `min`: all zero (or empty) between 03:30 and about 04:00 ET."""

    o: float | None = None
    h: float | None = None
    low: float | None = Field(default=None, alias="l")
    c: float | None = None
    v: float | None = None
    vw: float | None = None


class _LastQuote(WireModel):
    ask: float = Field(alias="P")
    ask_size: float | None = Field(default=None, alias="S")
    bid: float = Field(alias="p")
    bid_size: float | None = Field(default=None, alias="s")
    sip_ns: int | None = Field(default=None, alias="t")


class _LastTrade(WireModel):
    price: float = Field(alias="p")
    size: float | None = Field(default=None, alias="s")
    sip_ns: int | None = Field(default=None, alias="t")


class WireTicker(WireModel):
    """One element of `tickers`; an unknown ticker may come inline with only `error` set."""

    ticker: str
    error: str | None = None
    todays_change: float | None = Field(default=None, alias="todaysChange")
    todays_change_pct: float | None = Field(default=None, alias="todaysChangePerc")
    day: _DayAgg | None = None
    prev_day: _DayAgg | None = Field(default=None, alias="prevDay")
    minute: _DayAgg | None = Field(default=None, alias="min")
    last_quote: _LastQuote | None = Field(default=None, alias="lastQuote")
    last_trade: _LastTrade | None = Field(default=None, alias="lastTrade")


class SnapshotPage(WireModel):
    tickers: list[WireTicker] | None = None


# --- indices snapshot ----------------------------------------------------------------------


class _IndexSession(WireModel):
    change: float | None = None
    change_percent: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    previous_close: float | None = None


class WireIndex(WireModel):
    """One element of `/v3/snapshot/indices` `results`; an unknown ticker comes with `error` set."""

    ticker: str
    error: str | None = None
    name: str | None = None
    value: float | None = None
    session: _IndexSession | None = None
    last_updated: int | None = None  # epoch ns


class IndicesPage(Page):
    results: list[WireIndex] | None = None


# --- option-chain snapshot (B.5) ------------------------------------------------------------


class _Details(WireModel):
    contract_type: str
    expiration_date: date
    strike_price: float
    ticker: str


class _OptionDay(WireModel):
    change: float | None = None
    change_percent: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    previous_close: float | None = None
    volume: float | None = None


class _OptionQuote(WireModel):
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    last_updated: int | None = None  # epoch ns


class _OptionTrade(WireModel):
    price: float | None = None
    size: float | None = None
    sip_timestamp: int | None = None  # epoch ns


class _Greeks(WireModel):
    delta: float | None = None
    gamma: float | None = None
    theta: float | None = None
    vega: float | None = None


class _Underlying(WireModel):
    """`underlying_asset`: a stock's `price`, or an index's `value` (and only the ticker on lower plans)."""

    price: float | None = None
    value: float | None = None


class WireOption(WireModel):
    """One element of `results`. Greeks and IV are absent for some contracts (deep ITM), and
    `last_trade` when the plan has no trades."""

    details: _Details
    day: _OptionDay | None = None
    last_quote: _OptionQuote | None = None
    last_trade: _OptionTrade | None = None
    greeks: _Greeks | None = None
    implied_volatility: float | None = None
    open_interest: int | None = None
    underlying_asset: _Underlying | None = None


class ChainPage(Page):
    results: list[WireOption] | None = None


class ContractPage(WireModel):
    """`/v3/snapshot/options/{underlying}/{contract}`: one contract as `results`."""

    results: WireOption | None = None


# --- aggregates (B.3) and indicators (B.4) --------------------------------------------------


class _WireBar(WireModel):
    """One bar; an index's bars (`I:SPX`) have no `v`, `vw` or `n`."""

    o: float
    h: float
    low: float = Field(alias="l")
    c: float
    v: float | None = None
    vw: float | None = None
    t: int  # start of the bar, epoch ms


class AggsPage(Page):
    results_count: int | None = Field(default=None, alias="resultsCount")
    results: list[_WireBar] | None = None

    @model_validator(mode="after")
    def _results_when_counted(self) -> AggsPage:
        if self.results is None and self.results_count:
            raise ValueError(f"resultsCount is {self.results_count} but there is no results list")
        return self


class WireValue(WireModel):
    timestamp: int  # epoch ms: start of the last bar used
    value: float
    signal: float | None = None
    histogram: float | None = None


class _IndicatorResults(WireModel):
    values: list[WireValue] | None = None


class IndicatorPage(Page):
    results: _IndicatorResults  # required: a page without it is not an answer

    def latest(self) -> WireValue | None:
        """The newest value (the request asks for `order=desc`), None when there is none."""
        values = self.results.values
        return values[0] if values else None


# --- parsing and mapping --------------------------------------------------------------------


def parse_page(kind: type[_Model], payload: Any, endpoint: str) -> _Model:
    """One page validated as `kind`, or `UpstreamBadPayload` naming the field and its value."""
    if not isinstance(payload, dict):
        raise UpstreamBadPayload(PROVIDER, endpoint, f"expected an object, got {shape(payload)}")
    return validate(kind, payload, root="", provider=PROVIDER, endpoint=endpoint)


def parse_snapshot(payload: Any, requested: list[str]) -> tuple[list[WireTicker], list[str]]:
    """The tickers of a snapshot answer and the requested symbols it has no data for (absent, or
    inline with an `error` such as NOT_FOUND), in the order asked."""
    page = parse_page(SnapshotPage, payload, SNAPSHOT_ENDPOINT)
    found = [t for t in page.tickers or () if t.error is None]
    known = {t.ticker.upper() for t in found}
    unmatched = [s for s in requested if s.upper() not in known]
    return found, unmatched


def to_quote(
    wire: WireTicker,
    symbol: str | None = None,
    *,
    source: str,
    fetched_at: datetime,
    fresh_until: datetime,
) -> Quote:
    """A snapshot ticker as the `Quote` of `symbol` (the reader form; default the ticker in upper
    case) with Tradier's field names; zeros of an empty day are None."""
    day = wire.day or _DayAgg()
    minute = wire.minute or _DayAgg()
    last_quote, last_trade = wire.last_quote, wire.last_trade
    last = (
        none_if_zero(last_trade.price if last_trade else None)
        or none_if_zero(minute.c)
        or none_if_zero(day.c)
    )
    quote_at = _epoch(last_quote.sip_ns if last_quote else None)
    return Quote(
        symbol=symbol or wire.ticker.upper(),
        last=last,
        change=wire.todays_change,
        change_percentage=wire.todays_change_pct,
        volume=_int(day.v),
        last_volume=_int(last_trade.size if last_trade else None),
        trade_date=_epoch(last_trade.sip_ns if last_trade else None),
        open=none_if_zero(day.o),
        high=none_if_zero(day.h),
        low=none_if_zero(day.low),
        close=None,
        prevclose=wire.prev_day.c if wire.prev_day else None,
        bid=last_quote.bid if last_quote else None,
        bidsize=_int(last_quote.bid_size if last_quote else None),
        bid_date=quote_at,
        ask=last_quote.ask if last_quote else None,
        asksize=_int(last_quote.ask_size if last_quote else None),
        ask_date=quote_at,
        source=source,
        fetched_at=fetched_at,
        fresh_until=fresh_until,
    )


def index_quote(
    wire: WireIndex, symbol: str, *, source: str, fetched_at: datetime, fresh_until: datetime
) -> Quote:
    """An index of the indices snapshot as the `Quote` of `symbol` (reader form): `value` is the
    last, no bid, ask or volume (an index has none)."""
    session = wire.session or _IndexSession()
    return Quote(
        symbol=symbol,
        description=wire.name,
        type="index",
        last=wire.value,
        change=session.change,
        change_percentage=session.change_percent,
        trade_date=_epoch(wire.last_updated),
        open=session.open,
        high=session.high,
        low=session.low,
        prevclose=session.previous_close,
        source=source,
        fetched_at=fetched_at,
        fresh_until=fresh_until,
    )


def option_quote(
    option: WireOption,
    symbol: str,
    underlying: str,
    *,
    source: str,
    fetched_at: datetime,
    fresh_until: datetime,
) -> Quote:
    """One contract of the options snapshot as the `Quote` of `symbol` (reader form, OCC) with
    Tradier's field names; `underlying` is the reader form of its underlying."""
    details, day = option.details, option.day or _OptionDay()
    quote = option.last_quote or _OptionQuote()
    trade = option.last_trade or _OptionTrade()
    greeks = option.greeks or _Greeks()
    return Quote(
        symbol=symbol,
        type="option",
        last=trade.price if trade.price is not None else day.close,
        change=day.change,
        change_percentage=day.change_percent,
        volume=_int(day.volume),
        last_volume=_int(trade.size),
        trade_date=_epoch(trade.sip_timestamp),
        open=day.open,
        high=day.high,
        low=day.low,
        prevclose=day.previous_close,
        bid=quote.bid,
        bidsize=_int(quote.bid_size),
        bid_date=_epoch(quote.last_updated),
        ask=quote.ask,
        asksize=_int(quote.ask_size),
        ask_date=_epoch(quote.last_updated),
        underlying=underlying,
        strike=details.strike_price,
        expiration_date=details.expiration_date,
        option_type=details.contract_type if details.contract_type in ("call", "put") else None,
        open_interest=option.open_interest,
        mid_iv=none_if_zero(option.implied_volatility),
        delta=greeks.delta,
        gamma=greeks.gamma,
        theta=greeks.theta,
        vega=greeks.vega,
        source=source,
        fetched_at=fetched_at,
        fresh_until=fresh_until,
    )


def chain_contracts(
    options: list[WireOption], expiration: date, strikes: StrikeRange | None
) -> tuple[list[OptionContract], float | None]:
    """The calls and puts expiring on `expiration` (strikes in `strikes`), sorted, and the first
    underlying price seen. Contracts of type `other` are skipped."""
    contracts: list[OptionContract] = []
    underlying_price: float | None = None
    for option in options:
        if underlying_price is None and option.underlying_asset is not None:
            asset = option.underlying_asset
            underlying_price = asset.price if asset.price is not None else asset.value
        details = option.details
        if details.contract_type not in ("call", "put") or details.expiration_date != expiration:
            continue
        if strikes is not None and details.strike_price not in strikes:
            continue
        contracts.append(_contract(option))
    return sorted(contracts, key=contract_order), underlying_price


def aggs_bars(pages: list[AggsPage], *, daily: bool = False) -> list[Bar] | None:
    """The bars of every page, oldest first, one per start; None for none (`resultsCount: 0`).
    `daily` bars start at midnight New York time of their day (an index's are stamped 01:00)."""

    def start(t: int) -> datetime:
        at = from_epoch(t)
        return eastern_midnight(at.astimezone(EXCHANGE_TZ).date()) if daily else at

    bars = [
        Bar(start=start(b.t), open=b.o, high=b.h, low=b.low, close=b.c, volume=b.v, vwap=b.vw)
        for page in pages
        for b in page.results or ()
    ]
    return unique_bars(bars)


def _contract(option: WireOption) -> OptionContract:
    details, day = option.details, option.day or _OptionDay()
    greeks = option.greeks or _Greeks()
    quote = option.last_quote or _OptionQuote()
    last = option.last_trade.price if option.last_trade is not None else None
    ticker = details.ticker.removeprefix(OPTION_PREFIX)
    kind: Literal["call", "put"] = (
        "call" if details.contract_type == "call" else "put"
    )  # others skipped above
    return OptionContract(
        symbol=ticker,
        option_type=kind,
        strike=details.strike_price,
        bid=quote.bid,
        ask=quote.ask,
        last=last if last is not None else day.close,
        change=day.change,
        volume=_int(day.volume),
        open_interest=option.open_interest,
        bid_iv=None,
        mid_iv=none_if_zero(option.implied_volatility),
        ask_iv=None,
        delta=greeks.delta,
        gamma=greeks.gamma,
        theta=greeks.theta,
        vega=greeks.vega,
        rho=None,  # Polygon sends no rho
    )


def _epoch(value: int | None) -> datetime | None:
    return from_epoch(value) if value else None


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)
