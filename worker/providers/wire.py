"""Helpers shared by the upstream parsers: lists that come as bare objects, epoch units, error text.

A parser validates a whole payload before anything of it is used; `validation_detail` turns the
first pydantic error into `path = value: problem`, the form every `UpstreamBadPayload` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from reader import __version__
from reader.calendar import EXCHANGE_TZ
from reader.clock import Clock
from reader.models import Bar, OptionContract, Quote, crossed
from worker.errors import UpstreamBadPayload
from worker.providers.base import QuoteBatch


class WireModel(BaseModel):
    """Base of the models of upstream payloads: unknown fields ignored, values frozen, numbers
    finite (a bare `NaN` token or a `"NaN"` string is a bad field like any other)."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


def bearer_headers(api_key: str) -> dict[str, str]:
    """Headers of every upstream call: the key as a Bearer token (never in a URL), JSON wanted."""
    return {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "User-Agent": f"marketcache/{__version__}",
    }


def envelope(source: str, clock: Clock, freshness: Callable[[datetime], datetime]) -> dict[str, Any]:
    """The envelope of what an answer that came now holds: source, fetched_at, fresh_until."""
    fetched_at = clock()
    return {"source": source, "fetched_at": fetched_at, "fresh_until": freshness(fetched_at)}


T = TypeVar("T")

# Epoch values by magnitude: seconds are ~1.7e9 now, milliseconds ~1.7e12, nanoseconds ~1.7e18.
_MS_ABOVE = 10**11
_NS_ABOVE = 10**14
_VALUE_REPR_MAX = 80


def as_list(value: Any) -> list[Any]:
    """`value` as a list: Tradier sends one element as a bare object, and `null`/`"null"` for none."""
    if value is None or value == "null":
        return []
    return value if isinstance(value, list) else [value]


def is_null(value: Any) -> bool:
    """JSON `null`, or the string `"null"` Tradier sometimes sends in its place."""
    return value is None or value == "null"


def from_epoch(value: float) -> datetime:
    """An aware UTC datetime from epoch seconds, milliseconds or nanoseconds, told apart by size."""
    if value > _NS_ABOVE:
        # Integer division first: a float holds ns timestamps only to about 256 ns.
        seconds, ns = divmod(int(value), 10**9)
        return datetime.fromtimestamp(seconds, UTC).replace(microsecond=ns // 1000)
    seconds_f = value / 1000 if value > _MS_ABOVE else value
    return datetime.fromtimestamp(seconds_f, UTC)


def eastern_midnight(day: date) -> datetime:
    """Midnight New York time on `day` (where a daily bar starts), as aware UTC."""
    return datetime.combine(day, time(), EXCHANGE_TZ).astimezone(UTC)


def eastern_to_utc(local: datetime) -> datetime:
    """A naive New York wall-clock time as aware UTC; an aware one is only converted."""
    if local.tzinfo is None:
        local = local.replace(tzinfo=EXCHANGE_TZ)
    return local.astimezone(UTC)


def validate(kind: type[T], data: Any, *, root: str, provider: str, endpoint: str) -> T:
    """`data` validated as `kind`, or `UpstreamBadPayload` naming the first bad field under `root`."""
    try:
        return _adapter(kind).validate_python(data)
    except ValidationError as e:
        raise UpstreamBadPayload(provider, endpoint, validation_detail(e, root)) from None


@contextmanager
def refused_as_bad(provider: str, endpoint: str, root: str) -> Iterator[None]:
    """Around making cached items from a parsed answer: a field the reader's model refuses (a
    negative price, a bid above the ask) raises `UpstreamBadPayload` naming it and its value."""
    try:
        yield
    except ValidationError as e:
        raise UpstreamBadPayload(provider, endpoint, validation_detail(e, root)) from None


def quote_batch(
    wire_quotes: Iterable[T],
    to_quote: Callable[[T], Quote],
    symbol_of: Callable[[T], str],
    unmatched: Iterable[str],
) -> QuoteBatch:
    """The `QuoteBatch` of one quotes answer: each of `wire_quotes` made a `Quote`, except one whose
    value the model refuses (a negative volume, a bid above the ask), which is left out with its
    reason instead of failing the whole batch."""
    quotes: list[Quote] = []
    refused: list[tuple[str, str]] = []
    for wire in wire_quotes:
        symbol = symbol_of(wire)
        try:
            quotes.append(to_quote(wire))
        except ValidationError as e:
            refused.append((symbol.upper(), validation_detail(e, f"quote of {symbol!r}")))
    return QuoteBatch(quotes=tuple(quotes), unmatched=tuple(unmatched), refused=tuple(refused))


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(kind: type[T]) -> TypeAdapter[T]:
    adapter: TypeAdapter[T] | None = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def validation_detail(error: ValidationError, root: str) -> str:
    """`root.path[0].field = 'value': problem (n problems)` from a pydantic error."""
    first = error.errors()[0]
    # A model-level check (a bid above the ask) has no field of its own: its message names them.
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    if not first["loc"]:
        return f"{root}: {first['msg'].removeprefix('Value error, ')}"
    where = where if root else where.lstrip(".")
    count = error.error_count()
    value = repr(first["input"])
    if len(value) > _VALUE_REPR_MAX:
        value = value[:_VALUE_REPR_MAX] + "..."
    return f"{root}{where} = {value}: {first['msg']} ({count} problem{'s' if count > 1 else ''})"


def shape(value: Any) -> str:
    """A short description of a JSON value, for errors about the wrong kind of value."""
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:5]}"
    return f"a JSON {type(value).__name__}: {str(value)[:60]!r}"


def none_if_zero(value: float | None) -> float | None:
    """None for a missing value and for the 0 an upstream sends in its place."""
    return value if value else None


def unique_bars(bars: list[Bar]) -> list[Bar] | None:
    """`bars` sorted by start, one per start (the last sent wins); None if there are none."""
    by_start = {bar.start: bar for bar in bars}
    return [by_start[start] for start in sorted(by_start)] or None


def uncrossed(contracts: Iterable[OptionContract]) -> tuple[OptionContract, ...]:
    """`contracts` with the bid and ask of each contract whose bid exceeds its ask by more than a
    tick set to None: such a quote (often a stale side of a far strike) is no quote, and one of
    them must not cost the whole chain its refresh (the `OptionChain` model refuses it)."""
    return tuple(
        contract._replace(bid=None, ask=None) if crossed(contract.bid, contract.ask) else contract
        for contract in contracts
    )


def contract_order(contract: OptionContract) -> tuple[float, int, str]:
    """Sort key of a chain: by strike, the call before the put, then by symbol."""
    return contract.strike, 0 if contract.option_type == "call" else 1, contract.symbol
