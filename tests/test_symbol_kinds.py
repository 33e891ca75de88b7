"""Class shares, indices and option contracts against the emulator, provider by provider and end to end.

The emulator serves each upstream's conventions: Tradier knows `BRK/B` (not `BRK.B`), quotes OCC
symbols in the stock batch, sends index quotes with null bid/ask and volume 0; Polygon names
indices `I:SPX` and sends their bars without `v`, `vw`, `n`; both list SPX options on the roots
SPX and SPXW. The clock stands on Tuesday 2026-11-24, 10:00 ET.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import aiohttp
import pytest

from agent_tools import tools
from emulator.market import INDICES as SIMULATED_INDICES
from reader import Quote, Reader, UnknownSymbol
from reader.__main__ import main
from reader.calendar import EXCHANGE_TZ
from reader.symbols import INDICES
from tests.conftest import StartWorker
from tests.support import FakeClock, RunningEmulator, make_gate
from worker.providers.polygon import PolygonProvider
from worker.providers.tradier import QUOTES_ENDPOINT, TradierProvider

OPTION = "AAPL261204C00150000"  # listed in the emulator on that Tuesday
MONTHLY = date(2026, 12, 18)
WAIT_S = 5.0


def freshness(fetched_at: datetime) -> datetime:
    return fetched_at + timedelta(seconds=20)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def _both_on(emulator: RunningEmulator) -> dict[str, dict[str, object]]:
    """`providers` of a worker config with Tradier and Polygon both served by `emulator`."""
    return {
        "tradier": {"base_url": emulator.url, "rate_per_min": 600, "batch_size": 100},
        "polygon": {"base_url": emulator.url, "rate_per_min": 600},
    }


def _tradier(session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock) -> TradierProvider:
    return TradierProvider(
        session,
        base_url=emulator.url,
        api_key="symbols-test-key",
        gate=make_gate("tradier", clock),
        batch_size=100,
        timeout_s=5.0,
        clock=clock,
    )


def _polygon(session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock) -> PolygonProvider:
    return PolygonProvider(
        session,
        base_url=emulator.url,
        api_key="symbols-test-key",
        gate=make_gate("polygon", clock),
        batch_size=100,
        timeout_s=5.0,
        clock=clock,
    )


# --- Tradier -------------------------------------------------------------------------------


async def test_an_index_off_the_known_list_is_not_answered_by_a_stock_of_that_ticker(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """`I:FOO` goes to Tradier bare; its answer for the stock FOO is no index quote: unmatched."""
    batch = await _tradier(session, emulator, clock).fetch_quotes(["I:FOO", "AAPL"], freshness=freshness)
    assert [q.symbol for q in batch.quotes] == ["AAPL"]
    assert batch.unmatched == ("I:FOO",)


async def test_tradier_quotes_a_class_share_an_index_and_an_option_in_one_call(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """BRK.B goes out as BRK/B, SPX bare, the OCC symbol as is; the answers are keyed by reader form."""
    batch = await _tradier(session, emulator, clock).fetch_quotes(
        ["BRK.B", "SPX", OPTION], freshness=freshness
    )
    assert emulator.calls() == {"200": 1}
    assert set(emulator.state.stats()["quoted"]) == {"BRK/B", "SPX", OPTION}
    assert batch.unmatched == ()
    quotes = {q.symbol: q for q in batch.quotes}
    assert set(quotes) == {"BRK.B", "SPX", OPTION}
    assert quotes["BRK.B"].description == "Berkshire Hathaway Inc Class B"
    index = quotes["SPX"]
    assert index.type == "index"
    assert index.last is not None
    assert index.last > 0
    assert (index.bid, index.ask, index.bid_date, index.volume) == (None, None, None, None)
    assert (index.bidsize, index.asksize, index.last_volume) == (None, None, None)  # not Tradier's 0s
    option = quotes[OPTION]
    assert option.type == "option"
    assert (option.underlying, option.strike, option.expiration_date, option.option_type) == (
        "AAPL",
        150.0,
        date(2026, 12, 4),
        "call",
    )
    assert option.open_interest is not None
    assert option.bid is not None
    assert option.ask is not None
    assert option.bid <= option.ask
    assert option.delta is not None  # asked with greeks=true
    assert 0 < option.delta <= 1
    assert option.mid_iv is not None
    assert option.mid_iv > 0


async def test_tradier_reports_an_unlisted_contract_and_a_dotted_class_share_as_unmatched(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """A well-formed OCC symbol that is not listed comes back unmatched, keyed by reader form; an
    unmatched class share is asked once more as ZZZZ.B (Tradier's form is unconfirmed)."""
    unlisted = "AAPL261204C00150500"  # no $150.50 strike
    batch = await _tradier(session, emulator, clock).fetch_quotes(["ZZZZ.B", unlisted], freshness=freshness)
    assert batch.quotes == ()
    assert sorted(batch.unmatched) == sorted(["ZZZZ.B", unlisted])
    assert set(emulator.state.stats()["quoted"]) == {"ZZZZ/B", unlisted, "ZZZZ.B"}
    assert emulator.calls() == {"200": 2}  # the class share asked again in the dotted form


async def test_tradier_emulator_knows_brk_slash_b_and_not_brk_dot_b(
    session: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    """The emulator serves Tradier's reported convention, so the client's mapping is exercised."""
    headers = {"Authorization": "Bearer k", "Accept": "application/json"}
    url = emulator.url + QUOTES_ENDPOINT
    async with session.get(url, params={"symbols": "BRK/B,BRK.B,AAPL261204C0015"}, headers=headers) as r:
        body = await r.json()
    assert body["quotes"]["quote"]["symbol"] == "BRK/B"
    assert body["quotes"]["unmatched_symbols"]["symbol"] == ["BRK.B", "AAPL261204C0015"]


async def test_tradier_index_history_has_no_volume(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """Tradier's index bars say volume 0: stored as None (no volume), with prices."""
    history = await _tradier(session, emulator, clock).fetch_history(
        "SPX", "1d", date(2026, 11, 2), date(2026, 11, 23), freshness=freshness
    )
    assert history is not None
    assert history.symbol == "SPX"
    assert len(history.bars) == 16
    assert all(bar.volume is None and bar.close > 0 for bar in history.bars)


async def test_tradier_index_chain_holds_both_roots_of_a_monthly_date(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """SPX's expirations include the SPXW weeklies; the monthly chain has SPX and SPXW contracts."""
    provider = _tradier(session, emulator, clock)
    listed = await provider.fetch_expirations("SPX", freshness=freshness)
    chain = await provider.fetch_chain("SPX", MONTHLY, freshness=freshness)
    assert listed is not None
    assert listed.dates[:4] == (date(2026, 11, 27), date(2026, 12, 4), date(2026, 12, 11), MONTHLY)
    assert chain is not None
    assert chain.symbol == "SPX"
    assert {c.symbol[:4] for c in chain.contracts} == {"SPX2", "SPXW"}


# --- Polygon -------------------------------------------------------------------------------


async def test_polygon_index_history_is_asked_as_i_spx_and_its_bars_have_no_volume(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """Index aggregates carry no v, vw or n (nor resultsCount): accepted, bars at midnight ET."""
    history = await _polygon(session, emulator, clock).fetch_history(
        "SPX", "1d", date(2026, 11, 2), date(2026, 11, 23), freshness=freshness
    )
    assert emulator.calls("/v2/aggs/ticker/I:SPX/range/1/day/2026-11-02/2026-11-23") == {"200": 1}
    assert history is not None
    assert history.symbol == "SPX"
    assert len(history.bars) == 16
    assert all(bar.volume is None and bar.vwap is None for bar in history.bars)
    starts = {bar.start.astimezone(EXCHANGE_TZ).time().isoformat() for bar in history.bars}
    assert starts == {"00:00:00"}  # Polygon stamps them 01:00 New York


async def test_polygon_emulator_sends_index_bars_without_volume_fields(
    session: aiohttp.ClientSession, emulator: RunningEmulator
) -> None:
    """The recorded shape: no v/vw/n, no resultsCount/adjusted, 01:00 New York stamps."""
    url = emulator.url + "/v2/aggs/ticker/I:SPX/range/1/day/2026-11-02/2026-11-06"
    async with session.get(url, headers={"Authorization": "Bearer k"}) as r:
        body = await r.json()
    assert "resultsCount" not in body
    assert "adjusted" not in body
    assert [sorted(bar) for bar in body["results"]] == [["c", "h", "l", "o", "t"]] * 5
    first = datetime.fromtimestamp(body["results"][0]["t"] / 1000, EXCHANGE_TZ)
    assert (first.date(), first.hour) == (date(2026, 11, 2), 1)


async def test_polygon_quotes_an_option_from_its_contract_snapshot(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """Stocks from the stocks snapshot, the contract from /v3/snapshot/options/AAPL/O:...; one each."""
    batch = await _polygon(session, emulator, clock).fetch_quotes(["BRK.B", OPTION], freshness=freshness)
    assert emulator.calls(f"/v3/snapshot/options/AAPL/O:{OPTION}") == {"200": 1}
    assert emulator.calls("/v2/snapshot/locale/us/markets/stocks/tickers") == {"200": 1}
    quotes = {q.symbol: q for q in batch.quotes}
    assert set(quotes) == {"BRK.B", OPTION}
    option = quotes[OPTION]
    assert (option.type, option.underlying, option.strike, option.option_type) == (
        "option",
        "AAPL",
        150.0,
        "call",
    )
    assert option.expiration_date == date(2026, 12, 4)
    assert option.bid is not None
    assert option.delta is not None
    assert option.open_interest is not None


async def test_polygon_quotes_indices_from_the_indices_snapshot(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """SPX and VIX go out as I:SPX and I:VIX in one indices-snapshot call; an unknown index is unmatched."""
    batch = await _polygon(session, emulator, clock).fetch_quotes(
        ["SPX", "VIX", "I:NOPE", "AAPL"], freshness=freshness
    )
    assert emulator.calls("/v3/snapshot/indices") == {"200": 1}
    quotes = {q.symbol: q for q in batch.quotes}
    assert set(quotes) == {"SPX", "VIX", "AAPL"}
    assert batch.unmatched == ("I:NOPE",)
    spx = quotes["SPX"]
    assert (spx.type, spx.description) == ("index", "S&P 500 Index")
    assert spx.last is not None
    assert spx.prevclose is not None
    assert (spx.bid, spx.ask, spx.volume) == (None, None, None)


async def test_polygon_reports_an_unlisted_contract_as_unmatched(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """A 404 NOT_FOUND on the contract snapshot is an unknown symbol, not a failure."""
    batch = await _polygon(session, emulator, clock).fetch_quotes(
        ["AAPL261204C00150500"], freshness=freshness
    )
    assert (batch.quotes, batch.unmatched) == ((), ("AAPL261204C00150500",))
    assert emulator.calls("/v3/snapshot/options/AAPL/O:AAPL261204C00150500") == {"404": 1}


async def test_polygon_index_chain_and_index_option_quote(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """The options snapshot of I:SPX: both roots, the index value as the underlying price; an
    SPXW contract's quote names SPX as its underlying."""
    provider = _polygon(session, emulator, clock)
    chain = await provider.fetch_chain("SPX", MONTHLY, freshness=freshness)
    assert chain is not None
    assert {c.symbol[:4] for c in chain.contracts} == {"SPX2", "SPXW"}
    assert chain.underlying_price is not None
    assert chain.underlying_price > 0
    weekly = next(c.symbol for c in chain.contracts if c.symbol.startswith("SPXW"))
    batch = await provider.fetch_quotes([weekly], freshness=freshness)
    assert [(q.symbol, q.underlying) for q in batch.quotes] == [(weekly, "SPX")]
    assert emulator.calls(f"/v3/snapshot/options/I:SPX/O:{weekly}") == {"200": 1}


async def test_every_known_index_quotes_as_an_index_on_both_providers(
    session: aiohttp.ClientSession, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """VIX9D, VVIX and every other index the reader knows by name is an index upstream, not a stock."""
    assert SIMULATED_INDICES == INDICES
    for provider in (_tradier(session, emulator, clock), _polygon(session, emulator, clock)):
        batch = await provider.fetch_quotes(sorted(INDICES), freshness=freshness)
        assert batch.unmatched == ()
        quotes = {q.symbol: q for q in batch.quotes}
        assert set(quotes) == INDICES
        assert {q.type for q in quotes.values()} == {"index"}
        assert quotes["VIX9D"].description == "CBOE S&P 500 9-Day Volatility Index"
        assert (quotes["VIX9D"].bid, quotes["VIX9D"].volume) == (None, None)


# --- end to end ------------------------------------------------------------------------------


async def test_a_missed_option_quote_is_fetched_by_the_worker(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """quote() of an OCC symbol (any accepted spelling) misses, enqueues, and the worker answers it;
    an unlisted contract is unknown, an expired one says when it expired."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        quote = await reader.quote("O:aapl261204c00150000")
        again = await reader.quote(OPTION)
        with pytest.raises(UnknownSymbol):
            await reader.quote("AAPL261204C00150500")
        with pytest.raises(UnknownSymbol, match="the contract expired on 2026-11-20"):
            await reader.quote("AAPL261120C00150000")
    assert quote.symbol == OPTION
    assert (quote.underlying, quote.strike, quote.option_type) == ("AAPL", 150.0, "call")
    assert again == quote
    assert sum(emulator.calls().values()) == 3


async def test_quotes_of_a_class_share_an_index_and_an_option_come_from_tradier(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """quotes() of every kind, in other spellings too, keyed as asked; each cached under its reader form."""
    async with (
        start_worker(["BRK-B", "^SPX"]),  # the contract is quoted on demand
        Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader,
    ):
        results = await reader.quotes(["brk/b", "I:SPX", OPTION])
        cached = await reader.quote("BRK.B")
    assert all(isinstance(r, Quote) for r in results.values()), results
    found = {r.symbol for r in results.values() if isinstance(r, Quote)}
    assert found == {"BRK.B", "SPX", OPTION}
    assert cached.symbol == "BRK.B"


@pytest.mark.parametrize("upstream", ["tradier", "polygon"])
async def test_a_contract_read_from_a_class_share_chain_is_quoted_on_demand(
    upstream: str, redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """BRK.B's chain lists BRKB contracts (the OCC root has no dot); quoting one misses, and the
    worker fetches it (Tradier: in the quotes batch; Polygon: /v3/snapshot/options/BRK.B/O:BRKB...)."""
    datasets = {"quotes": {"provider": upstream}, "chains": {"provider": upstream}}
    providers = _both_on(emulator)
    async with (
        start_worker(datasets=datasets, providers=providers),
        Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader,
    ):
        chain = await reader.chain("BRK.B", MONTHLY, "calls")
        contract = chain.contracts[len(chain.contracts) // 2]
        quote = await reader.quote(contract.symbol)
    assert chain.symbol == "BRK.B"
    assert {c.symbol[:4] for c in chain.contracts} == {"BRKB"}
    assert contract.symbol == f"BRKB261218C{round(contract.strike * 1000):08d}"
    assert (quote.symbol, quote.type, quote.underlying) == (contract.symbol, "option", "BRK.B")
    assert (quote.strike, quote.expiration_date) == (contract.strike, MONTHLY)
    if upstream == "polygon":
        assert emulator.calls(f"/v3/snapshot/options/BRK.B/O:{contract.symbol}") == {"200": 1}


async def test_the_cli_and_the_tools_quote_an_option(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m reader quote <OCC>` and get_stock_quote(<OCC>) answer with the contract's fields."""
    async with start_worker(), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        await reader.quote(OPTION)  # cached now
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["--wait", "0", "quote", OPTION.lower()]) == 0
    assert f'"{OPTION}"' in capsys.readouterr().out
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        tools.use_reader(reader)
        try:
            answer = await tools.get_stock_quote(OPTION)
        finally:
            tools.use_reader(None)
    data = json.loads(answer)
    assert (data["symbol"], data["underlying"], data["strike"], data["option_type"]) == (
        OPTION,
        "AAPL",
        150.0,
        "call",
    )


async def test_index_history_from_polygon_through_the_reader(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """history("^SPX") misses, the worker asks Polygon for I:SPX, and bars without volume are served."""
    datasets = {"history": {"provider": "polygon", "intraday": None}}
    providers = _both_on(emulator)
    async with (
        start_worker(datasets=datasets, providers=providers),
        Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader,
    ):
        history = await reader.history("^SPX")
    assert history.symbol == "SPX"
    assert history.source == "polygon"
    assert len(history.bars) > 200
    assert all(bar.volume is None for bar in history.bars)
