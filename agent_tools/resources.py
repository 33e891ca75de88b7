"""The cache's items as MCP resources: their URIs, their reads with freshness, and which URIs a
write of the worker updates.

- `marketcache://quote/{symbol}`: the quote of a stock, ETF, index or OCC option symbol.
- `marketcache://chain/{symbol}/{expiration}`: one option chain (both sides), the strikes nearest
  the money, as `get_call_options_chain` cuts them (`CHAIN_STRIKES`).
- `marketcache://market/status`: the exchange's phase, today's session and the next open and close
  (the tool's answer less its `now_*` times: `as_of` is when it was computed).

A read answers the JSON of the matching tool (the same fields, `as_of` and `stale`), with
`fresh_until` (UTC) added, and a `ttl_ms` for the protocol's cache hint: how long the answer may
be reused, `fresh_until - now` in milliseconds, 0 when stale. The market status is computed at
the read (`as_of` is then), and holds until the phase changes or the New York date does
(`fresh_until`); told without the worker's calendar because Redis could not be read, its
`ttl_ms` is 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import unquote

from agent_tools.answers import CHAIN_STRIKES, bounded_json, chain_fields, iso, quote_fields, status_fields
from reader import keys
from reader.calendar import EXCHANGE_TZ
from reader.client import Reader
from reader.errors import InvalidRequest, InvalidSymbol
from reader.models import MarketStatus
from reader.symbols import normalize_symbol, shown

SCHEME = "marketcache://"
QUOTE = SCHEME + "quote/{symbol}"
CHAIN = SCHEME + "chain/{symbol}/{expiration}"
MARKET_STATUS = SCHEME + "market/status"

_QUOTE = re.compile(r"^marketcache://quote/(?P<symbol>[^/]+)$")
_CHAIN = re.compile(r"^marketcache://chain/(?P<symbol>[^/]+)/(?P<expiration>\d{4}-\d{2}-\d{2})$")
_QUOTE_KEY = keys.quote("")
_CHAIN_KEY = re.compile(
    rf"^{re.escape(keys.PREFIX)}chain:(?P<symbol>.+):(?P<expiration>\d{{4}}-\d{{2}}-\d{{2}})$"
)


class UnknownResource(InvalidRequest):
    """A URI that names no resource of this server; the message lists the forms that do."""

    def __init__(self, uri: str) -> None:
        super().__init__(
            "uri", shown(uri), f"expected {QUOTE}, {CHAIN} (expiration YYYY-MM-DD) or {MARKET_STATUS}"
        )


@dataclass(frozen=True)
class ResourceAnswer:
    """A resource's JSON text and how long it may be reused (`ttl_ms`, milliseconds, >= 0)."""

    text: str
    ttl_ms: int


def _ttl_ms(fresh_until: datetime, now: datetime) -> int:
    # Integer division: through float seconds, 8.03 s would come out 8029 ms.
    return max(0, (fresh_until - now) // timedelta(milliseconds=1))


def _with_fresh_until(data: dict[str, Any], fresh_until: datetime) -> dict[str, Any]:
    """`data` with `fresh_until` placed after `stale` (or first)."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        out[name] = value
        if name == "stale":
            out["fresh_until"] = iso(fresh_until)
    out.setdefault("fresh_until", iso(fresh_until))
    return out


def status_fresh_until(status: MarketStatus) -> datetime:
    """Until when a market status answer holds: the next change of phase, or the next midnight in
    New York (today's `session` and `weekday` change then), whichever comes first."""
    local = status.at.astimezone(EXCHANGE_TZ)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=EXCHANGE_TZ)
    return min(status.phase_until, midnight.astimezone(UTC))


async def read(reader: Reader, uri: str, now: datetime) -> ResourceAnswer:
    """Read the resource `uri` through `reader` (a miss enqueues a fetch and waits `reader.wait_s`).

    Raises `UnknownResource` for a URI of no resource, a `reader.errors.ReaderError` the read
    raised (an unknown symbol, a fetch queued: its message says what to do), or a
    `redis.RedisError` when Redis is out of reach.
    """
    named, uri = uri, canonical_uri(uri)
    if uri == MARKET_STATUS:
        status = await reader.market_status()
        fresh_until = status_fresh_until(status)
        # Not the tool's `now_utc`/`now_new_york`: an answer reused until `fresh_until` would give
        # a time long past. `as_of` says when it was computed.
        data = {k: v for k, v in status_fields(status).items() if not k.startswith("now_")}
        data = _with_fresh_until({"as_of": iso(status.at), "stale": False, **data}, fresh_until)
        # Told by the installed calendar because Redis could not be read: not to be reused.
        trusted = status.calendar != "installed-redis-unreadable"
        return ResourceAnswer(
            bounded_json("market status", data), _ttl_ms(fresh_until, now) if trusted else 0
        )
    quote = _QUOTE.match(uri)
    if quote:
        item = await reader.quote(quote["symbol"])
        data = _with_fresh_until(quote_fields(item), item.fresh_until)
        return ResourceAnswer(
            bounded_json("quote", data), 0 if item.stale else _ttl_ms(item.fresh_until, now)
        )
    chain = _CHAIN.match(uri)
    if chain:
        found = await reader.chain(chain["symbol"], chain["expiration"])
        data = _with_fresh_until(chain_fields(found, found.contracts, CHAIN_STRIKES), found.fresh_until)
        ttl_ms = 0 if found.stale else _ttl_ms(found.fresh_until, now)
        return ResourceAnswer(bounded_json("chain", data), ttl_ms)
    raise UnknownResource(named)


def is_resource(uri: str) -> bool:
    """Whether `uri` names a resource of this server: its form, and a symbol of a ticker's form
    (whether the upstream knows it is not looked up)."""
    canonical = canonical_uri(uri)
    if canonical == MARKET_STATUS:
        return True
    found = _QUOTE.match(canonical) or _CHAIN.match(canonical)
    if found is None:
        return False
    try:
        normalize_symbol(found["symbol"])
    except InvalidSymbol:
        return False
    return True


def quote_uri(symbol: str) -> str:
    return QUOTE.format(symbol=symbol)


def chain_uri(symbol: str, expiration: date) -> str:
    return CHAIN.format(symbol=symbol, expiration=expiration.isoformat())


def uris_of(key: str) -> tuple[str, ...]:
    """The resource URIs whose answer a write of the data key `key` (`reader.keys`) changes: a
    quote's, and a chain's; none for the keys no resource reads."""
    if key.startswith(_QUOTE_KEY):
        return (quote_uri(key[len(_QUOTE_KEY) :]),)
    chain = _CHAIN_KEY.match(key)
    if chain:
        return (CHAIN.format(symbol=chain["symbol"], expiration=chain["expiration"]),)
    return ()


def stored_keys(message: bytes | str) -> list[str]:
    """The keys a `keys.STORED` announcement names (a JSON array of strings); [] for anything else."""
    try:
        named = json.loads(message)
    except ValueError:
        return []
    return [k for k in named if isinstance(k, str)] if isinstance(named, list) else []


def canonical_uri(uri: str) -> str:
    """`uri` with its symbol in the cache's form (`marketcache://quote/brk%2Fb` names BRK.B's quote),
    so that a subscription and the store announcement meet; other URIs as given."""
    for prefix in (SCHEME + "quote/", SCHEME + "chain/"):
        if uri.startswith(prefix):
            symbol, slash, rest = uri[len(prefix) :].partition("/")
            try:
                return prefix + normalize_symbol(unquote(symbol)) + slash + rest
            except InvalidSymbol:
                return uri
    return uri
