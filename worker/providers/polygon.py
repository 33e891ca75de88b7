"""Polygon's (Massive's) REST API: stock snapshots, option-chain snapshots, bars and indicators.

The key goes in an `Authorization: Bearer` header, never in a URL. Long answers are paged by
`next_url`, which carries a cursor but no key; only its path and query are followed, appended to
our own `base_url`, so the key is never sent to the host a payload names. Error bodies are
`{"status": "ERROR", "error": ...}` or `{"status": "NOT_AUTHORIZED" | "NOT_FOUND", "message": ...}`;
a 200 with status ERROR or NOT_AUTHORIZED is an error too, any other status (OK, DELAYED) success.
Payload models and their mapping live in `worker.providers.polygon_wire`.

Symbols go out as Polygon's tickers (`I:SPX`, `O:AAPL261204C00150000`, `BRK.B`:
`worker.providers.symbol_forms`) and come back keyed by the reader form. A quote of an OCC option
symbol is the options snapshot of that one contract (one call per contract); an index as the
underlying of an options snapshot is tried as `I:SPX`, then bare `SPX` (unconfirmed which one
Polygon wants).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

from reader.models import BarInterval, Indicators, Macd, OptionChain, PriceHistory
from reader.symbols import parse_symbol
from worker.errors import UpstreamAuthError, UpstreamBadPayload, UpstreamError, UpstreamNotFound
from worker.logs import REDACTED
from worker.providers.base import Freshness, IndicatorSpec, QuoteBatch, StrikeRange
from worker.providers.client import UpstreamClient
from worker.providers.http import upstream_message
from worker.providers.polygon_wire import (
    INDICES_ENDPOINT,
    SNAPSHOT_ENDPOINT,
    AggsPage,
    ChainPage,
    ContractPage,
    IndicatorPage,
    IndicesPage,
    PageT,
    WireOption,
    WireValue,
    aggs_bars,
    chain_contracts,
    index_quote,
    option_quote,
    parse_page,
    parse_snapshot,
    to_quote,
)
from worker.providers.symbol_forms import SymbolMap, polygon_ticker, polygon_underlyings
from worker.providers.wire import (
    from_epoch,
    quote_batch,
    refused_as_bad,
    uncrossed,
)

AUTH_HINT = "check POLYGON_API_KEY; on a 403 the Polygon plan may not include this endpoint"
MAX_PAGES = 50
INDICES_LIMIT = 250  # the most tickers (and results) of one indices-snapshot call
CHAIN_PAGE_LIMIT = 250  # the most Polygon returns per chain page
AGGS_LIMIT = 50_000  # base bars scanned per aggregates request, the most Polygon allows
# Our bar lengths as Polygon's (multiplier, timespan).
AGGS_RANGES: Mapping[str, tuple[int, str]] = {
    "1d": (1, "day"),
    "1m": (1, "minute"),
    "5m": (5, "minute"),
    "15m": (15, "minute"),
}
_ERROR_STATUSES = ("ERROR", "NOT_AUTHORIZED")


class PolygonProvider(UpstreamClient):
    """Quotes, chains, bars and indicators from Polygon, paced by `gate` (one request per page)."""

    name = "polygon"
    auth_hint = AUTH_HINT

    async def fetch_quotes(self, symbols: Sequence[str], *, freshness: Freshness) -> QuoteBatch:
        """Stocks and class shares in one stocks-snapshot call, indices in one indices-snapshot
        call, each OCC option symbol in one options-snapshot call of its own."""
        self._check_batch(symbols)
        kinds = {s: parse_symbol(s).kind for s in symbols}
        options = [s for s in symbols if kinds[s] == "option"]
        indices = [s for s in symbols if kinds[s] == "index"]
        stocks = [s for s in symbols if kinds[s] in ("stock", "class_share")]
        batch = QuoteBatch((), ())
        if stocks:  # an empty `tickers=` would ask for every ticker there is
            sent = SymbolMap(stocks, polygon_ticker)
            params = {"tickers": ",".join(sent.upstream)}
            payload = await self._get(self.base_url + SNAPSHOT_ENDPOINT, SNAPSHOT_ENDPOINT, params)
            stamp = self._stamp(freshness)
            found, unmatched = parse_snapshot(payload, sent.upstream)
            batch = quote_batch(
                found,
                lambda t: to_quote(t, sent.reader_form(t.ticker), **stamp),
                lambda t: sent.reader_form(t.ticker),
                [sent.reader_form(s) for s in unmatched],
            )
        for start in range(0, len(indices), INDICES_LIMIT):
            chunk = indices[start : start + INDICES_LIMIT]
            batch = batch.merged(await self._index_quotes(chunk, freshness))
        for symbol in options:
            batch = batch.merged(await self._option_quote(symbol, freshness))
        return batch

    async def _index_quotes(self, symbols: list[str], freshness: Freshness) -> QuoteBatch:
        """Up to `INDICES_LIMIT` indices from `/v3/snapshot/indices?ticker.any_of=I:SPX,...`."""
        sent = SymbolMap(symbols, polygon_ticker)
        params = {"ticker.any_of": ",".join(sent.upstream), "limit": str(INDICES_LIMIT)}
        page = parse_page(
            IndicesPage,
            await self._get(self.base_url + INDICES_ENDPOINT, INDICES_ENDPOINT, params),
            INDICES_ENDPOINT,
        )
        stamp = self._stamp(freshness)
        found = [r for r in page.results or () if r.error is None]
        known = {sent.reader_form(r.ticker) for r in found}
        return quote_batch(
            found,
            lambda r: index_quote(r, sent.reader_form(r.ticker), **stamp),
            lambda r: sent.reader_form(r.ticker),
            [s for s in symbols if s not in known],
        )

    async def _option_quote(self, symbol: str, freshness: Freshness) -> QuoteBatch:
        """One contract's quote from `/v3/snapshot/options/{underlying}/O:...`; unmatched on a 404."""
        occ = parse_symbol(symbol).occ
        if occ is None:
            raise ValueError(f"{symbol!r} is not an OCC option symbol")
        contract = _segment(symbol)
        found: WireOption | None = None
        for underlying in polygon_underlyings(occ.underlying):
            endpoint = f"/v3/snapshot/options/{_quoted(underlying)}/{contract}"
            try:
                payload = await self._get(self.base_url + endpoint, endpoint, None)
            except UpstreamNotFound as e:
                if e.reason is None:
                    raise
                continue
            found = parse_page(ContractPage, payload, endpoint).results
            if found is not None:
                break
        if found is None:
            return QuoteBatch((), (symbol,))
        to_quote = partial(option_quote, symbol=symbol, underlying=occ.underlying, **self._stamp(freshness))
        return quote_batch([found], to_quote, lambda _: symbol, [])

    async def fetch_chain(
        self, symbol: str, expiration: date, *, freshness: Freshness, strikes: StrikeRange | None = None
    ) -> OptionChain | None:
        params = {"expiration_date": expiration.isoformat(), "limit": str(CHAIN_PAGE_LIMIT)}
        if strikes is not None:
            params["strike_price.gte"] = repr(float(strikes.low))
            params["strike_price.lte"] = repr(float(strikes.high))
        options: list[WireOption] = []
        for underlying in polygon_underlyings(symbol):  # an index: I:SPX, then SPX
            path = f"/v3/snapshot/options/{_quoted(underlying)}"
            pages = await self._pages_or_none(path, params, ChainPage)
            options = [option for page in pages or () for option in page.results or ()]
            if options:
                break
        stamp = self._stamp(freshness)
        contracts, underlying_price = chain_contracts(options, expiration, strikes)
        if not contracts:
            return None
        with refused_as_bad(self.name, path, "chain"):
            return OptionChain(
                symbol=symbol.upper(),
                expiration=expiration,
                underlying_price=underlying_price,
                greeks_updated_at=None,  # the snapshot does not say when its greeks were computed
                contracts=uncrossed(contracts),
                **stamp,
            )

    async def fetch_history(
        self, symbol: str, interval: BarInterval, start: date, end: date, *, freshness: Freshness
    ) -> PriceHistory | None:
        if interval not in AGGS_RANGES:
            raise ValueError(f"interval={interval!r}: expected one of {sorted(AGGS_RANGES)}")
        multiplier, timespan = AGGS_RANGES[interval]
        path = f"/v2/aggs/ticker/{_segment(symbol)}/range/{multiplier}/{timespan}/{start}/{end}"
        params = {"adjusted": "true", "sort": "asc", "limit": str(AGGS_LIMIT)}
        pages = await self._pages_or_none(path, params, AggsPage)
        stamp = self._stamp(freshness)
        bars = aggs_bars(pages or [], daily=interval == "1d")
        if bars is None:
            return None
        with refused_as_bad(self.name, path, "history"):
            return PriceHistory(symbol=symbol.upper(), interval=interval, bars=tuple(bars), **stamp)

    async def fetch_indicators(
        self, symbol: str, spec: IndicatorSpec, *, freshness: Freshness
    ) -> Indicators | None:
        """One request per indicator and window, one after the other (the gate paces them)."""
        common = {
            "timespan": "day",
            "adjusted": "true",
            "series_type": "close",
            "order": "desc",
            "limit": "1",
        }
        found: list[WireValue] = []
        windows: dict[str, dict[int, float]] = {"sma": {}, "ema": {}, "rsi": {}}
        for kind, sizes in (("sma", spec.sma), ("ema", spec.ema), ("rsi", spec.rsi)):
            for window in sizes:
                value = await self._latest(kind, symbol, {**common, "window": str(window)})
                if value is not None:
                    windows[kind][window] = value.value
                    found.append(value)
        macd: Macd | None = None
        if spec.macd is not None:
            fast, slow, signal = spec.macd
            params = {"short_window": str(fast), "long_window": str(slow), "signal_window": str(signal)}
            value = await self._latest("macd", symbol, {**common, **params})
            if value is not None:
                macd = _macd(value, spec.macd, symbol)
                found.append(value)
        stamp = self._stamp(freshness)
        if not found:
            return None  # Polygon answers an unknown ticker with empty values
        as_of = max(v.timestamp for v in found)
        with refused_as_bad(self.name, "/v1/indicators", "indicators"):
            return Indicators(
                symbol=symbol.upper(),
                interval="1d",
                as_of=from_epoch(as_of),
                close=None,
                sma=windows["sma"],
                ema=windows["ema"],
                rsi=windows["rsi"],
                macd=macd,
                **stamp,
            )

    async def _latest(self, kind: str, symbol: str, params: dict[str, str]) -> WireValue | None:
        """The newest value of one indicator (first page only: `limit=1` asks for just that)."""
        endpoint = f"/v1/indicators/{kind}/{_segment(symbol)}"
        try:
            payload = await self._get(self.base_url + endpoint, endpoint, params)
        except UpstreamNotFound as e:
            if e.reason is None:
                raise
            return None
        return parse_page(IndicatorPage, payload, endpoint).latest()

    async def _pages_or_none(
        self, endpoint: str, params: Mapping[str, str], kind: type[PageT]
    ) -> list[PageT] | None:
        """Every page of `endpoint`; None when Polygon answers 404 with a JSON reason (unknown ticker)."""
        try:
            return await self._pages(endpoint, params, kind)
        except UpstreamNotFound as e:
            if e.reason is None:  # a plain-text 404 is a wrong path or base URL: say so
                raise
            return None

    async def _pages(self, endpoint: str, params: Mapping[str, str], kind: type[PageT]) -> list[PageT]:
        """The first page of `endpoint` and every page its `next_url`s lead to, each validated whole."""
        url: str = self.base_url + endpoint
        query: Mapping[str, str] | None = params
        pages: list[PageT] = []
        for _ in range(MAX_PAGES):
            page = parse_page(kind, await self._get(url, endpoint, query), endpoint)
            pages.append(page)
            if not page.next_url:
                return pages
            url, query = self._next_page_url(page.next_url, endpoint), None
        raise UpstreamBadPayload(
            self.name,
            endpoint,
            f"still a next_url after {MAX_PAGES} pages; narrow the request (strikes, dates)",
        )

    def _next_page_url(self, next_url: str, endpoint: str) -> str:
        """`next_url`'s path and query on our `base_url`: the key must not go to a host a payload names."""
        parts = urlsplit(next_url)
        if not parts.path.startswith("/"):
            raise UpstreamBadPayload(
                self.name, endpoint, f"next_url = {next_url[:120]!r}: expected a URL with a path"
            )
        return self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")

    async def _get(self, url: str, endpoint: str, params: Mapping[str, str] | None) -> Any:
        """One GET; the decoded JSON, or an `UpstreamError` (also for a 200 whose status is an error)."""
        payload = await self._call(endpoint, url=url, params=params)
        status = payload.get("status") if isinstance(payload, dict) else None
        if status in _ERROR_STATUSES:
            message = (upstream_message(payload) or "no message").replace(self._api_key, REDACTED)
            detail = f"HTTP 200 with status {status!r}: {message!r}"
            if status == "NOT_AUTHORIZED":
                raise UpstreamAuthError(self.name, endpoint, f"{detail}; {AUTH_HINT}")
            raise UpstreamError(self.name, endpoint, detail)
        return payload


def _macd(value: WireValue, windows: tuple[int, int, int], symbol: str) -> Macd:
    if value.signal is None or value.histogram is None:
        endpoint = f"/v1/indicators/macd/{_segment(symbol)}"
        raise UpstreamBadPayload(
            PolygonProvider.name,
            endpoint,
            f"results.values[0] = {value.model_dump()!r}: no signal or histogram",
        )
    fast, slow, signal = windows
    return Macd(
        fast=fast,
        slow=slow,
        signal_window=signal,
        macd=value.value,
        signal=value.signal,
        histogram=value.histogram,
    )


def _segment(symbol: str) -> str:
    """`symbol` (reader form) as Polygon's ticker in one path segment (`I:SPX`, `O:...`)."""
    return _quoted(polygon_ticker(symbol))


def _quoted(ticker: str) -> str:
    """A Polygon ticker as one path segment: upper case (Polygon's tickers are case-sensitive), quoted."""
    return quote(ticker.upper(), safe=".-:")
