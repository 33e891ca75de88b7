"""Per-symbol refreshes: which chains are kept, and bad upstream answers that must not overwrite good data."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
import redis
import redis.asyncio

from emulator.state import Fault
from reader import Quote, Reader, keys
from reader.calendar import EXCHANGE_TZ as ET
from reader.models import ChainIndex, OptionChain
from tests.support import FakeClock, RunningEmulator, make_config
from worker.config import ChainSelection, Config, Secrets
from worker.runtime import Runtime
from worker.selection import select_expirations, strike_range
from worker.store import Store

LISTED = [date(2026, 11, 20), date(2026, 11, 24), date(2026, 11, 27), date(2026, 12, 4), date(2027, 1, 15)]
TODAY = date(2026, 11, 24)


@pytest.mark.parametrize(
    ("expirations", "max_days", "expected"),
    [
        (3, 60, LISTED[1:4]),  # today's expiration counts; the past one does not
        (10, 60, LISTED[1:]),  # 2027-01-15 is 52 days ahead
        (10, 51, LISTED[1:4]),
        (2, 3, LISTED[1:3]),  # 11-27 is exactly 3 days ahead: included
        (5, 0, LISTED[1:2]),
        (0, 60, []),
    ],
)
def test_select_expirations_takes_the_next_n_within_max_days(
    expirations: int, max_days: int, expected: list[date]
) -> None:
    """The first `expirations` listed dates from today to `max_days` ahead, ascending and distinct."""
    selection = ChainSelection(expirations=expirations, max_days=max_days)
    assert list(select_expirations([*reversed(LISTED), LISTED[2]], TODAY, selection)) == expected


def test_strike_range_is_a_window_around_the_price() -> None:
    """strike_window_pct=10 around 200 keeps 180..220; no window or no price keeps every strike."""
    window = strike_range(200.0, ChainSelection(strike_window_pct=10))
    assert window is not None
    assert (window.low, window.high) == (pytest.approx(180.0), pytest.approx(220.0))
    assert 180.0 in window
    assert 200.0 in window
    assert 220.01 not in window
    assert strike_range(200.0, ChainSelection()) is None
    assert strike_range(None, ChainSelection(strike_window_pct=10)) is None


@pytest.fixture
async def runtime(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> AsyncIterator[Runtime]:
    config: Config = make_config(
        ["AAPL", "MSFT"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        datasets={"chains": {"expirations": 2, "max_days": 30}, "history": {"intraday": None}},
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as opened:
        yield opened
    await client.aclose()


def _snapshot(redis_url: str) -> dict[bytes, bytes | None]:
    """Every stored key and its value, but the rate budgets (spent by any call, good or bad)."""
    client = redis.Redis.from_url(redis_url)
    spending = (keys.rate_budget("tradier"), keys.rate_budget("polygon"))
    stored = [key for key in sorted(client.keys(keys.PREFIX + "*")) if key.decode() not in spending]  # type: ignore[union-attr]
    values = {key: client.get(key) for key in stored}
    client.close()
    return values  # type: ignore[return-value]


BAD_ANSWERS = [
    pytest.param('{"options":{"option":[{"symbol":"AAPL261127C', "answer is not JSON", id="truncated"),
    pytest.param(
        '{"options":{"option":{"symbol":"AAPL261127C00230000","option_type":"call","strike":"high"}}}',
        "options.option[0].strike = 'high': Input should be a valid number",
        id="wrong-type",
    ),
    pytest.param('{"options":[1,2,3]}', "options: expected an object", id="wrong-shape"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_ANSWERS)
async def test_a_bad_chain_answer_keeps_every_stored_chain_of_the_symbol(
    redis_url: str,
    runtime: Runtime,
    emulator: RunningEmulator,
    clock: FakeClock,
    body: str,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One bad expiration answer rejects the symbol's whole refresh: its chains and index stay as stored."""
    first = await runtime.refresh("chains", ["AAPL", "MSFT"])
    assert first.complete, first.errors
    before = _snapshot(redis_url)
    assert sum(key.startswith(b"mc:v1:chain:AAPL:") for key in before) == 2

    clock.advance(60)
    emulator.state.arm(
        Fault(path="/v1/markets/options/chains", status=200, body=body, content_type="application/json")
    )
    with caplog.at_level(logging.INFO):
        report = await runtime.refresh("chains", ["AAPL"])
    assert report.failed == ("AAPL",)
    assert report.errors[0].startswith("AAPL: tradier /v1/markets/options/chains: ")
    assert reason in report.errors[0]
    assert _snapshot(redis_url) == before
    assert "refresh.batch_failed dataset=chains" in caplog.text
    # One WARNING either way: the upstream's incident line for an answer that is not JSON (its
    # incident log counted it), the batch's own line for one that parses but does not fit.
    warnings = [r.getMessage().split(" ", 1)[0] for r in caplog.records if r.levelno >= logging.WARNING]
    counted = reason == "answer is not JSON"
    assert warnings == (["upstream.incident_started"] if counted else ["refresh.batch_failed"])


