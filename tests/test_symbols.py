"""Every kind of symbol: one reader form per kind, its parts, and each upstream's form of it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from reader import Bar, InvalidSymbol, PriceHistory, Quote, Reader, SyncReader
from reader.symbols import CLASS_SHARE_ROOTS, OccParts, normalize_symbol, parse_symbol
from worker.config import Config
from worker.providers.symbol_forms import SymbolMap, polygon_ticker, polygon_underlyings, tradier_symbol

# (as typed, reader form, kind)
SPELLINGS = [
    ("aapl", "AAPL", "stock"),
    ("BRK.B", "BRK.B", "class_share"),
    ("brk-b", "BRK.B", "class_share"),
    ("BRK/B", "BRK.B", "class_share"),
    ("bf-b", "BF.B", "class_share"),
    ("SPX", "SPX", "index"),
    ("spx", "SPX", "index"),
    ("I:SPX", "SPX", "index"),
    ("^VIX", "VIX", "index"),
    ("$NDX", "NDX", "index"),
    ("i:rut", "RUT", "index"),
    ("I:FOO", "I:FOO", "index"),  # an index off the table keeps Polygon's prefix
    ("^FOO", "I:FOO", "index"),
    ("AAPL261204C00150000", "AAPL261204C00150000", "option"),
    ("aapl261204c00150000", "AAPL261204C00150000", "option"),
    ("O:AAPL261204C00150000", "AAPL261204C00150000", "option"),
    ("AAPL  261204C00150000", "AAPL261204C00150000", "option"),  # OSI: root padded to 6
    ("SPXW261218P05000000", "SPXW261218P05000000", "option"),
    ("AAPL1261204C00150000", "AAPL1261204C00150000", "option"),  # an adjusted root
]


@pytest.mark.parametrize(("typed", "reader_form", "kind"), SPELLINGS)
def test_each_spelling_maps_to_one_reader_form_and_kind(typed: str, reader_form: str, kind: str) -> None:
    """Lower case, other separators and other prefixes all land on the one form cache keys use."""
    parsed = parse_symbol(typed)
    assert (parsed.text, parsed.kind) == (reader_form, kind)
    assert normalize_symbol(typed) == reader_form


@pytest.mark.parametrize(
    ("symbol", "parts"),
    [
        ("AAPL261204C00150000", OccParts("AAPL", "AAPL", date(2026, 12, 4), "call", 150.0)),
        ("SPXW261218P05000000", OccParts("SPXW", "SPX", date(2026, 12, 18), "put", 5000.0)),
        ("SPX261218C04500500", OccParts("SPX", "SPX", date(2026, 12, 18), "call", 4500.5)),
        ("AAPL1261204C00150000", OccParts("AAPL1", "AAPL", date(2026, 12, 4), "call", 150.0)),
        ("F270115P00012500", OccParts("F", "F", date(2027, 1, 15), "put", 12.5)),
        ("NDXP261218C20000000", OccParts("NDXP", "NDX", date(2026, 12, 18), "call", 20000.0)),
        ("BRKB261204C00480000", OccParts("BRKB", "BRK.B", date(2026, 12, 4), "call", 480.0)),
        ("O:BFB261218P00040000", OccParts("BFB", "BF.B", date(2026, 12, 18), "put", 40.0)),
        ("UHALB261218C00060000", OccParts("UHALB", "UHAL.B", date(2026, 12, 18), "call", 60.0)),
        ("BRKB1261204C00480000", OccParts("BRKB1", "BRK.B", date(2026, 12, 4), "call", 480.0)),
        # The share's separator in the root (Yahoo writes BRK-B261204C...): the OCC root has none.
        ("BRK.B261204C00480000", OccParts("BRKB", "BRK.B", date(2026, 12, 4), "call", 480.0)),
        ("brk-b261204p00480000", OccParts("BRKB", "BRK.B", date(2026, 12, 4), "put", 480.0)),
        ("O:BF/B261218P00040000", OccParts("BFB", "BF.B", date(2026, 12, 18), "put", 40.0)),
    ],
)
def test_an_occ_symbol_gives_its_root_underlying_expiration_type_and_strike(
    symbol: str, parts: OccParts
) -> None:
    """Strike in dollars (x 1000 on the wire), weekly and adjusted roots mapped to the underlying."""
    assert parse_symbol(symbol).occ == parts


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("AAPL261232C00150000", "expiration 261232 is not a date"),
        ("AAPL260229C00150000", "expiration 260229 is not a date"),
        ("AAPL261204C00000000", "strike 00000000 is zero"),
        ("AAPL261204X00150000", "OCC option symbol"),
        ("AAPL261204C0015000", "OCC option symbol"),
        ("TOOLONGR261204C00150000", "OCC option symbol"),
        ("O:AAPL", "OCC option symbol"),
        ("I:", "e.g."),
        ("I:SP X", "e.g."),
        ("BRK..B", "e.g."),
        ("BRK/B/C", "e.g."),
        ("AA PL", "e.g."),
    ],
)
def test_malformed_symbols_are_refused_naming_the_value_and_the_fix(typed: str, reason: str) -> None:
    """A bad OCC date or strike says which part is wrong; anything else gets the accepted forms."""
    with pytest.raises(InvalidSymbol) as caught:
        normalize_symbol(typed)
    assert repr(typed) in str(caught.value)
    assert reason in str(caught.value)


# (reader form, Tradier's form, Polygon's ticker): the README's table
FORMS = [
    ("AAPL", "AAPL", "AAPL"),
    ("BRK.B", "BRK/B", "BRK.B"),
    ("SPX", "SPX", "I:SPX"),
    ("I:FOO", "FOO", "I:FOO"),
    ("AAPL261204C00150000", "AAPL261204C00150000", "O:AAPL261204C00150000"),
]


@pytest.mark.parametrize(("reader_form", "tradier", "polygon"), FORMS)
def test_each_upstream_gets_its_own_form(reader_form: str, tradier: str, polygon: str) -> None:
    """Tradier wants BRK/B and bare indices; Polygon BRK.B, I:SPX and O: options."""
    assert tradier_symbol(reader_form) == tradier
    assert polygon_ticker(reader_form) == polygon


def test_an_index_underlying_is_tried_with_and_without_the_prefix_on_polygon() -> None:
    """Which form Polygon's options snapshot wants for an index is unconfirmed: I:SPX first."""
    assert polygon_underlyings("SPX") == ("I:SPX", "SPX")
    assert polygon_underlyings("AAPL") == ("AAPL",)


