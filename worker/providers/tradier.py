"""Tradier's market-data API: quotes, option expirations and chains, daily and intraday bars.

Quotes are parsed here; the other payloads in `worker.providers.tradier_wire`.

Wire quirks handled here (see the upstream reference): a single quote comes as a bare object,
`{"quotes": null}` means no data, unknown symbols come under `unmatched_symbols.symbol` (a
string or a list), dates are epoch milliseconds with 0 for "never", zeros stand for missing
52-week and average-volume figures, and the rate window is announced in `X-Ratelimit-*`.

Symbols go out in Tradier's form (`BRK/B`, bare `SPX`, bare OCC: `worker.providers.symbol_forms`)
and what comes back is keyed by the reader form. OCC option symbols share the batch with stocks;
their quotes carry the contract (`underlying`, `strike`, ...) and, asked with `greeks=true`, greeks.
An index quote has null bid/ask and volume 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Literal

from multidict import CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from reader.models import BarInterval, Expirations, OptionChain, PriceHistory, Quote
from reader.symbols import is_option_symbol, parse_symbol
from worker.errors import UpstreamBadPayload
from worker.providers.base import Freshness, QuoteBatch, StrikeRange
from worker.providers.client import UpstreamClient
from worker.providers.symbol_forms import SymbolMap, reader_form, tradier_symbol
from worker.providers.tradier_wire import (
    CHAINS_ENDPOINT,
    EXPIRATIONS_ENDPOINT,
    HISTORY_ENDPOINT,
    TIMESALES_ENDPOINT,
    WireGreeks,
    parse_chain,
    parse_daily_history,
    parse_expirations,
    parse_timesales,
)
from worker.providers.wire import (
    as_list,
    from_epoch,
    is_null,
    none_if_zero,
    quote_batch,
    refused_as_bad,
    shape,
    uncrossed,
    validation_detail,
)

QUOTES_ENDPOINT = "/v1/markets/quotes"
# Longer symbol lists go in a POST form body: a GET is bounded by the URL's length.
GET_MAX_SYMBOLS = 50
AUTH_HINT = "check TRADIER_API_KEY and that it is for TRADIER_BASE_URL (sandbox or production)"
# Intraday bars: Tradier's timesales interval for ours, and the extended session's hours (ET).
TIMESALES_INTERVALS: Mapping[str, str] = {"1m": "1min", "5m": "5min", "15m": "15min"}
SESSION_START_ET = "04:00"
SESSION_END_ET = "20:00"


class _WireQuote(BaseModel):
    """One element of `quotes.quote` as Tradier sends it."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

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
    trade_date: int | None = None
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
    bid_date: int | None = None
    ask: float | None = None
    asksize: int | None = None
    askexch: str | None = None
    ask_date: int | None = None
    root_symbols: str | None = None
    # An OCC option symbol's quote only:
    underlying: str | None = None
    strike: float | None = None
    expiration_date: date | None = None
    option_type: Literal["call", "put"] | None = None
    open_interest: int | None = None
    contract_size: int | None = None
    root_symbol: str | None = None
    greeks: WireGreeks | None = None


_QUOTE_LIST = TypeAdapter(list[_WireQuote])
_ZERO_MEANS_NONE = ("week_52_high", "week_52_low", "average_volume")
_NONE_FOR_AN_INDEX = ("volume", "last_volume", "bidsize", "asksize")
_EPOCH_MS = ("trade_date", "bid_date", "ask_date")


def rate_window(headers: CIMultiDictProxy[str]) -> tuple[int | None, datetime | None]:
    """Requests left in Tradier's window and when it ends, from `X-Ratelimit-Available`/`-Expiry`."""
    try:
        available = int(headers["X-Ratelimit-Available"])
        expiry = int(headers["X-Ratelimit-Expiry"])
    except (KeyError, ValueError):
        return None, None
    return available, from_epoch(expiry)


