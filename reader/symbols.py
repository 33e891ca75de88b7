"""What a ticker symbol looks like, and its one normal form (upper case)."""

from __future__ import annotations

import re
from functools import lru_cache

from reader.errors import InvalidSymbol

MAX_SYMBOL_LEN = 10

# A letter first, then letters or digits, with single '.' or '-' separators inside (BRK.B, BF-B).
_TICKER = re.compile(rf"[A-Z](?:[A-Z0-9]|[.\-](?=[A-Z0-9])){{0,{MAX_SYMBOL_LEN - 1}}}")
ACCEPTED_FORM = (
    f"use 1-{MAX_SYMBOL_LEN} characters: a letter first, then letters, digits, "
    "or a single '.' or '-' between them (e.g. 'AAPL', 'BRK.B')"
)


def normalize_symbol(symbol: object) -> str:
    """Return `symbol` in upper case, or raise `InvalidSymbol` naming the value and the accepted form."""
    if not isinstance(symbol, str):
        raise InvalidSymbol(symbol, f"expected a str such as 'AAPL', got {type(symbol).__name__}")
    return _normalize_str(symbol)


@lru_cache(maxsize=8192)
def _normalize_str(symbol: str) -> str:
    upper = symbol.strip().upper()
    if _TICKER.fullmatch(upper) is None:
        raise InvalidSymbol(symbol, ACCEPTED_FORM)
    return upper