@pytest.mark.parametrize(
    "body",
    [
        '{"history":{"day":[{"date":"2026-11-20","open":1,"high":2,"low":0.5,"close":"x","volume":10}]}}',
        '{"history":{"day":[{"date":"2026-11-20","open":1',
        '{"history":"nothing"}',
    ],
)
async def test_a_bad_history_answer_keeps_the_bars_and_the_indicators(
    redis_url: str, runtime: Runtime, emulator: RunningEmulator, clock: FakeClock, body: str
) -> None:
    """A malformed history answer stores nothing: bars and the indicators computed from them stay."""
    assert (await runtime.refresh("history", ["AAPL"])).complete
    before = _snapshot(redis_url)
    assert set(before) == {b"mc:v1:history:AAPL:1d", b"mc:v1:indicators:AAPL"}
    clock.advance(900)
    emulator.state.arm(
        Fault(path="/v1/markets/history", status=200, body=body, content_type="application/json")
    )
    report = await runtime.refresh("history", ["AAPL"])
    assert report.failed == ("AAPL",)
    assert "history" in report.errors[0]
    assert _snapshot(redis_url) == before


async def test_chains_follow_the_calendar_and_drop_expired_dates_from_the_index(
    redis_url: str, runtime: Runtime, clock: FakeClock
) -> None:
    """A week later the index lists the next two expirations from that day; passed ones are dropped."""
    await runtime.refresh("chains", ["AAPL"])
    first = _index(redis_url, "AAPL")
    clock.advance(7 * 86_400)
    await runtime.refresh("chains", ["AAPL"])
    later = _index(redis_url, "AAPL")
    async with Reader(redis_url, clock=clock) as reader:
        listed = await reader.expirations("AAPL")
        nearest = await reader.chain("AAPL")
    today = clock.now.astimezone(ET).date()
    upcoming = [d for d in listed.dates if today <= d <= today + timedelta(days=30)]
    assert later.expirations == tuple(upcoming[:2])
    assert first.expirations != later.expirations
    assert nearest.expiration == later.expirations[0]


def _index(redis_url: str, symbol: str) -> ChainIndex:
    client = redis.Redis.from_url(redis_url)
    raw = client.get(keys.chain_index(symbol))
    client.close()
    assert raw is not None
    return ChainIndex.model_validate_json(raw)  # type: ignore[arg-type]