class TradierProvider(UpstreamClient):
    """Quotes from Tradier, up to `batch_size` symbols per call, paced by `gate`."""

    name = "tradier"
    auth_hint = AUTH_HINT

    def _rate_window(self, headers: CIMultiDictProxy[str]) -> tuple[int | None, datetime | None]:
        return rate_window(headers)

    async def fetch_quotes(self, symbols: Sequence[str], *, freshness: Freshness) -> QuoteBatch:
        """One call for the batch, in Tradier's forms. Which class-share form Tradier wants is
        unconfirmed (public clients report `BRK/B`): class shares it leaves unmatched are asked
        once more as `BRK.B`, in a second call made only then."""
        self._check_batch(symbols)
        if not symbols:
            return QuoteBatch((), ())
        batch = await self._quotes(SymbolMap(symbols, tradier_symbol), freshness)
        retry = [s for s in batch.unmatched if parse_symbol(s).kind == "class_share"]
        if not retry:
            return batch
        again = await self._quotes(SymbolMap(retry, str), freshness)
        asked_again = replace(batch, unmatched=tuple(s for s in batch.unmatched if s not in retry))
        return asked_again.merged(again)

    async def _quotes(self, sent: SymbolMap, freshness: Freshness) -> QuoteBatch:
        query = {"symbols": ",".join(sent.upstream)}
        if any(is_option_symbol(s) for s in sent.by_upstream.values()):
            query["greeks"] = "true"  # adds greeks to option quotes only
        if len(sent.by_upstream) > GET_MAX_SYMBOLS:
            payload = await self._call(QUOTES_ENDPOINT, form=query)
        else:
            payload = await self._call(QUOTES_ENDPOINT, params=query)
        stamp = self._stamp(freshness)
        wire, unmatched = parse_quotes(payload)
        # An index off the known list (`I:FOO`) goes out bare: a stock of that ticker is no answer.
        stocks_for_indices = [
            w.symbol for w in wire if w.type != "index" and _is_index(sent.reader_form(w.symbol))
        ]
        wire = [w for w in wire if w.symbol not in stocks_for_indices]
        unmatched = [*unmatched, *stocks_for_indices]
        return quote_batch(
            wire,
            lambda w: _to_quote(w, sent.reader_form(w.symbol), **stamp),
            lambda w: sent.reader_form(w.symbol),
            [sent.reader_form(s) for s in unmatched],
        )

    async def fetch_expirations(self, symbol: str, *, freshness: Freshness) -> Expirations | None:
        params = {"symbol": tradier_symbol(symbol), "includeAllRoots": "true"}
        payload = await self._call(EXPIRATIONS_ENDPOINT, params=params)
        stamp = self._stamp(freshness)
        dates = parse_expirations(payload)
        if dates is None:
            return None
        with refused_as_bad(self.name, EXPIRATIONS_ENDPOINT, "expirations"):
            return Expirations(symbol=symbol.upper(), dates=tuple(dates), **stamp)

    async def fetch_chain(
        self, symbol: str, expiration: date, *, freshness: Freshness, strikes: StrikeRange | None = None
    ) -> OptionChain | None:
        params = {"symbol": tradier_symbol(symbol), "expiration": expiration.isoformat(), "greeks": "true"}
        payload = await self._call(CHAINS_ENDPOINT, params=params)
        stamp = self._stamp(freshness)
        rows = parse_chain(payload, expiration, strikes)
        if rows is None:
            return None
        with refused_as_bad(self.name, CHAINS_ENDPOINT, "chain"):
            return OptionChain(
                symbol=symbol.upper(),
                expiration=expiration,
                underlying_price=None,  # Tradier's chain does not carry it
                greeks_updated_at=rows.greeks_updated_at,
                contracts=uncrossed(rows.contracts),
                **stamp,
            )

    async def fetch_history(
        self, symbol: str, interval: BarInterval, start: date, end: date, *, freshness: Freshness
    ) -> PriceHistory | None:
        if interval == "1d":
            params = {
                "symbol": tradier_symbol(symbol),
                "interval": "daily",
                "start": start.isoformat(),
                "end": end.isoformat(),
            }
            endpoint = HISTORY_ENDPOINT
            payload = await self._call(endpoint, params=params)
            stamp = self._stamp(freshness)
            bars = parse_daily_history(payload)
        elif interval in TIMESALES_INTERVALS:
            params = {
                "symbol": tradier_symbol(symbol),
                "interval": TIMESALES_INTERVALS[interval],
                "start": f"{start.isoformat()} {SESSION_START_ET}",
                "end": f"{end.isoformat()} {SESSION_END_ET}",
                "session_filter": "all",
            }
            endpoint = TIMESALES_ENDPOINT
            payload = await self._call(endpoint, params=params)
            stamp = self._stamp(freshness)
            bars = parse_timesales(payload)
        else:
            raise ValueError(f"interval={interval!r}: expected '1d', '1m', '5m' or '15m'")
        if bars is None:
            return None
        if parse_symbol(symbol).kind == "index":  # Tradier's index bars say volume 0: none
            bars = [bar._replace(volume=None) if not bar.volume else bar for bar in bars]
        with refused_as_bad(self.name, endpoint, "history"):
            return PriceHistory(symbol=symbol.upper(), interval=interval, bars=tuple(bars), **stamp)