def test_answers_are_keyed_by_the_reader_form_whatever_spelling_comes_back() -> None:
    """The form sent maps back to what was asked; another spelling the upstream chose still parses."""
    sent = SymbolMap(["BRK.B", "SPX", "I:FOO"], tradier_symbol)
    assert sent.upstream == ["BRK/B", "SPX", "FOO"]
    assert [sent.reader_form(s) for s in ("brk/b", "SPX", "FOO", "BRK-B", "BF/B", "?!")] == [
        "BRK.B",
        "SPX",
        "I:FOO",
        "BRK.B",
        "BF.B",
        "?!",
    ]


NOW = datetime(2026, 11, 24, 15, tzinfo=UTC)


def test_a_bar_without_volume_is_valid_and_round_trips() -> None:
    """An index's bars carry no volume: None is stored and read back, in the array's field order."""
    history = PriceHistory(
        symbol="SPX",
        interval="1d",
        bars=(Bar(NOW, 6000.0, 6010.0, 5990.0, 6005.0, None),),
        source="polygon",
        fetched_at=NOW,
        fresh_until=NOW,
    )
    raw = history.model_dump_json()
    assert '"bars":[["2026-11-24T15:00:00Z",6000.0,6010.0,5990.0,6005.0,null,null]]' in raw
    assert PriceHistory.model_validate_json(raw).bars[0].volume is None


def test_a_quote_stored_before_the_option_fields_still_reads() -> None:
    """Today's stored quotes have none of the option fields: they read, with the fields None."""
    raw = (
        '{"source":"tradier","fetched_at":"2026-11-24T15:00:00.000000Z","fresh_until":'
        '"2026-11-24T15:00:20Z","symbol":"AAPL","last":230.5,"bid":230.4,"ask":230.6,"volume":100}'
    )
    quote = Quote.model_validate_json(raw)
    assert (quote.symbol, quote.last, quote.strike, quote.underlying, quote.delta) == (
        "AAPL",
        230.5,
        None,
        None,
        None,
    )


OCC = "AAPL261204C00150000"


async def test_a_contract_has_a_quote_but_no_chain_history_or_indicators_of_its_own() -> None:
    """Asked for data of underlyings, an OCC symbol is refused before Redis, naming its underlying."""
    closed = "redis://127.0.0.1:1/0"  # nothing may be asked of Redis
    async with Reader(closed, wait_s=0) as reader:
        calls = {
            "expirations": reader.expirations(OCC),
            "option chain": reader.chain(OCC),
            "price history": reader.history(OCC),
            "indicators": reader.indicators(OCC),
            "bundle": reader.bundle(OCC, options=True),
        }
        for what, call in calls.items():
            expected = rf"no {what}; ask for the {what} of its underlying 'AAPL'"
            with pytest.raises(InvalidSymbol, match=expected):
                await call
    with SyncReader(closed, wait_s=0) as sync, pytest.raises(InvalidSymbol, match="underlying 'AAPL'"):
        sync.chain(f"O:{OCC}")


def test_every_class_share_root_is_read_back_to_its_class_share() -> None:
    """Each root of the table is its class share's ticker without the dot, and its OCC symbols
    name that class share (its reader form) as their underlying."""
    for root, share in CLASS_SHARE_ROOTS.items():
        assert share.replace(".", "") == root
        assert parse_symbol(share).kind == "class_share"
        occ = parse_symbol(f"{root}261218C00050000").occ
        assert occ is not None
        assert occ.underlying == share


def test_a_watchlist_lists_underlyings_not_contracts() -> None:
    """An OCC symbol in the watchlist is refused, naming the underlying to list instead."""
    with pytest.raises(ValidationError, match=r"option contract: list its underlying 'SPX' instead"):
        Config.model_validate({"watchlist": ["AAPL", "SPXW261204P05000000"]})
    assert Config.model_validate({"watchlist": ["brk/b", "^spx"]}).watchlist == ["BRK.B", "SPX"]