async def test_no_chain_for_any_date_keeps_the_stored_chains_and_their_index(
    redis_url: str, runtime: Runtime, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """`{"options": null}` for every selected date stores nothing: chains and index stay as stored, and
    the refresh fails (it has options: neither unknown nor without data)."""
    await runtime.refresh("chains", ["AAPL"])
    before = _snapshot(redis_url)
    clock.advance(60)
    null = Fault(path="/v1/markets/options/chains", status=200, body='{"options": null}', times=2)
    emulator.state.arm(null)
    report = await runtime.refresh("chains", ["AAPL"])
    assert (report.failed, report.unmatched, report.no_data) == (("AAPL",), (), ())
    assert "tradier returned no chain for the selected expirations" in report.errors[0]
    assert _snapshot(redis_url) == before
    async with Reader(redis_url, clock=clock) as reader:
        assert (await reader.chain("AAPL")).expiration == _index(redis_url, "AAPL").expirations[0]


async def test_a_null_for_one_date_keeps_that_date_indexed_with_its_previous_chain(
    redis_url: str, runtime: Runtime, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """One selected date answered null: the other chain is replaced, the null one keeps its old chain."""
    await runtime.refresh("chains", ["AAPL"])
    dates = _index(redis_url, "AAPL").expirations
    before = _snapshot(redis_url)
    clock.advance(60)
    emulator.state.arm(
        Fault(path="/v1/markets/options/chains", status=200, body='{"options": null}', times=1)
    )
    report = await runtime.refresh("chains", ["AAPL"])
    assert report.stored == ("AAPL",)
    after = _snapshot(redis_url)
    assert _index(redis_url, "AAPL").expirations == dates
    chain_keys = [keys.chain("AAPL", d).encode() for d in dates]
    assert sum(after[k] != before[k] for k in chain_keys) == 1


async def test_newer_data_is_never_replaced_by_an_older_fetch(redis_url: str, clock: FakeClock) -> None:
    """Two writes finishing out of order: the later fetch stays; an equal or later one replaces it."""
    client = redis.asyncio.Redis.from_url(redis_url)
    store = Store(client, keep_stale_s=60, clock=clock)
    late = Quote(symbol="AAPL", source="tradier", fetched_at=clock.now, fresh_until=clock.now, last=2.0)
    early = late.model_copy(update={"fetched_at": clock.now - timedelta(microseconds=1), "last": 1.0})
    later = late.model_copy(update={"fetched_at": clock.now + timedelta(seconds=1), "last": 3.0})
    assert await store.put_quotes([late]) == 1
    assert await store.put_quotes([early]) == 0
    assert (await store.get(Quote, keys.quote("AAPL"))) == late
    other = Quote(symbol="MSFT", source="tradier", fetched_at=clock.now, fresh_until=clock.now, last=5.0)
    assert await store.put_quotes([early, other]) == 1  # the batch writes what is not older
    assert await store.put_quotes([late]) == 1  # the same fetch again: written
    assert await store.put_quotes([later]) == 1
    assert (await store.get(Quote, keys.quote("AAPL"))) == later
    assert (await store.get(Quote, keys.quote("MSFT"))) == other
    await client.aclose()


async def test_every_write_announces_the_keys_it_stored_and_only_those(
    redis_url: str, clock: FakeClock
) -> None:
    """A write publishes the keys it stored on keys.STORED, once committed; a key a newer item
    already held is not announced, and a write that stored nothing says nothing."""
    client = redis.asyncio.Redis.from_url(redis_url)
    listener = client.pubsub()
    await listener.subscribe(keys.STORED)
    await listener.get_message(timeout=1)  # the subscription's confirmation
    store = Store(client, keep_stale_s=60, clock=clock)
    aapl = Quote(symbol="AAPL", source="tradier", fetched_at=clock.now, fresh_until=clock.now, last=2.0)
    msft = aapl.model_copy(update={"symbol": "MSFT"})
    older = aapl.model_copy(update={"fetched_at": clock.now - timedelta(seconds=1)})
    assert await store.put_quotes([aapl, msft]) == 2
    assert await store.put_quotes([older]) == 0
    assert await store.put_quotes([older, msft]) == 1
    heard = []
    while (message := await listener.get_message(timeout=0.5)) is not None:
        heard.append(json.loads(message["data"]))
    assert heard == [[keys.quote("AAPL"), keys.quote("MSFT")], [keys.quote("MSFT")]]
    await listener.aclose()
    await client.aclose()


async def test_chains_need_neither_scheduled_expirations_nor_history(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """With expirations, history and indicators off, chains fetch the expirations they need, fresh
    for the expirations' own interval."""
    config = make_config(
        ["AAPL"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        datasets={
            "expirations": {"enabled": False, "cadence_s": {"regular": 1800}},
            "chains": {"expirations": 1},
            "history": {"enabled": False},
            "indicators": {"enabled": False},
        },
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        assert set(runtime.scheduled) == {"quotes", "chains"}
        report = await runtime.refresh("chains", ["AAPL"])
    await client.aclose()
    assert report.complete, report.errors
    async with Reader(redis_url, clock=clock) as reader:
        listed = await reader.expirations("AAPL")
        assert (await reader.chain("AAPL")).contracts
    assert listed.fresh_until == clock.now.replace(minute=30) + timedelta(seconds=config.cache.fresh_slack_s)


async def test_a_strike_window_without_a_stored_quote_fetches_the_price_first(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """With strike_window_pct and no cached quote, the chain refresh asks for the quote once and keeps
    only strikes within the window of its last price."""
    config = make_config(
        ["AAPL"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        datasets={"chains": {"expirations": 1, "strike_window_pct": 5}},
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        report = await runtime.refresh("chains", ["AAPL"])
    await client.aclose()
    assert report.complete, report.errors
    assert emulator.calls("/v1/markets/quotes") == {"200": 1}
    last = emulator.state.market.quote("AAPL", clock.now)
    assert last is not None
    async with Reader(redis_url, clock=clock) as reader:
        chain = await reader.chain("AAPL")
    assert chain.contracts
    assert all(last.last * 0.95 <= c.strike <= last.last * 1.05 for c in chain.contracts)
    assert (chain.underlying_price, chain.underlying_price_at) == (last.last, clock.now)


async def test_a_tradier_chain_is_stored_with_the_price_of_the_stored_quote(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """Tradier's chain has no underlying price: a chains refresh stores the stored quote's, with the
    quote's fetch time, and asks no quote of the upstream; a quote over a day old is not used: one
    quote call prices the chains then, and is stored with them."""
    config = make_config(
        ["AAPL"], redis_url=redis_url, tradier_url=emulator.url, datasets={"chains": {"expirations": 1}}
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        assert (await runtime.refresh("quotes", ["AAPL"])).complete
        quoted_at = clock.now
        clock.advance(60)
        report = await runtime.refresh("chains", ["AAPL"])
        store = Store(client, keep_stale_s=86_400, clock=clock)
        quote = await store.get(Quote, keys.quote("AAPL"))
        (expiration,) = (await store.get(ChainIndex, keys.chain_index("AAPL"))).expirations  # type: ignore[union-attr]
        stored = await store.get(OptionChain, keys.chain("AAPL", expiration))
        quote_calls = emulator.calls("/v1/markets/quotes")
        clock.advance(86_400 + 60)
        assert (await runtime.refresh("chains", ["AAPL"])).complete
        later = await store.get(OptionChain, keys.chain("AAPL", expiration))
        requoted = await store.get(Quote, keys.quote("AAPL"))
    await client.aclose()
    assert report.complete, report.errors
    assert quote_calls == {"200": 1}  # the quotes refresh's own
    assert quote is not None
    assert quote.last
    assert stored is not None
    assert (stored.source, stored.underlying_price, stored.underlying_price_at) == (
        "tradier",
        quote.last,
        quoted_at,
    )
    assert emulator.calls("/v1/markets/quotes") == {"200": 2}
    assert later is not None
    assert requoted is not None
    assert (later.underlying_price, later.underlying_price_at) == (requoted.reference_price, clock.now)
    assert requoted.fetched_at == clock.now


async def test_a_full_pass_fetches_expirations_once_before_the_chains(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> None:
    """`refresh_watchlist` runs the datasets in order, so chains read the stored expirations."""
    config = make_config(["AAPL", "MSFT", "SPY"], redis_url=redis_url, tradier_url=emulator.url, datasets={})
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        reports = await runtime.refresh_watchlist()
    await client.aclose()
    assert [r.dataset for r in reports] == ["quotes", "expirations", "chains", "history", "intraday"]
    assert all(r.complete for r in reports), [r.errors for r in reports]
    assert emulator.calls("/v1/markets/options/expirations") == {"200": 3}
    assert emulator.calls("/v1/markets/options/chains") == {"200": 9}
    async with Reader(redis_url, clock=clock) as reader:
        bundle = await reader.bundle("SPY", options=True, technical=True)
    assert isinstance(bundle.chains, tuple)
    assert len(bundle.chains) == 3
    assert bundle.indicators is not None


TODAY_ET = date(2026, 11, 24)
FIRST_DAY = TODAY_ET - timedelta(days=399)


@pytest.mark.parametrize(
    ("dataset", "path", "body"),
    [
        pytest.param("expirations", "/v1/markets/options/expirations", '{"expirations":{"date":["2026-1',
                     id="tradier-exp"),
        pytest.param(
            "intraday",
            f"/v2/aggs/ticker/AAPL/range/5/minute/{TODAY_ET - timedelta(days=4)}/{TODAY_ET}",
            '{"status":"OK","resultsCount":1,"results":[{"o":"x","h":1,"l":1,"c":1,"v":1,"t":1}]}',
            id="polygon-intraday",
        ),
        pytest.param(
            "chains",
            "/v3/snapshot/options/AAPL",
            '{"status":"OK","results":[{"details":{"contract_type":"call"}}]}',
            id="polygon-chain",
        ),
        pytest.param(
            "history",
            f"/v2/aggs/ticker/AAPL/range/1/day/{FIRST_DAY}/{TODAY_ET}",
            '{"status":"OK","resultsCount":3,"ticker":"AAPL"}',
            id="polygon-aggs",
        ),
        pytest.param("indicators", "/v1/indicators/ema/AAPL", '{"status":"OK","request_id":"x"}',
                     id="polygon-ema"),
    ],
)  # fmt: skip
async def test_bad_answers_from_either_provider_keep_what_is_stored(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    secrets: Secrets,
    dataset: str,
    path: str,
    body: str,
) -> None:
    """A truncated, wrong-typed or incomplete answer on any dataset stores nothing for the symbol."""
    config = make_config(
        ["AAPL"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        polygon_url=emulator.url,
        datasets={
            "chains": {"provider": "polygon", "expirations": 1},
            "history": {"provider": "polygon", "intraday": {"bar": "5m"}},
            "indicators": {"source": "polygon"},
        },
    )
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        assert (await runtime.refresh(dataset, ["AAPL"])).complete
        before = _snapshot(redis_url)
        assert before
        clock.advance(3600)
        emulator.state.arm(Fault(path=path, status=200, body=body, content_type="application/json"))
        report = await runtime.refresh(dataset, ["AAPL"])
    await client.aclose()
    assert report.failed == ("AAPL",), report
    upstream = "tradier" if path.startswith("/v1/markets/") else "polygon"
    assert report.errors[0].startswith(f"AAPL: {upstream} /v"), report.errors
    assert _snapshot(redis_url) == before
