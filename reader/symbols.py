"""What a ticker symbol looks like, and its one normal form (upper case).

A symbol is plain ASCII: a look-alike letter (Cyrillic or Greek capital A, U+0410 and U+0391) or a
letter whose upper case is ASCII (sharp s -> 'SS', dotless i -> 'I') is refused, never folded onto
another ticker's key. Full-width letters (U+FF21...) are refused too, with the ASCII form to type
instead: folding them (NFKC) would also fold ligatures, circled and mathematical letters and
superscripts onto tickers.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from reader.errors import InvalidSymbol

MAX_SYMBOL_LEN = 10
_MAX_INPUT_LEN = 4 * MAX_SYMBOL_LEN  # longer input is refused without looking further
_PADDING = " \t"
_SHOWN_MAX = 60

# A letter first, then letters or digits, with single '.' or '-' separators inside (BRK.B, BF-B).
_TICKER = re.compile(rf"[A-Z](?:[A-Z0-9]|[.\-](?=[A-Z0-9])){{0,{MAX_SYMBOL_LEN - 1}}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ACCEPTED_FORM = (
    f"use 1-{MAX_SYMBOL_LEN} characters: a letter first, then letters, digits, "
    "or a single '.' or '-' between them (e.g. 'AAPL', 'BRK.B')"
)


class Shown:
    """A value as an error message shows it: its repr, cut short when long (a 10 kB string)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        text = repr(self.value)
        if len(text) <= _SHOWN_MAX:
            return text
        size = f"{len(self.value)} characters" if isinstance(self.value, str | bytes) else "cut"
        return f"{text[: _SHOWN_MAX - 20]}... ({size})"


def shown(value: object) -> object:
    """`value` itself when its repr is short, else a `Shown` whose repr is cut: what errors hold."""
    return value if len(repr(value)) <= _SHOWN_MAX else Shown(value)


def normalize_symbol(symbol: object) -> str:
    """Return `symbol` in upper case, or raise `InvalidSymbol` naming the value and the accepted form."""
    if not isinstance(symbol, str):
        raise InvalidSymbol(shown(symbol), f"expected a str such as 'AAPL', got {type(symbol).__name__}")
    return _normalize_str(symbol)


@lru_cache(maxsize=8192)
def _normalize_str(symbol: str) -> str:
    if len(symbol) <= _MAX_INPUT_LEN and symbol.isascii():
        upper = symbol.strip(_PADDING).upper()
        if _TICKER.fullmatch(upper) is not None:
            return upper
    raise InvalidSymbol(shown(symbol), _reason(symbol))


def _reason(symbol: str) -> str:
    if len(symbol) > _MAX_INPUT_LEN:
        return f"it is {len(symbol)} characters long; {ACCEPTED_FORM}"
    if _CONTROL.search(symbol):
        return f"it holds a control character (a line break, a NUL...); {ACCEPTED_FORM}"
    if not symbol.isascii():
        folded = unicodedata.normalize("NFKC", symbol).strip(_PADDING).upper()
        if folded.isascii() and _TICKER.fullmatch(folded) is not None:
            return (
                f"it is written with full-width or other non-ASCII characters; type it in ASCII: {folded!r}"
            )
        return (
            "it holds non-ASCII characters (such as a Cyrillic or Greek letter that looks Latin); "
            + ACCEPTED_FORM
        )
    return ACCEPTED_FORM
