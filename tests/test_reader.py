"""Reader and SyncReader against a real Redis: hits, misses, malformed symbols, freshness, round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from reader import InvalidSymbol, NotCached, Quote, Reader, ReaderError, SyncReader, keys
from tests.support import FakeClock, command_calls

FETCHED = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)

MALFORMED = ["", "AAPL*", "../x", "A" * 40, "BRK..B", "-AAPL", "AAPL.", " ", "1ABC", "AA PL", "mc:v1:quote:X"]
NOT_STRINGS = [None, 5, 1.5, b"AAPL", ["AAPL"]]


def _quote(symbol: str, last: float = 101.25) -> Quote:
    return Quote(
        symbol=symbol,
        source="tradier",
        fetched_at=FETCHED,
        fresh_until=FETCHED + timedelta(seconds=20),
        last=last,
        bid=101.2,
        ask=101.3,
        volume=1_000,
        trade_date=FETCHED - timedelta(seconds=1),
    )


@pytest.fixture
def stored(redis_url: str) -> dict[str, Quote]:
    """AAPL, MSFT and BRK.B in Redis, as the worker writes them."""
    quotes = {s: _quote(s, last=100 + i) for i, s in enumerate(["AAPL", "MSFT", "BRK.B"])}
    client = redis.Redis.from_url(redis_url)
    for symbol, quote in quotes.items():
        client.set(keys.quote(symbol), quote.model_dump_json(exclude_none=True))
    client.config_resetstat()
    client.close()
    return quotes


async def test_quote_returns_the_stored_model_with_age_and_freshness(
    redis_url: str, stored: dict[str, Quote]
) -> None:
    """A hit returns the stored values; age_s and stale follow the injected clock."""
    clock = FakeClock(FETCHED + timedelta(seconds=3))
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        quote = await reader.quote("AAPL")
        assert quote == stored["AAPL"]
        assert quote.age_s == 3.0
        assert quote.stale is False
        clock.advance(30)
        later = await reader.quote("aapl")
    assert later.age_s == 33.0
    assert later.stale is True
    assert quote.stale is False  # a result keeps the freshness of its own read


@pytest.mark.parametrize("symbol", MALFORMED + NOT_STRINGS)
async def test_malformed_symbol_raises_a_value_error_naming_it(redis_url: str, symbol: object) -> None:
    """Every malformed symbol is refused before Redis is asked, with the value and the accepted form."""
    async with Reader(redis_url, wait_s=0) as reader:
        with pytest.raises(InvalidSymbol) as raised:
            await reader.quote(symbol)  # type: ignore[arg-type]
    assert isinstance(raised.value, ValueError)
    assert repr(symbol) in str(raised.value)
    assert ("letter first" in str(raised.value)) or ("expected a str" in str(raised.value))
    assert command_calls(redis_url).get("get", 0) == 0


async def test_lowercase_and_padded_symbols_are_normalised(redis_url: str, stored: dict[str, Quote]) -> None:
    """'aapl', ' Aapl ' and 'brk.b' find the upper-case keys."""
    async with Reader(redis_url, wait_s=0) as reader:
        assert (await reader.quote("aapl")).symbol == "AAPL"
        assert (await reader.quote(" Aapl ")).symbol == "AAPL"
        assert (await reader.quote("brk.b")).symbol == "BRK.B"


async def test_missing_symbol_raises_not_cached(redis_url: str, stored: dict[str, Quote]) -> None:
    """A well-formed symbol with no key raises NotCached, a LookupError naming the symbol."""
    async with Reader(redis_url, wait_s=0) as reader:
        with pytest.raises(NotCached) as raised:
            await reader.quote("tsla")
    assert isinstance(raised.value, LookupError)
    assert raised.value.symbol == "TSLA"
    assert "'TSLA'" in str(raised.value)


async def test_quotes_answers_hits_misses_and_bad_symbols_in_one_mget(
    redis_url: str, stored: dict[str, Quote]
) -> None:
    """quotes() makes one MGET whatever the mix, and reports per symbol."""
    async with Reader(redis_url, clock=FakeClock(FETCHED), wait_s=0) as reader:
        results = await reader.quotes(["aapl", "MSFT", "TSLA", "AAPL*", "AAPL"])
    assert set(results) == {"AAPL", "MSFT", "TSLA", "AAPL*"}
    assert results["AAPL"] == stored["AAPL"]
    assert results["MSFT"] == stored["MSFT"]
    assert isinstance(results["TSLA"], NotCached)
    assert isinstance(results["AAPL*"], InvalidSymbol)
    commands = command_calls(redis_url)
    assert commands.get("mget") == 1
    assert commands.get("zadd") == 1  # TSLA's miss enqueued one fetch (the hits are fresh at FETCHED)


class CountingClock(FakeClock):
    """A fake clock that counts its readings and moves on a second at each."""

    def __init__(self, now: datetime) -> None:
        super().__init__(now)
        self.readings = 0

    def __call__(self) -> datetime:
        self.readings += 1
        now = super().__call__()
        self.advance(1)
        return now


async def test_quotes_reads_the_clock_once_and_every_quote_carries_that_read_time(
    redis_url: str, stored: dict[str, Quote]
) -> None:
    """One quotes() answer is read at one time: the clock is read once for all its quotes (of the
    async and the sync reader), and each has that read time, age and freshness."""
    clock = CountingClock(FETCHED + timedelta(seconds=19))
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        results = await reader.quotes(["AAPL", "MSFT", "BRK.B"])
    with SyncReader(redis_url, clock=clock, wait_s=0) as sync_reader:
        sync_results = sync_reader.quotes(["AAPL", "MSFT", "BRK.B"])
    assert clock.readings == 2
    for read, at in ((results, 19.0), (sync_results, 20.0)):
        quotes = [q for q in read.values() if isinstance(q, Quote)]
        assert len(quotes) == 3
        assert {(q.read_at, q.age_s, q.stale) for q in quotes} == {
            (FETCHED + timedelta(seconds=at), at, False)
        }


async def test_quotes_reports_non_strings_without_failing_the_call(
    redis_url: str, stored: dict[str, Quote]
) -> None:
    """A non-string among the symbols maps, by its repr, to an InvalidSymbol; the rest are answered."""
    async with Reader(redis_url, wait_s=0) as reader:
        results = await reader.quotes(["AAPL", 5, None])  # type: ignore[list-item]
    assert results["AAPL"] == stored["AAPL"]
    assert isinstance(results["5"], InvalidSymbol)
    assert isinstance(results["None"], InvalidSymbol)


async def test_quotes_refuses_a_bare_string(redis_url: str) -> None:
    """quotes('AAPL') is a mistake for quotes(['AAPL']) and says so."""
    async with Reader(redis_url, wait_s=0) as reader:
        with pytest.raises(InvalidSymbol, match=r"list of symbols"):
            await reader.quotes("AAPL")


async def test_a_corrupt_cached_value_reads_as_not_cached(redis_url: str) -> None:
    """A value that does not fit the model is a miss that says why, not a crash."""
    redis.Redis.from_url(redis_url).set(keys.quote("AAPL"), b'{"symbol": "AAPL"}')
    async with Reader(redis_url, wait_s=0) as reader:
        with pytest.raises(NotCached, match=r"does not match the Quote model"):
            await reader.quote("AAPL")
        results = await reader.quotes(["AAPL"])
    assert isinstance(results["AAPL"], NotCached)


async def test_sync_reader_returns_what_reader_returns(redis_url: str, stored: dict[str, Quote]) -> None:
    """SyncReader and Reader agree on every value, miss and error."""
    clock = FakeClock(FETCHED + timedelta(seconds=7))
    symbols = ["AAPL", "msft", "BRK.B", "TSLA", "AAPL*"]
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        async_one = await reader.quote("MSFT")
        async_many = await reader.quotes(symbols)
    with SyncReader(redis_url, clock=clock, wait_s=0) as sync_reader:
        sync_one = sync_reader.quote("MSFT")
        sync_many = sync_reader.quotes(symbols)
        with pytest.raises(NotCached):
            sync_reader.quote("TSLA")
        with pytest.raises(InvalidSymbol):
            sync_reader.quote("../x")
    assert sync_one == async_one
    assert (sync_one.age_s, sync_one.stale) == (async_one.age_s, async_one.stale)
    assert sync_many.keys() == async_many.keys()
    for symbol, result in async_many.items():
        if isinstance(result, ReaderError):
            assert type(sync_many[symbol]) is type(result)
            assert str(sync_many[symbol]) == str(result)
        else:
            assert sync_many[symbol] == result


async def test_reader_never_lists_keys(redis_url: str, stored: dict[str, Quote]) -> None:
    """No reader call issues KEYS or SCAN, hit or miss."""
    async with Reader(redis_url, wait_s=0) as reader:
        await reader.quote("AAPL")
        await reader.quotes(["AAPL", "TSLA"])
        with pytest.raises(NotCached):
            await reader.quote("TSLA")
    with SyncReader(redis_url, wait_s=0) as sync_reader:
        sync_reader.quotes(["AAPL", "NVDA"])
    commands = command_calls(redis_url)
    assert not {"keys", "scan"} & commands.keys()
    # reads; the miss path's subscription and enqueue script (whose SET and ZADD touch arq's queue
    # keys only: tests/test_acl.py proves it); what the connection setup and this test itself send
    # (names differ across Redis 6 and 7)
    assert set(commands) <= {
        "get",
        "mget",
        "evalsha",
        "script|load",
        "script",
        "subscribe",
        "unsubscribe",
        "exists",
        "set",
        "zadd",
        "client",
        "client|setinfo",
        "hello",
        "info",
        "config",
        "config|resetstat",
    }


def test_reader_defaults_to_redis_url_then_localhost(monkeypatch_env: pytest.MonkeyPatch) -> None:
    """Reader(url=None) uses REDIS_URL, else redis://localhost:6379/0; reprs hide passwords."""
    assert SyncReader().url == "redis://localhost:6379/0"
    monkeypatch_env.setenv("REDIS_URL", "redis://:hunter2@cache.internal:6380/3")
    reader = SyncReader()
    assert reader.url == "redis://:hunter2@cache.internal:6380/3"
    assert "hunter2" not in repr(reader)
    assert repr(reader) == "<SyncReader redis://:***@cache.internal:6380/3>"
    assert repr(Reader("redis://localhost:1/0")) == "<Reader redis://localhost:1/0>"
