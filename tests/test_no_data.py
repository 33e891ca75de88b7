"""Empty is not unknown: a listed symbol without data of a kind now (no options, no bars yet for a
new listing, no intraday bars over a weekend) is remembered as such until the dataset's next
refresh, so neither a restart nor a reader's ask calls the upstream again for it before then; and
readers are told "no data", not `UnknownSymbol`.

The emulator lists `NOOPT*` without options and `IPO*` as new listings without bars (as Tradier
answers them: `{"expirations": null}`, `{"options": null}`, `{"history": null}`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio

from emulator.state import EmulatorOptions, Fault
from reader import NoData, PriceHistory, Reader, SyncReader, UnknownSymbol, keys
from tests.conftest import RunBatches, StartWorker
from tests.support import FakeClock, RunningEmulator, make_config
from tests.test_emulator_datasets import polygon, tradier
from worker.config import Secrets
from worker.runtime import Runtime

WAIT_S = 5.0
EXPIRATIONS = "/v1/markets/options/expirations"
CHAINS = "/v1/markets/options/chains"
HISTORY = "/v1/markets/history"
TIMESALES = "/v1/markets/timesales"
QUOTES = "/v1/markets/quotes"
ONLY_CHAINS = {"history": {"enabled": False}, "indicators": {"enabled": False}}
DAILY_ONLY = {
    "expirations": {"enabled": False},
    "chains": {"enabled": False},
    "history": {"intraday": None},
}


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    return EmulatorOptions(seed=11, rate_per_min=1000)


def _calls(emulator: RunningEmulator) -> dict[str, int]:
    return {path: sum(by_status.values()) for path, by_status in emulator.state.stats()["calls"].items()}


async def test_the_emulator_answers_listed_symbols_without_data_as_the_upstreams_do(
    emulator: RunningEmulator,
) -> None:
    """NOOPT and IPOX are quoted (listed); NOOPT has no options, IPOX no bars, options or indicators:
    Tradier's null wrappers and Polygon's aggregates without `results`, as for an unknown symbol."""
    quotes = await tradier(emulator, QUOTES, symbols="NOOPT,IPOX")
    assert [q["symbol"] for q in quotes["quotes"]["quote"]] == ["NOOPT", "IPOX"]
    assert "unmatched_symbols" not in quotes["quotes"]
    for symbol in ("NOOPT", "IPOX"):
        assert await tradier(emulator, EXPIRATIONS, symbol=symbol) == {"expirations": None}
        assert await tradier(emulator, CHAINS, symbol=symbol, expiration="2026-11-27") == {"options": None}
    assert await tradier(emulator, HISTORY, symbol="IPOX") == {"history": None}
    assert await tradier(emulator, TIMESALES, symbol="IPOX") == {"series": None}
    assert (await tradier(emulator, HISTORY, symbol="NOOPT"))["history"]["day"]
    aggs = await polygon(emulator, "/v2/aggs/ticker/IPOX/range/1/day/2026-01-01/2026-11-24")
    assert (aggs["status"], aggs["resultsCount"], "results" in aggs) == ("OK", 0, False)
    sma = await polygon(emulator, "/v1/indicators/sma/IPOX", window=20)
    assert sma["results"]["values"] == []
    snapshot = await polygon(emulator, "/v3/snapshot/options/NOOPT")
    assert snapshot["results"] == []


async def test_an_underlying_without_options_costs_no_call_after_a_restart_and_reads_as_no_options(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, run_scheduled_batches: RunBatches
) -> None:
    """First start: one expirations call for NOOPT; a restart while that answer is fresh: no more;
    `chain()` says it lists no options, with when that was checked and when it is checked again."""
    config = make_config(
        ["SPY", "NOOPT"], redis_url=redis_url, tradier_url=emulator.url, datasets=ONLY_CHAINS
    )
    first = await run_scheduled_batches(config)
    assert first.jobs_failed == 0
    started = _calls(emulator)
    assert started[EXPIRATIONS] == 2  # SPY and NOOPT
    clock.advance(60)
    await run_scheduled_batches(config)  # a second worker starting: its catch-up finds them fresh
    assert _calls(emulator)[EXPIRATIONS] == 2
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        with pytest.raises(
            NoData, match=r"'NOOPT'.*NOOPT lists no options \(checked 2026-11-24 15:01 UTC"
        ) as no:
            await reader.chain("NOOPT")
        assert "checks again after 2026-11-2" in no.value.detail
        assert (await reader.expirations("NOOPT")).dates == ()
        bundle = await reader.bundle("NOOPT", options=True)
        assert isinstance(bundle.chains, NoData)
        assert (await reader.chain("SPY")).contracts


async def test_a_new_listing_without_daily_bars_costs_no_call_after_a_restart(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, run_scheduled_batches: RunBatches
) -> None:
    """A listing with no bars yet is stored as an empty bar list, fresh until the next daily refresh:
    a restart a minute later makes no history call, and the reader returns no bars (not UnknownSymbol)."""
    config = make_config(["SPY", "IPOX"], redis_url=redis_url, tradier_url=emulator.url, datasets=DAILY_ONLY)
    await run_scheduled_batches(config)
    started = _calls(emulator)
    assert started[HISTORY] == 2
    clock.advance(60)
    await run_scheduled_batches(config)
    assert _calls(emulator)[HISTORY] == 2
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        empty = await reader.history("IPOX")
        spy = await reader.history("SPY")
    assert (empty.symbol, empty.interval, empty.bars, empty.stale) == ("IPOX", "1d", (), False)
    assert empty.fresh_until == spy.fresh_until
    assert len(spy.bars) > 200


async def test_intraday_bars_asked_over_a_weekend_cost_no_call_after_a_reload(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, run_scheduled_batches: RunBatches
) -> None:
    """Saturday, a one-day intraday lookback: no bars; remembered until Monday's refresh, so a second
    start a minute later (with a reload's catch-up) makes no timesales call."""
    clock.now = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)  # Saturday, 12:00 ET
    datasets = {
        "expirations": {"enabled": False},
        "chains": {"enabled": False},
        "indicators": {"enabled": False},
        "history": {"intraday": {"bar": "5m", "lookback_days": 1}},
    }
    config = make_config(["SPY"], redis_url=redis_url, tradier_url=emulator.url, datasets=datasets)
    await run_scheduled_batches(config)
    started = _calls(emulator)
    assert started[TIMESALES] == 1
    clock.advance(60)
    redis.Redis.from_url(redis_url).set(keys.catch_up(), "1")  # as a reload elsewhere in the fleet
    await run_scheduled_batches(config)
    assert _calls(emulator)[TIMESALES] == 1
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        bars = await reader.history("SPY", "5m")
    assert (bars.bars, bars.stale) == ((), False)
    assert bars.fresh_until.astimezone(UTC) > datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday's refresh


