"""Reader and SyncReader on each dataset: expirations, chains, history, indicators, bundles, market status."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from reader import (
    Bar,
    Bundle,
    Expirations,
    Indicators,
    InvalidRequest,
    Macd,
    NotCached,
    OptionChain,
    OptionContract,
    PriceHistory,
    Quote,
    Reader,
    SyncReader,
    keys,
)
from reader.calendar import MarketCalendar
from reader.models import ChainIndex
from tests.support import FakeClock, command_calls, reset_command_calls

ET = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 10:00 ET
ENVELOPE = {"source": "tradier", "fetched_at": NOW, "fresh_until": NOW + timedelta(seconds=60)}
EXPIRATIONS = (date(2026, 11, 20), date(2026, 11, 27), date(2026, 12, 4), date(2026, 12, 18))


def _chain(expiration: date, strikes: int = 3) -> OptionChain:
    contracts = []
    for i in range(strikes):
        strike = 100.0 + 5 * i
        for kind in ("call", "put"):
            occ = f"AAPL{expiration:%y%m%d}{kind[0].upper()}{int(strike * 1000):08d}"
            contracts.append(
                OptionContract(
                    symbol=occ, option_type=kind, strike=strike, bid=1.0 + i, ask=1.1 + i, delta=0.5
                )
            )
    return OptionChain(
        **ENVELOPE, symbol="AAPL", expiration=expiration, underlying_price=105.0, contracts=contracts
    )


def _history() -> PriceHistory:
    bars = [
        Bar(
            start=datetime(2026, 11, d, tzinfo=ET),
            open=100 + d,
            high=102 + d,
            low=99 + d,
            close=101 + d,
            volume=1e6,
        )
        for d in (20, 23, 24)
    ]
    return PriceHistory(**ENVELOPE, symbol="AAPL", interval="1d", bars=bars)


def _indicators() -> Indicators:
    macd = Macd(fast=12, slow=26, signal_window=9, macd=1.5, signal=1.2, histogram=0.3)
    return Indicators(
        **ENVELOPE, symbol="AAPL", interval="1d", as_of=datetime(2026, 11, 24, 5, tzinfo=UTC),
        close=125.0, sma={20: 120.5}, ema={12: 121.0}, rsi={14: 55.5}, macd=macd,
    )  # fmt: skip


@pytest.fixture
def stored(redis_url: str) -> dict[str, object]:
    """AAPL with a quote, expirations, three cached chains (one already expired), bars and indicators."""
    items: dict[str, object] = {
        keys.quote("AAPL"): Quote(**ENVELOPE, symbol="AAPL", last=105.2),
        keys.expirations("AAPL"): Expirations(**ENVELOPE, symbol="AAPL", dates=EXPIRATIONS),
        keys.chain_index("AAPL"): ChainIndex(**ENVELOPE, symbol="AAPL", expirations=EXPIRATIONS[:3]),
        keys.history("AAPL", "1d"): _history(),
        keys.indicators("AAPL"): _indicators(),
    }
    for expiration in EXPIRATIONS[:3]:
        items[keys.chain("AAPL", expiration)] = _chain(expiration)
    client = redis.Redis.from_url(redis_url)
    for key, item in items.items():
        client.set(key, item.model_dump_json(exclude_none=True))  # type: ignore[attr-defined]
    client.config_resetstat()
    client.close()
    return items


async def test_chain_defaults_to_the_nearest_unexpired_cached_expiration(
    redis_url: str, stored: dict[str, object]
) -> None:
    """chain(symbol) skips the expired 11-20 chain and returns 11-27, in one round trip, with freshness."""
    clock = FakeClock(NOW + timedelta(seconds=5))
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        with pytest.raises(NotCached):
            await reader.chain("MSFT")  # loads the script into Redis (SCRIPT LOAD after NOSCRIPT)
        reset_command_calls(redis_url)
        chain = await reader.chain("aapl")
    assert chain == stored[keys.chain("AAPL", date(2026, 11, 27))]
    assert chain.expiration == date(2026, 11, 27)
    assert (chain.age_s, chain.stale) == (5.0, False)
    assert len(chain.calls) == len(chain.puts) == 3
    calls = command_calls(redis_url)
    assert calls["evalsha"] == 1  # one round trip; the GETs it counts ran inside the script
    assert "mget" not in calls


async def test_chain_side_and_explicit_expiration(redis_url: str, stored: dict[str, object]) -> None:
    """side picks calls or puts; an expiration as a date or 'YYYY-MM-DD' reads that chain."""
    async with Reader(redis_url, clock=FakeClock(NOW), wait_s=0) as reader:
        puts = await reader.chain("AAPL", "2026-12-04", side="puts")
        calls = await reader.chain("AAPL", date(2026, 12, 4), side="calls")
        both = await reader.chain("AAPL", date(2026, 12, 4), side=None)
    assert {c.option_type for c in puts.contracts} == {"put"}
    assert {c.option_type for c in calls.contracts} == {"call"}
    assert len(both.contracts) == 6
    assert puts.contracts == both.puts
    assert puts.expiration == date(2026, 12, 4)


async def test_chain_misses_name_the_cached_expirations(redis_url: str, stored: dict[str, object]) -> None:
    """A chain not cached says which are; a symbol without chains says to configure them."""
    async with Reader(redis_url, clock=FakeClock(NOW), wait_s=0) as reader:
        with pytest.raises(NotCached, match=r"2026-12-18.*cached: 2026-11-20, 2026-11-27, 2026-12-04"):
            await reader.chain("AAPL", "2026-12-18")
        with pytest.raises(NotCached, match="keeps no chains"):
            await reader.chain("MSFT")
    later = FakeClock(datetime(2026, 12, 10, 15, tzinfo=UTC))
    async with Reader(redis_url, clock=later, wait_s=0) as reader:
        with pytest.raises(NotCached, match="on or after 2026-12-10"):
            await reader.chain("AAPL")


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda r: r.chain("AAPL", side="call"), "side"),
        (lambda r: r.chain("AAPL", expiration="12/18/2026"), "expiration"),
        (lambda r: r.history("AAPL", interval="1w"), "interval"),
    ],
)
async def test_bad_arguments_raise_invalid_request_naming_the_value(
    redis_url: str, call: object, name: str
) -> None:
    """A bad side, expiration or interval is refused before Redis is asked, naming the value and the fix."""
    async with Reader(redis_url, wait_s=0) as reader:
        with pytest.raises(InvalidRequest, match=rf"{name}=.*expected") as raised:
            await call(reader)  # type: ignore[operator]
    assert isinstance(raised.value, ValueError)


async def test_expirations_history_and_indicators_read_back(
    redis_url: str, stored: dict[str, object]
) -> None:
    """Each dataset reads back equal to what was stored; a missing interval is NotCached."""
    async with Reader(redis_url, clock=FakeClock(NOW), wait_s=0) as reader:
        assert await reader.expirations("AAPL") == stored[keys.expirations("AAPL")]
        history = await reader.history("AAPL")
        indicators = await reader.indicators("AAPL")
        with pytest.raises(NotCached, match="5m history"):
            await reader.history("AAPL", "5m")
    assert history == stored[keys.history("AAPL", "1d")]
    assert [b.close for b in history.bars] == [121.0, 124.0, 125.0]
    assert history.bars[0].start == datetime(2026, 11, 20, 5, tzinfo=UTC)
    assert indicators.sma == {20: 120.5}
    assert indicators.macd is not None
    assert indicators.macd.histogram == 0.3


async def test_bundle_reads_quote_chains_and_indicators_in_one_round_trip(
    redis_url: str, stored: dict[str, object]
) -> None:
    """bundle(options, technical) is one script call; chains are the unexpired ones, nearest first."""
    async with Reader(redis_url, clock=FakeClock(NOW), wait_s=0) as reader:
        await reader.bundle("MSFT", options=True)  # loads the script
        reset_command_calls(redis_url)
        bundle = await reader.bundle("AAPL", options=True, technical=True)
    calls = command_calls(redis_url)
    assert calls["evalsha"] == 1
    assert set(calls) - {"config|resetstat"} == {"evalsha", "get"}  # the GETs ran inside the script
    assert isinstance(bundle.quote, Quote)
    assert bundle.quote.last == 105.2
    assert isinstance(bundle.chains, tuple)
    assert [c.expiration for c in bundle.chains] == [date(2026, 11, 27), date(2026, 12, 4)]
    assert bundle.indicators == stored[keys.indicators("AAPL")]


async def test_bundle_reports_each_missing_part(redis_url: str, stored: dict[str, object]) -> None:
    """Missing parts are errors inside the bundle; parts not asked for are None; no options is one MGET."""
    async with Reader(redis_url, clock=FakeClock(NOW), wait_s=0) as reader:
        bare = await reader.bundle("AAPL")
        missing = await reader.bundle("MSFT", options=True, technical=True)
    assert isinstance(bare.quote, Quote)
    assert (bare.chains, bare.indicators) == (None, None)
    assert isinstance(missing.quote, NotCached)
    assert isinstance(missing.chains, NotCached)
    assert isinstance(missing.indicators, NotCached)
    assert command_calls(redis_url).get("mget", 0) == 1


async def test_sync_reader_matches_reader_on_every_dataset(redis_url: str, stored: dict[str, object]) -> None:
    """SyncReader returns equal values for each method."""
    clock = FakeClock(NOW)
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        expected = [
            await reader.expirations("AAPL"),
            await reader.chain("AAPL"),
            await reader.chain("AAPL", "2026-12-04", "puts"),
            await reader.history("AAPL"),
            await reader.indicators("AAPL"),
            await reader.bundle("AAPL", options=True, technical=True),
            await reader.market_status(),
        ]
    with SyncReader(redis_url, clock=clock, wait_s=0) as sync:
        got = [
            sync.expirations("AAPL"),
            sync.chain("AAPL"),
            sync.chain("AAPL", "2026-12-04", "puts"),
            sync.history("AAPL"),
            sync.indicators("AAPL"),
            sync.bundle("AAPL", options=True, technical=True),
            sync.market_status(),
        ]
    assert got == expected
    assert isinstance(got[5], Bundle)


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar()


def _et(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ET)


@pytest.mark.parametrize(
    ("at", "phase", "session", "early", "next_open", "next_close"),
    [
        # Thanksgiving: closed all day; the next session is Friday's half day.
        ("2026-11-26 12:00", "closed", None, False, "2026-11-27 09:30", "2026-11-27 13:00"),
        # The day after: closed at 13:00, post-market until 17:00.
        ("2026-11-27 14:00", "post", "2026-11-27", True, "2026-11-30 09:30", "2026-11-30 16:00"),
        ("2026-11-27 17:30", "closed", "2026-11-27", True, "2026-11-30 09:30", "2026-11-30 16:00"),
        # A regular Monday: pre-market at 07:00, the session at 10:00.
        ("2026-11-30 07:00", "pre", "2026-11-30", False, "2026-11-30 09:30", "2026-11-30 16:00"),
        ("2026-11-30 10:00", "regular", "2026-11-30", False, "2026-12-01 09:30", "2026-11-30 16:00"),
        ("2026-11-28 12:00", "closed", None, False, "2026-11-30 09:30", "2026-11-30 16:00"),
    ],
)
def test_market_status_follows_the_exchange_calendar(
    calendar: MarketCalendar,
    at: str,
    phase: str,
    session: str | None,
    early: bool,
    next_open: str,
    next_close: str,
) -> None:
    """market_status() at an injected ET time: phase, session, early close, next open and close;
    without Redis, from the installed calendar."""
    reader = SyncReader("redis://127.0.0.1:1/0", clock=FakeClock(_et(at).astimezone(UTC)), calendar=calendar)
    status = reader.market_status()
    reader.close()
    assert status.phase == phase
    assert status.session == (date.fromisoformat(session) if session else None)
    assert status.early_close is early
    assert status.next_open == _et(next_open)
    assert status.next_close == _et(next_close)
    assert status.at == _et(at)
    if session is not None:
        assert status.open is not None
        assert status.close is not None
        assert status.close.astimezone(ET).hour == (13 if early else 16)


@pytest.mark.parametrize("options", [False, True], ids=["chain", "bundle"])
async def test_a_chain_miss_of_a_symbol_the_schedule_keeps_says_so(redis_url: str, options: bool) -> None:
    """MSFT is on the watchlist with chains (the worker's `keys.kept`): its miss says no chain is
    stored yet, not "add it to the watchlist"; TSLA, not kept, is told how to keep it."""
    admin = redis.Redis.from_url(redis_url)
    admin.sadd(keys.kept("chains"), "MSFT")
    admin.close()
    async with Reader(redis_url, clock=FakeClock(NOW), wait_s=0) as reader:
        for symbol, reason in (("MSFT", "on the watchlist with chains enabled"), ("TSLA", "add it to the")):
            if options:
                error = (await reader.bundle(symbol, options=True)).chains
            else:
                with pytest.raises(NotCached) as raised:
                    await reader.chain(symbol)
                error = raised.value
            assert isinstance(error, NotCached)
            assert reason in str(error), (symbol, str(error))
            assert ("add it to the watchlist" in str(error)) == (symbol == "TSLA")
