"""The kinds of symbol the cache knows, and the one canonical (reader) form of each.

| kind | reader form | also accepted |
|---|---|---|
| stock, ETF | `AAPL` | lower case |
| class share | `BRK.B` | `BRK-B`, `BRK/B` |
| index (known, `INDICES`) | `SPX` | `I:SPX`, `^SPX`, `$SPX` |
| index (not in `INDICES`) | `I:FOO` | `^FOO`, `$FOO` |
| option (OCC) | `AAPL261204C00150000` | `O:AAPL261204C00150000`, OSI `AAPL  261204C00150000` |

An option on a class share has an OCC root without the dot (`BRKB261204C00480000` is on `BRK.B`);
`CLASS_SHARE_ROOTS` names the roots known to be class shares, and any other root is taken to be a
stock of that name (a guess: the OCC symbol does not carry the dot).

Cache keys use the reader form; each upstream client maps it to its own form on the way out and
back on the way in (`worker.providers.symbol_forms`). `parse_symbol` gives the kind and, for an
option, its OCC parts (root, expiration, call/put, strike in dollars).

A symbol is plain ASCII: a look-alike letter (Cyrillic or Greek capital A, U+0410 and U+0391) or a
letter whose upper case is ASCII (sharp s -> 'SS', dotless i -> 'I') is refused, never folded onto
another ticker's key. Full-width letters (U+FF21...) are refused too, with the ASCII form to type
instead: folding them (NFKC) would also fold ligatures, circled and mathematical letters and
superscripts onto tickers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Literal

from reader.errors import InvalidSymbol

MAX_SYMBOL_LEN = 10
"""The longest stock, class-share or index symbol (an OCC symbol is up to `MAX_OCC_LEN`)."""
MAX_OCC_LEN = 21
"""The longest compact OCC option symbol: a root of up to 6 characters and 15 more."""
_MAX_INPUT_LEN = 40  # longer input is refused without looking further
_PADDING = " \t"
_SHOWN_MAX = 60

SymbolKind = Literal["stock", "class_share", "index", "option"]

INDICES = frozenset(
    {"SPX", "NDX", "VIX", "RUT", "DJX", "XSP", "OEX", "XEO", "XND", "VXN", "RVX", "VIX9D", "VVIX"}
)
"""Indices written bare in the reader form (`SPX`); another index keeps Polygon's prefix (`I:FOO`)."""

CLASS_SHARE_ROOTS = {
    "BRKB": "BRK.B",  # Berkshire Hathaway Class B
    "BFA": "BF.A",  # Brown-Forman Class A
    "BFB": "BF.B",  # Brown-Forman Class B
    "LENB": "LEN.B",  # Lennar Class B
    "HEIA": "HEI.A",  # HEICO Class A
    "MOGA": "MOG.A",  # Moog Class A
    "CWENA": "CWEN.A",  # Clearway Energy Class A
    "UHALB": "UHAL.B",  # U-Haul Holding Series N (non-voting)
    "GEFB": "GEF.B",  # Greif Class B
}
"""OCC option roots of class shares, by root: the class share's ticker without its dot (OCC roots
hold no punctuation: Berkshire B options are `BRKB261204C00480000` on Tradier and Polygon alike).
Kept by hand: each is a real NYSE class share; BRKB is confirmed as an option root (the issue's
recorded symbols), the others are taken to follow the same rule (root = ticker without the dot),
unconfirmed. An OCC root missing from the table is read as a stock of that name."""

WEEKLY_ROOTS = {"SPXQ": "SPX", "NDXP": "NDX"}
"""Option roots of an index not written name + W (which `parse_symbol` maps to the index too)."""

INDEX_PREFIX = "I:"
OPTION_PREFIX = "O:"