async def test_on_demand_no_options_is_no_data_not_unknown_and_costs_no_second_call(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """An underlying off the watchlist without options: the first ask calls expirations once (and
    quotes once, to tell it is listed); every later ask, nearest or dated, is answered NoData without
    a call; nothing lands in the negative cache. A symbol the upstream does not know stays unknown."""
    async with start_worker(datasets={"chains": {}}), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        with pytest.raises(NoData, match=r"NOOPTB lists no options \(checked 2026-11-24 15:00 UTC"):
            await reader.chain("NOOPTB")
        calls = _calls(emulator)
        assert (calls[EXPIRATIONS], calls[QUOTES], calls.get(CHAINS, 0)) == (1, 1, 0)
        for ask in (None, "2026-11-27", None):
            with pytest.raises(NoData, match="NOOPTB lists no options"):
                await reader.chain("NOOPTB", ask)
        assert _calls(emulator) == calls
        with pytest.raises(UnknownSymbol, match=r"tradier has no options for it, and tradier does not know"):
            await reader.chain("ZZQQ")
        with pytest.raises(NoData, match=r"NOOPTD lists no options \(checked 2026-11-24 15:00 UTC"):
            await reader.chain("NOOPTD", "2026-11-27")  # a first ask for a date says the same
        with SyncReader(redis_url, clock=clock, wait_s=WAIT_S) as sync, pytest.raises(NoData, match="NOOPTB"):
            await asyncio.to_thread(sync.chain, "NOOPTB", "2026-11-27")
    client = redis.Redis.from_url(redis_url)
    assert not client.exists(keys.unknown("chains", "NOOPTB"))
    assert client.exists(keys.unknown("chains", "ZZQQ"))


async def test_on_demand_new_listing_has_empty_bars_and_no_indicators_without_a_second_call(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """A new listing's daily bars are an empty list; its computed indicators are NoData, answered from
    the remembered empty bars without another history call."""
    datasets = {"history": {"intraday": None}}
    async with start_worker(datasets=datasets), Reader(redis_url, clock=clock, wait_s=WAIT_S) as reader:
        bars = await reader.history("IPOY")
        assert bars.bars == ()
        with pytest.raises(NoData, match=r"tradier has no daily bars of IPOY yet.*checked 2026-11-24 15:00"):
            await reader.indicators("IPOY")
        assert (await reader.history("IPOY")).bars == ()
    assert _calls(emulator)[HISTORY] == 1
    assert not redis.Redis.from_url(redis_url).exists(keys.unknown("indicators", "IPOY"))


@pytest.fixture
async def runtime(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> AsyncIterator[Runtime]:
    datasets = {"chains": {}, "history": {"intraday": None}}
    config = make_config(["AAPL"], redis_url=redis_url, tradier_url=emulator.url, datasets=datasets)
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as opened:
        yield opened
    await client.aclose()


async def test_a_stored_quote_tells_a_symbol_is_listed_without_a_quotes_call(
    runtime: Runtime, emulator: RunningEmulator
) -> None:
    """With its quote stored, a symbol without options costs the expirations call only."""
    await runtime.refresh("quotes", ["NOOPTC"])
    report = await runtime.refresh("expirations", ["NOOPTC"])
    assert (report.no_data, report.unmatched, report.failed) == (("NOOPTC",), (), ())
    assert _calls(emulator)[QUOTES] == 1
    stored = await runtime.store.get(PriceHistory, keys.history("NOOPTC", "1d"))
    assert stored is None  # only what was asked for is stored


async def test_a_symbol_whose_listing_cannot_be_told_fails_and_is_neither_unknown_nor_empty(
    runtime: Runtime, emulator: RunningEmulator
) -> None:
    """History answers null while the quotes endpoint is down: a failed refresh (worth a retry),
    nothing stored; not unmatched, so no negative cache would follow."""
    emulator.state.arm(Fault(path=QUOTES, status=503, body="down", times=None))
    report = await runtime.refresh("history", ["IPOZ"])
    assert (report.failed, report.unmatched, report.no_data, report.retryable) == (
        ("IPOZ",),
        (),
        (),
        ("IPOZ",),
    )
    assert "whether it lists the symbol could not be told" in report.errors[0]
    assert await runtime.store.get(PriceHistory, keys.history("IPOZ", "1d")) is None


async def test_an_empty_answer_keeps_the_bars_stored_before_fresh_until_the_next_refresh(
    runtime: Runtime, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """`{"history": null}` for a symbol with stored bars keeps those bars (still the latest there
    are) and moves their `fresh_until` to the next refresh, so no catch-up asks again before it."""
    await runtime.refresh("history", ["AAPL"])
    before = await runtime.store.get(PriceHistory, keys.history("AAPL", "1d"))
    assert before is not None
    clock.now = before.fresh_until
    emulator.state.arm(Fault(path=HISTORY, status=200, body='{"history": null}'))
    report = await runtime.refresh("history", ["AAPL"])
    after = await runtime.store.get(PriceHistory, keys.history("AAPL", "1d"))
    assert report.no_data == ("AAPL",)
    assert after is not None
    assert (after.bars, after.fetched_at) == (before.bars, before.fetched_at)
    assert after.fresh_until > clock.now


async def test_polygon_answers_without_results_are_no_data_for_a_listed_symbol_and_unknown_otherwise(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """Polygon's aggregates without `results` and its empty options snapshot: NoData (stored empty)
    for IPOX and NOOPT, which Tradier quotes; unmatched for ZZQQ, which it does not."""
    config = make_config(
        ["AAPL"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        polygon_url=emulator.url,
        datasets={
            "chains": {"provider": "polygon"},
            "history": {"provider": "polygon", "intraday": {"bar": "5m"}},
            "indicators": {"source": "polygon"},
        },
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        history = await runtime.refresh("history", ["IPOX", "ZZQQ"])
        intraday = await runtime.refresh("intraday", ["IPOX"])
        indicators = await runtime.refresh("indicators", ["IPOX"])
        stored = await runtime.store.get(PriceHistory, keys.history("IPOX", "5m"))
    await client.aclose()
    assert (history.no_data, history.unmatched) == (("IPOX",), ("ZZQQ",))
    assert (intraday.no_data, indicators.no_data) == (("IPOX",), ("IPOX",))
    assert stored is not None
    assert (stored.source, stored.bars) == ("polygon", ())


async def test_a_new_listing_in_a_polygon_quote_batch_costs_no_other_quote(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """Polygon quotes a listing without bars yet with the others (its previous day zeroed), and its
    empty history is no data, told by that quote: a new listing never fails the whole batch."""
    config = make_config(
        ["AAPL"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        polygon_url=emulator.url,
        datasets={"quotes": {"provider": "polygon"}, "history": {"provider": "polygon"}},
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        quotes = await runtime.refresh("quotes", ["AAPL", "IPOZ", "MSFT"])
        history = await runtime.refresh("history", ["IPOZ"])
    await client.aclose()
    assert (sorted(quotes.stored), quotes.failed) == (["AAPL", "IPOZ", "MSFT"], ())
    assert (history.no_data, history.failed) == (("IPOZ",), ())