def parse_quotes(payload: Any) -> tuple[list[_WireQuote], list[str]]:
    """The quotes and unmatched symbols of a `/v1/markets/quotes` answer; rejects it whole if malformed."""
    if not isinstance(payload, dict) or "quotes" not in payload:
        raise _bad(f"expected an object with 'quotes', got {shape(payload)}")
    body = payload["quotes"]
    if is_null(body):
        return [], []
    if not isinstance(body, dict):
        raise _bad(f"quotes: expected an object, got {shape(body)}")
    try:
        quotes = _QUOTE_LIST.validate_python(as_list(body.get("quote")))
    except ValidationError as e:
        raise _bad(validation_detail(e, "quotes.quote")) from None
    unmatched_body = body.get("unmatched_symbols")
    unmatched: list[str] = []
    if isinstance(unmatched_body, dict):
        unmatched = [str(s).upper() for s in as_list(unmatched_body.get("symbol"))]
    elif not is_null(unmatched_body):
        raise _bad(f"quotes.unmatched_symbols: expected an object, got {shape(unmatched_body)}")
    return quotes, unmatched


def _is_index(symbol: str) -> bool:
    return parse_symbol(symbol).kind == "index"


def _to_quote(
    wire: _WireQuote, symbol: str, *, source: str, fetched_at: datetime, fresh_until: datetime
) -> Quote:
    data = wire.model_dump(exclude={"greeks"})
    for name in _ZERO_MEANS_NONE:
        if not data[name]:
            data[name] = None
    for name in _EPOCH_MS:
        data[name] = from_epoch(data[name]) if data[name] else None
    data["symbol"] = symbol
    if wire.type == "index":  # an index trades no volume and has no bid or ask: Tradier says 0
        for name in _NONE_FOR_AN_INDEX:
            if not data[name]:
                data[name] = None
    if wire.underlying is not None:
        data["underlying"] = reader_form(wire.underlying)
    if wire.greeks is not None:
        greeks = wire.greeks
        data |= {
            "delta": greeks.delta,
            "gamma": greeks.gamma,
            "theta": greeks.theta,
            "vega": greeks.vega,
            "rho": greeks.rho,
            "bid_iv": none_if_zero(greeks.bid_iv),
            "mid_iv": none_if_zero(greeks.mid_iv) or none_if_zero(greeks.smv_vol),
            "ask_iv": none_if_zero(greeks.ask_iv),
            "greeks_updated_at": greeks.updated_at,
        }
    return Quote(**data, source=source, fetched_at=fetched_at, fresh_until=fresh_until)


def _bad(detail: str) -> UpstreamBadPayload:
    return UpstreamBadPayload(TradierProvider.name, QUOTES_ENDPOINT, detail)