# A letter first, then letters or digits, with single '.' or '-' separators inside (BF-B).
_TICKER = re.compile(rf"[A-Z](?:[A-Z0-9]|[.\-](?=[A-Z0-9])){{0,{MAX_SYMBOL_LEN - 1}}}")
# A class share: a base of letters, one '.', '-' or '/', a class of one or two letters (BRK.B).
_CLASS_SHARE = re.compile(r"([A-Z]{1,6})[./\-]([A-Z]{1,2})")
_INDEX_NAME = re.compile(r"[A-Z][A-Z0-9]{0,9}")
# OCC: root (letter first, up to 6, digits allowed: AAPL1), YYMMDD, C or P, strike x 1000 in 8 digits.
_OCC = re.compile(r"([A-Z][A-Z0-9]{0,5})(\d{2})(\d{2})(\d{2})([CP])(\d{8})")
# The OSI form pads the root with spaces to 6 characters: 'AAPL  261204C00150000'.
_OSI = re.compile(r"([A-Z][A-Z0-9]{0,5}) *(\d{6}[CP]\d{8})")
# A class share's option written with the share's separator in its root (BRK.B, BRK-B, BRK/B).
_DOTTED_ROOT = re.compile(r"([A-Z]{1,4})[./\-]([A-Z]{1,2})(\d{6}[CP]\d{8})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_OCC_FORM = "an OCC symbol reads ROOT + YYMMDD + C/P + strike x 1000 in 8 digits ('AAPL261204C00150000')"
ACCEPTED_FORM = (
    f"use 1-{MAX_SYMBOL_LEN} characters: a letter first, then letters, digits, or a single '.' or "
    "'-' between them (e.g. 'AAPL', 'BRK.B'); an index (e.g. 'SPX', 'I:SPX', '^SPX'); or an OCC "
    "option symbol, ROOT + YYMMDD + C/P + strike x 1000 in 8 digits (e.g. 'AAPL261204C00150000')"
)


@dataclass(frozen=True)
class OccParts:
    """The parts of an OCC option symbol: `root` (the option root: SPXW, AAPL1, BRKB),
    `underlying` (the reader form of what it is an option on: SPXW -> SPX; a class share's root
    from `CLASS_SHARE_ROOTS`, BRKB -> BRK.B; an adjusted root AAPL1 -> AAPL; any other root is
    taken to be a stock of that name, a guess, since the OCC symbol does not carry the underlying),
    `expiration`, `option_type` and `strike` in dollars."""

    root: str
    underlying: str
    expiration: date
    option_type: Literal["call", "put"]
    strike: float


@dataclass(frozen=True)
class Symbol:
    """One symbol in its reader form `text`, its `kind`, and for an option its `occ` parts."""

    text: str
    kind: SymbolKind
    occ: OccParts | None = None

    @property
    def bare(self) -> str:
        """The symbol without a reader prefix (`I:FOO` -> `FOO`): Tradier's form of an index."""
        return self.text.removeprefix(INDEX_PREFIX)

    def __str__(self) -> str:
        return self.text


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
    """Return `symbol` in its reader form (`brk-b` -> `BRK.B`, `^spx` -> `SPX`, `O:AAPL...` ->
    `AAPL...`), or raise `InvalidSymbol` naming the value and the accepted forms."""
    return parse_symbol(symbol).text


def parse_symbol(symbol: object) -> Symbol:
    """`symbol` as a `Symbol` (reader form, kind, OCC parts), or `InvalidSymbol` naming the value,
    what is wrong (an OCC date that does not exist, a zero strike) and the accepted forms."""
    if isinstance(symbol, Symbol):
        return symbol
    if not isinstance(symbol, str):
        raise InvalidSymbol(shown(symbol), f"expected a str such as 'AAPL', got {type(symbol).__name__}")
    return _parse_str(symbol)


def underlying_symbol(symbol: object, what: str) -> str:
    """The reader form of `symbol` for data of a stock, ETF or index (`what`: "option chain",
    "price history"...). Raises `InvalidSymbol` for an OCC option symbol, naming its underlying
    (only a contract's quote is served), or for a malformed symbol."""
    parsed = parse_symbol(symbol)
    if parsed.occ is None:
        return parsed.text
    raise InvalidSymbol(
        shown(symbol),
        f"it is an option contract, which has a quote but no {what}; ask for the {what} of its "
        f"underlying {parsed.occ.underlying!r}, or for the contract's quote",
    )


def is_option_symbol(symbol: str) -> bool:
    """True when `symbol` (a reader form) is an OCC option symbol."""
    return len(symbol) > MAX_SYMBOL_LEN and _OCC.fullmatch(symbol) is not None


@lru_cache(maxsize=8192)
def _parse_str(symbol: str) -> Symbol:
    if len(symbol) <= _MAX_INPUT_LEN and symbol.isascii() and not _CONTROL.search(symbol):
        upper = symbol.strip(_PADDING).upper()
        parsed = _parse_upper(upper)
        if isinstance(parsed, Symbol):
            return parsed
        if parsed is not None:
            raise InvalidSymbol(shown(symbol), parsed)
    raise InvalidSymbol(shown(symbol), _reason(symbol))


def _parse_upper(upper: str) -> Symbol | str | None:
    """The `Symbol` of an upper-case, trimmed ASCII text; a reason when it is an OCC symbol with a
    bad part; None when it is no symbol at all."""
    if upper.startswith(OPTION_PREFIX):
        return _option(upper.removeprefix(OPTION_PREFIX))
    for prefix in (INDEX_PREFIX, "^", "$"):
        if upper.startswith(prefix):
            name = upper[len(prefix) :]
            if _INDEX_NAME.fullmatch(name) is None:
                return None
            return Symbol(name if name in INDICES else INDEX_PREFIX + name, "index")
    if len(upper) > MAX_SYMBOL_LEN:
        return _option(upper)
    if upper in INDICES:
        return Symbol(upper, "index")
    share = _CLASS_SHARE.fullmatch(upper)
    if share is not None:
        return Symbol(f"{share[1]}.{share[2]}", "class_share")
    if _TICKER.fullmatch(upper) is not None:
        return Symbol(upper, "stock")
    return None


def _option(text: str) -> Symbol | str | None:
    dotted = _DOTTED_ROOT.fullmatch(text)
    if dotted is not None:  # BRK-B261204C... (Yahoo's spelling): OCC writes the root BRKB
        text = dotted[1] + dotted[2] + dotted[3]
    osi = _OSI.fullmatch(text)
    if osi is None:
        return None
    compact = osi[1] + osi[2]
    occ = _OCC.fullmatch(compact)
    if occ is None:
        return None
    root, yy, mm, dd, kind, strike_milli = occ.groups()
    try:
        expiration = date(2000 + int(yy), int(mm), int(dd))
    except ValueError:
        return f"its expiration {yy}{mm}{dd} is not a date (YYMMDD); {_OCC_FORM}"
    strike = int(strike_milli) / 1000
    if strike <= 0:
        return f"its strike {strike_milli} is zero; {_OCC_FORM}"
    underlying = root_underlying(root)
    parts = OccParts(root, underlying, expiration, "call" if kind == "C" else "put", strike)
    return Symbol(compact, "option", parts)


def root_underlying(root: str) -> str:
    """The reader form of what an OCC option root is on: an index's weekly root (name + W: RUTW, or
    one of `WEEKLY_ROOTS`) the index; a class share's root (BRKB, and adjusted BRKB1) the class
    share of `CLASS_SHARE_ROOTS` (BRK.B); another adjusted root (AAPL1) the root without its digits
    (a guess: the OCC symbol does not say)."""
    if root in WEEKLY_ROOTS:
        return WEEKLY_ROOTS[root]
    if root.endswith("W") and root[:-1] in INDICES:
        return root[:-1]
    base = root.rstrip("0123456789") or root
    return CLASS_SHARE_ROOTS.get(base, base)


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
