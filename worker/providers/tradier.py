"""Tradier's market-data API: batch quotes (`/v1/markets/quotes`).

Wire quirks handled here (see the upstream reference): a single quote comes as a bare object,
`{"quotes": null}` means no data, unknown symbols come under `unmatched_symbols.symbol` (a
string or a list), dates are epoch milliseconds with 0 for "never", zeros stand for missing
52-week and average-volume figures, and the rate window is announced in `X-Ratelimit-*`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from reader import __version__
from reader.clock import Clock, utc_now
from reader.models import Quote
from worker.errors import UpstreamBadPayload
from worker.providers.base import Freshness, QuoteBatch
from worker.providers.http import request_json
from worker.ratelimit import RateGate

QUOTES_ENDPOINT = "/v1/markets/quotes"
# Longer symbol lists go in a POST form body: a GET is bounded by the URL's length.
GET_MAX_SYMBOLS = 50
_SECONDS_NOT_MS = 10**11  # an "epoch ms" this small is really in seconds


class _WireQuote(BaseModel):
    """One element of `quotes.quote` as Tradier sends it."""

    model_config = ConfigDict(extra="ignore")

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


_QUOTE_LIST = TypeAdapter(list[_WireQuote])
_ZERO_MEANS_NONE = ("week_52_high", "week_52_low", "average_volume")
_EPOCH_MS = ("trade_date", "bid_date", "ask_date")


class TradierProvider:
    """Quotes from Tradier, up to `batch_size` symbols per call, paced by `gate`."""

    name = "tradier"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        gate: RateGate,
        batch_size: int,
        timeout_s: float,
        clock: Clock = utc_now,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.gate = gate
        self._session = session
        self._clock = clock
        self._api_key = api_key
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": f"marketcache/{__version__}",
        }

    async def fetch_quotes(self, symbols: Sequence[str], *, freshness: Freshness) -> QuoteBatch:
        if len(symbols) > self.batch_size:
            raise ValueError(f"{len(symbols)} symbols exceed batch_size={self.batch_size}; split the list")
        if not symbols:
            return QuoteBatch((), ())
        joined = ",".join(symbols)
        post = len(symbols) > GET_MAX_SYMBOLS
        payload = await request_json(
            self._session,
            self.gate,
            provider=self.name,
            method="POST" if post else "GET",
            url=self.base_url + QUOTES_ENDPOINT,
            endpoint=QUOTES_ENDPOINT,
            headers=self._headers,
            params=None if post else {"symbols": joined},
            form={"symbols": joined} if post else None,
            timeout_s=self.timeout_s,
            window=rate_window,
            auth_hint="check TRADIER_API_KEY and that it is for TRADIER_BASE_URL (sandbox or production)",
            secrets=(self._api_key,),
        )
        fetched_at = self._clock()
        fresh_until = freshness(fetched_at)
        wire, unmatched = parse_quotes(payload)
        quotes = tuple(
            _to_quote(w, source=self.name, fetched_at=fetched_at, fresh_until=fresh_until) for w in wire
        )
        return QuoteBatch(quotes=quotes, unmatched=tuple(unmatched))

    def __repr__(self) -> str:
        return f"<TradierProvider {self.base_url} rate={self.gate.rate_per_min}/min batch={self.batch_size}>"


def parse_quotes(payload: Any) -> tuple[list[_WireQuote], list[str]]:
    """The quotes and unmatched symbols of a `/v1/markets/quotes` answer; rejects it whole if malformed."""
    if not isinstance(payload, dict) or "quotes" not in payload:
        raise _bad(f"expected an object with 'quotes', got {_shape(payload)}")
    body = payload["quotes"]
    if body is None or body == "null":
        return [], []
    if not isinstance(body, dict):
        raise _bad(f"quotes: expected an object, got {_shape(body)}")
    try:
        quotes = _QUOTE_LIST.validate_python(_as_list(body.get("quote")))
    except ValidationError as e:
        first = e.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise _bad(
            f"quotes.quote{where} = {first['input']!r}: {first['msg']} ({e.error_count()} problems)"
        ) from None
    unmatched_body = body.get("unmatched_symbols")
    unmatched: list[str] = []
    if isinstance(unmatched_body, dict):
        unmatched = [str(s).upper() for s in _as_list(unmatched_body.get("symbol"))]
    elif unmatched_body not in (None, "null"):
        raise _bad(f"quotes.unmatched_symbols: expected an object, got {_shape(unmatched_body)}")
    return quotes, unmatched


def rate_window(headers: CIMultiDictProxy[str]) -> tuple[int | None, datetime | None]:
    """Requests left in Tradier's window and when it ends, from `X-Ratelimit-Available`/`-Expiry`."""
    try:
        available = int(headers["X-Ratelimit-Available"])
        expiry = int(headers["X-Ratelimit-Expiry"])
    except (KeyError, ValueError):
        return None, None
    return available, _from_epoch(expiry)


def _to_quote(wire: _WireQuote, *, source: str, fetched_at: datetime, fresh_until: datetime) -> Quote:
    data = wire.model_dump()
    for name in _ZERO_MEANS_NONE:
        if not data[name]:
            data[name] = None
    for name in _EPOCH_MS:
        data[name] = _from_epoch(data[name]) if data[name] else None
    data["symbol"] = wire.symbol.upper()
    try:
        return Quote(**data, source=source, fetched_at=fetched_at, fresh_until=fresh_until)
    except ValidationError as e:
        raise _bad(f"quote of {wire.symbol!r} does not fit the Quote model: {e.errors()[0]['msg']}") from None


def _from_epoch(value: int) -> datetime:
    seconds = value if value < _SECONDS_NOT_MS else value / 1000
    return datetime.fromtimestamp(seconds, UTC)


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "null":
        return []
    return value if isinstance(value, list) else [value]


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:5]}"
    return f"a JSON {type(value).__name__}: {str(value)[:60]!r}"


def _bad(detail: str) -> UpstreamBadPayload:
    return UpstreamBadPayload(TradierProvider.name, QUOTES_ENDPOINT, detail)
