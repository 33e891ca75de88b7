"""Each upstream's way of writing a symbol, from and back to the reader form (`reader.symbols`).

| kind | reader | Tradier | Polygon |
|---|---|---|---|
| stock | `AAPL` | `AAPL` | `AAPL` |
| class share | `BRK.B` | `BRK/B` | `BRK.B` |
| index | `SPX` (`I:FOO` off the table) | `SPX` (`FOO`) | `I:SPX` (`I:FOO`) |
| option | `AAPL261204C00150000` | `AAPL261204C00150000` | `O:AAPL261204C00150000` |

What an upstream sends back is keyed by the reader form through `SymbolMap`, never by position.
Where the reference leaves a convention unconfirmed (Tradier's class-share form), the way back
tolerates the other spellings: anything `reader.symbols.parse_symbol` reads maps to its reader form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reader.errors import InvalidSymbol
from reader.symbols import INDEX_PREFIX, OPTION_PREFIX, parse_symbol


def tradier_symbol(symbol: str) -> str:
    """Tradier's form of a reader-form symbol: `BRK/B`, a bare index name, a bare OCC symbol."""
    parsed = parse_symbol(symbol)
    if parsed.kind == "class_share":
        return parsed.text.replace(".", "/")
    return parsed.bare


def polygon_ticker(symbol: str) -> str:
    """Polygon's ticker of a reader-form symbol: `BRK.B`, `I:SPX`, `O:AAPL261204C00150000`."""
    parsed = parse_symbol(symbol)
    if parsed.kind == "index":
        return INDEX_PREFIX + parsed.bare
    if parsed.kind == "option":
        return OPTION_PREFIX + parsed.text
    return parsed.text


def polygon_underlyings(symbol: str) -> tuple[str, ...]:
    """The underlying path segments to try on Polygon's options snapshot, best first: an index as
    `I:SPX` and then bare `SPX` (which of the two Polygon wants is unconfirmed), others as is."""
    parsed = parse_symbol(symbol)
    if parsed.kind == "index":
        return (INDEX_PREFIX + parsed.bare, parsed.bare)
    return (polygon_ticker(symbol),)


class SymbolMap:
    """The reader forms of one request, by the upstream form each was sent as (upper case)."""

    def __init__(self, symbols: Iterable[str], to_upstream: Callable[[str], str]) -> None:
        self.by_upstream: dict[str, str] = {to_upstream(s).upper(): s for s in symbols}

    @property
    def upstream(self) -> list[str]:
        """The upstream forms, in the order asked."""
        return list(self.by_upstream)

    def reader_form(self, sent_back: str) -> str:
        """The reader form of a symbol the upstream sent back: the one asked for under that
        spelling, else whatever `parse_symbol` makes of it (a spelling the upstream chose), else
        the text in upper case (a symbol no reader form matches is kept, never dropped)."""
        asked = self.by_upstream.get(sent_back.upper())
        return asked if asked is not None else reader_form(sent_back)


def reader_form(sent_back: str) -> str:
    """The reader form of a symbol an upstream sent (`BRK/B`, `I:SPX`, `O:...`), or the text in
    upper case when no reader form matches (kept, never dropped)."""
    upper = sent_back.upper()
    try:
        return parse_symbol(upper).text
    except InvalidSymbol:
        return upper
