"""The agent tools: each invoked through the OpenAI Agents SDK's own tool path, against a real Redis."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from agents import Agent, FunctionTool, RunConfig, Runner, ToolCallOutputItem
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.tool_context import ToolContext

from agent_tools import answers, function_tools
from agent_tools import tools as tools_module
from agent_tools.tools import (
    TOOL_NAMES,
    UNAVAILABLE,
    get_multiple_stock_quotes,
    get_stock_data_bundle,
    get_stock_price_history,
    get_stock_quote,
    use_reader,
)
from reader import (
    Bar,
    Expirations,
    Indicators,
    Macd,
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
from reader.ondemand import Unknown
from tests.support import TUESDAY_10_ET, FakeClock

ET = ZoneInfo("America/New_York")
NOW = TUESDAY_10_ET  # Tuesday 2026-11-24, 10:00 ET: the session is open
FETCHED = NOW - timedelta(seconds=20)
AS_OF = "2026-11-24T14:59:40Z"
ENVELOPE = {"source": "tradier", "fetched_at": FETCHED, "fresh_until": NOW + timedelta(seconds=40)}
STALE = {
    "source": "tradier",
    "fetched_at": NOW - timedelta(hours=1),
    "fresh_until": NOW - timedelta(minutes=59),
}
EXPIRATIONS = (date(2026, 11, 20), date(2026, 11, 27), date(2026, 12, 4), date(2026, 12, 18))
NEAREST, SECOND = EXPIRATIONS[1], EXPIRATIONS[2]


def _chain(expiration: date, strikes: list[float]) -> OptionChain:
    contracts = [
        OptionContract(
            symbol=f"AAPL{expiration:%y%m%d}{kind[0].upper()}{int(strike * 1000):08d}",
            option_type=kind,
            strike=strike,
            bid=1.0,
            ask=1.2,
            open_interest=10,
            mid_iv=0.25,
            delta=0.5 if kind == "call" else -0.5,
        )
        for strike in strikes
        for kind in ("call", "put")
    ]
    return OptionChain(
        **ENVELOPE, symbol="AAPL", expiration=expiration, underlying_price=100.0, contracts=contracts
    )


def _history() -> PriceHistory:
    """40 daily bars, one per calendar day up to today (closes 100..139)."""
    first = date(2026, 11, 24) - timedelta(days=39)
    bars = [
        Bar(
            start=datetime.combine(first + timedelta(days=i), datetime.min.time(), tzinfo=ET),
            open=100 + i,
            high=101 + i,
            low=99 + i,
            close=100 + i,
            volume=1e6,
            vwap=100.5 + i if i == 39 else None,
        )
        for i in range(40)
    ]
    return PriceHistory(**ENVELOPE, symbol="AAPL", interval="1d", bars=bars)


def _indicators() -> Indicators:
    macd = Macd(fast=12, slow=26, signal_window=9, macd=1.5, signal=1.2, histogram=0.3)
    return Indicators(
        **ENVELOPE, symbol="AAPL", interval="1d", as_of=datetime(2026, 11, 24, 5, tzinfo=UTC),
        close=139.0, sma={20: 129.5}, ema={12: 133.0}, rsi={14: 61.25}, macd=macd,
    )  # fmt: skip


@pytest.fixture
def stored(redis_url: str) -> None:
    """AAPL with every dataset (a 40-strike nearest chain, a 3-strike second one), MSFT's quote stale."""
    quote = Quote(
        **ENVELOPE, symbol="AAPL", description="Apple Inc", exch="Q", type="stock", last=105.2, change=1.2,
        change_percentage=1.15, volume=1234567, bid=105.1, bidexch="Q", ask=105.3, askexch="P",
        root_symbols="AAPL",
    )  # fmt: skip
    items: dict[str, Any] = {
        keys.quote("AAPL"): quote,
        keys.quote("MSFT"): Quote(**STALE, symbol="MSFT", last=410.0),
        keys.expirations("AAPL"): Expirations(**ENVELOPE, symbol="AAPL", dates=EXPIRATIONS),
        keys.chain_index("AAPL"): ChainIndex(**ENVELOPE, symbol="AAPL", expirations=EXPIRATIONS[:3]),
        keys.chain("AAPL", EXPIRATIONS[0]): _chain(EXPIRATIONS[0], [100.0]),  # expired: never served
        keys.chain("AAPL", NEAREST): _chain(NEAREST, [50.0 + 5 * i for i in range(40)]),
        keys.chain("AAPL", SECOND): _chain(SECOND, [95.0, 100.0, 105.0]),
        keys.history("AAPL", "1d"): _history(),
        keys.indicators("AAPL"): _indicators(),
    }
    client = redis.Redis.from_url(redis_url)
    for key, item in items.items():
        client.set(key, item.model_dump_json(exclude_none=True))
    client.close()


@pytest.fixture(scope="module")
def calendar() -> MarketCalendar:
    return MarketCalendar()


@pytest.fixture
async def reader(redis_url: str, calendar: MarketCalendar) -> AsyncIterator[Reader]:
    """The tools' reader: on the session's Redis, at NOW, enqueueing a fetch on a miss without waiting."""
    async with Reader(redis_url, clock=FakeClock(NOW), calendar=calendar, wait_s=0) as reader:
        use_reader(reader)
        yield reader
        use_reader(None)


@pytest.fixture(scope="module")
def tools() -> dict[str, FunctionTool]:
    return {tool.name: tool for tool in function_tools()}


async def invoke(tool: FunctionTool, **arguments: Any) -> Any:
    """Call `tool` the way the SDK does for a model's tool call; the parsed JSON it answered."""
    raw_arguments = json.dumps(arguments)
    context = ToolContext(None, tool_name=tool.name, tool_call_id="call_1", tool_arguments=raw_arguments)
    output = await tool.on_invoke_tool(context, raw_arguments)
    assert isinstance(output, str)
    answer = json.loads(output)  # the SDK's generic failure text is not JSON: this fails loudly on it
    assert output == json.dumps(answer, separators=(",", ":"), ensure_ascii=False)  # compact
    return answer


def queued_jobs(redis_url: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    jobs = [job.decode() for job in client.zrange(keys.QUEUE, 0, -1)]
    client.close()
    return jobs


def test_every_tool_is_built_with_a_description_for_each_parameter(tools: dict[str, FunctionTool]) -> None:
    """function_tools() gives the nine tools, each described, with a description on every parameter."""
    assert tuple(tools) == TOOL_NAMES
    assert len(TOOL_NAMES) == 9
    for tool in tools.values():
        assert tool.description.strip(), tool.name
        properties = tool.params_json_schema["properties"]
        for name, schema in properties.items():
            assert schema.get("description", "").strip(), f"{tool.name}.{name} has no description"
        if tool.name != "get_market_status_and_date_time":
            assert properties, tool.name
    assert set(tools["get_stock_data_bundle"].params_json_schema["properties"]) == {
        "symbol", "include_options", "include_technical",
    }  # fmt: skip


async def test_get_stock_quote_returns_the_quote_with_its_freshness(
    reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """The quote's fields, `as_of` (fetched_at) and `stale`, without envelope and exchange-code noise."""
    assert await invoke(tools["get_stock_quote"], symbol="aapl") == {
        "symbol": "AAPL", "as_of": AS_OF, "stale": False, "description": "Apple Inc", "type": "stock",
        "last": 105.2, "change": 1.2, "change_percentage": 1.15, "volume": 1234567,
        "bid": 105.1, "ask": 105.3,
    }  # fmt: skip
    stale = await invoke(tools["get_stock_quote"], symbol="MSFT")
    assert (stale["as_of"], stale["stale"], stale["last"]) == ("2026-11-24T14:00:00Z", True, 410.0)


async def test_get_multiple_stock_quotes_answers_each_symbol_without_failing(
    redis_url: str, reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """A hit, a miss (a fetch gets queued) and a malformed symbol: three entries, one call."""
    answer = await invoke(tools["get_multiple_stock_quotes"], symbols=["aapl", "NVDA", "AAPL*"])
    quotes = answer["quotes"]
    assert set(quotes) == {"AAPL", "NVDA", "AAPL*"}
    assert quotes["AAPL"]["last"] == 105.2
    assert (quotes["AAPL"]["as_of"], quotes["AAPL"]["stale"]) == (AS_OF, False)
    assert "symbol" not in quotes["AAPL"]  # the key says it
    assert "queued" in quotes["NVDA"]["error"]
    assert "not a ticker symbol" in quotes["AAPL*"]["error"]
    assert keys.fetch_job_id("quotes", "NVDA", "") in queued_jobs(redis_url)
    assert "error" in await invoke(tools["get_multiple_stock_quotes"], symbols=[])


async def test_options_tools_return_dates_and_chains_near_the_money(
    reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """Expirations; the nearest unexpired chain cut to 30 strikes around the price; strike filters."""
    expirations = await invoke(tools["get_options_expiration_dates"], symbol="AAPL")
    assert expirations == {
        "symbol": "AAPL", "as_of": AS_OF, "stale": False, "dates": [d.isoformat() for d in EXPIRATIONS],
    }  # fmt: skip

    calls = await invoke(
        tools["get_call_options_chain"], symbol="AAPL", expiration=None, min_strike=None, max_strike=None
    )
    assert (calls["expiration"], calls["as_of"], calls["stale"]) == (NEAREST.isoformat(), AS_OF, False)
    assert calls["underlying_price"] == 100.0
    strikes = [c["strike"] for c in calls["calls"]]
    assert strikes == [50.0 + 5 * i for i in range(30)]  # the 30 nearest 100; 200-245 left out
    assert calls["truncated"] is True
    assert calls["left_out"] == {"contracts": 10, "strikes_below": 0, "strikes_above": 10}
    assert "min_strike" in calls["hint"]
    assert "note" not in calls
    assert calls["calls"][10] == {
        "symbol": "AAPL261127C00100000", "strike": 100.0, "bid": 1.0, "ask": 1.2, "open_interest": 10,
        "mid_iv": 0.25, "delta": 0.5,
    }  # fmt: skip

    puts = await invoke(
        tools["get_put_options_chain"], symbol="AAPL", expiration="2026-11-27", min_strike=95, max_strike=110
    )
    assert [(p["strike"], p["delta"]) for p in puts["puts"]] == [(s, -0.5) for s in (95, 100, 105, 110)]
    assert "truncated" not in puts

    second = await invoke(tools["get_put_options_chain"], symbol="AAPL", expiration=SECOND.isoformat())
    assert [p["symbol"] for p in second["puts"]] == [f"AAPL261204P00{s}000" for s in ("095", "100", "105")]

    beyond = await invoke(tools["get_call_options_chain"], symbol="AAPL", min_strike=300, max_strike=None)
    assert (beyond["calls"], beyond["expiration"]) == ([], NEAREST.isoformat())
    crossed = await invoke(tools["get_put_options_chain"], symbol="AAPL", min_strike=110, max_strike=100)
    assert "min_strike=110" in crossed["error"]

    missing = await invoke(tools["get_call_options_chain"], symbol="AAPL", expiration="12/18/2026")
    assert "expiration='12/18/2026'" in missing["error"]
    assert missing["symbol"] == "AAPL"


async def test_get_stock_price_history_returns_the_latest_bars(
    reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """30 most recent bars by default, `limit` of them when asked; daily bars by session date."""
    history = await invoke(tools["get_stock_price_history"], symbol="AAPL")
    assert (history["as_of"], history["stale"], history["interval"]) == (AS_OF, False, "1d")
    assert history["total_bars"] == 40
    assert len(history["bars"]) == 30
    assert history["bars"][0] == {"date": "2026-10-26", "open": 110, "high": 111, "low": 109, "close": 110,
                                  "volume": 1000000}  # fmt: skip
    assert history["bars"][-1]["date"] == "2026-11-24"
    assert history["bars"][-1]["vwap"] == 139.5

    last_two = await invoke(tools["get_stock_price_history"], symbol="AAPL", interval="1d", limit=2)
    assert [b["close"] for b in last_two["bars"]] == [138, 139]

    too_many = await invoke(tools["get_stock_price_history"], symbol="AAPL", interval="1d", limit=0)
    assert "limit=0" in too_many["error"]


async def test_get_ta_indicators_returns_the_latest_values(
    reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """SMA/EMA/RSI keyed by window, MACD, the last bar's session, and freshness."""
    assert await invoke(tools["get_ta_indicators"], symbol="AAPL") == {
        "symbol": "AAPL", "as_of": AS_OF, "stale": False, "interval": "1d", "close": 139.0,
        "sma": {"20": 129.5}, "ema": {"12": 133.0}, "rsi": {"14": 61.25},
        "macd": {"fast": 12, "slow": 26, "signal_window": 9, "macd": 1.5, "signal": 1.2, "histogram": 0.3},
        "last_bar": "2026-11-24",
    }  # fmt: skip


async def test_get_market_status_and_date_time_tells_the_phase_and_the_time(
    reader: Reader, calendar: MarketCalendar, tools: dict[str, FunctionTool]
) -> None:
    """At the reader's clock (Tuesday 10:00 ET): regular session, its hours, the next open and close;
    on Thanksgiving, no session."""
    assert await invoke(tools["get_market_status_and_date_time"]) == {
        "now_utc": "2026-11-24T15:00:00Z",
        "now_new_york": "2026-11-24T10:00:00-05:00",
        "weekday": "Tuesday",
        "exchange": "XNYS",
        "phase": "regular",
        "session": {
            "date": "2026-11-24",
            "open": "2026-11-24T09:30:00-05:00",
            "close": "2026-11-24T16:00:00-05:00",
            "early_close": False,
        },
        "next_open": "2026-11-25T09:30:00-05:00",
        "next_close": "2026-11-24T16:00:00-05:00",
        "calendar": "installed",  # no worker has published its calendar to this Redis
    }
    thanksgiving = FakeClock(datetime(2026, 11, 26, 17, tzinfo=UTC))
    async with Reader("redis://127.0.0.1:1/0", clock=thanksgiving, calendar=calendar) as holiday:
        use_reader(holiday)  # no Redis there: the installed calendar answers
        closed = await invoke(tools["get_market_status_and_date_time"])
        use_reader(reader)
    assert (closed["weekday"], closed["phase"], closed["session"]) == ("Thursday", "closed", None)
    assert closed["next_open"] == "2026-11-27T09:30:00-05:00"
    assert closed["next_close"] == "2026-11-27T13:00:00-05:00"  # the half day after Thanksgiving


async def test_get_stock_data_bundle_returns_each_part_or_its_error(
    reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """Quote, unexpired chains near the money and indicators; a symbol with nothing cached errs per part."""
    bundle = await invoke(
        tools["get_stock_data_bundle"], symbol="AAPL", include_options=True, include_technical=True
    )
    assert set(bundle) == {"symbol", "quote", "options", "technical"}
    assert (bundle["quote"]["last"], bundle["quote"]["as_of"], bundle["quote"]["stale"]) == (
        105.2,
        AS_OF,
        False,
    )
    chains = bundle["options"]["chains"]
    assert [c["expiration"] for c in chains] == [NEAREST.isoformat(), SECOND.isoformat()]
    assert [(c["strike"], c["option_type"]) for c in chains[0]["contracts"]] == [
        (s, kind) for s in (95.0, 100.0, 105.0) for kind in ("call", "put")
    ]
    assert (chains[0]["truncated"], chains[0]["left_out"]["contracts"]) == (True, 80 - 6)
    assert "truncated" not in chains[1]
    assert "truncated" not in bundle["options"]
    assert bundle["technical"]["rsi"] == {"14": 61.25}

    quote_only = await invoke(tools["get_stock_data_bundle"], symbol="AAPL")
    assert set(quote_only) == {"symbol", "quote"}

    nothing = await invoke(
        tools["get_stock_data_bundle"], symbol="AMD", include_options=True, include_technical=True
    )
    assert nothing["symbol"] == "AMD"
    assert {part: "error" in nothing[part] for part in ("quote", "options", "technical")} == dict.fromkeys(
        ("quote", "options", "technical"), True
    )


async def test_an_agent_run_calls_every_tool_and_reads_its_json(reader: Reader, stored: None) -> None:
    """A whole `Runner.run` with a scripted model (no network) calling the nine tools in one turn."""
    arguments: dict[str, dict[str, Any]] = {
        "get_stock_quote": {"symbol": "AAPL"},
        "get_multiple_stock_quotes": {"symbols": ["AAPL", "MSFT"]},
        "get_options_expiration_dates": {"symbol": "AAPL"},
        "get_call_options_chain": {"symbol": "AAPL", "expiration": None, "min_strike": 95, "max_strike": 105},
        "get_put_options_chain": {"symbol": "AAPL", "expiration": "2026-12-04", "min_strike": None,
                                  "max_strike": None},
        "get_stock_price_history": {"symbol": "AAPL", "interval": "1d", "limit": 5},
        "get_ta_indicators": {"symbol": "AAPL"},
        "get_market_status_and_date_time": {},
        "get_stock_data_bundle": {"symbol": "AAPL", "include_options": False, "include_technical": True},
    }  # fmt: skip
    assert tuple(arguments) == TOOL_NAMES
    model = ScriptedModel(
        [
            ModelStep(output=[function_call(name, args, call_id=name) for name, args in arguments.items()]),
            ModelStep(output=[assistant_message("AAPL is at 105.2.")]),
        ]
    )
    agent = Agent(name="markets", model=model, tools=function_tools())
    result = await Runner.run(agent, "How is AAPL doing?", run_config=RunConfig(tracing_disabled=True))
    assert result.final_output == "AAPL is at 105.2."
    outputs = {
        item.raw_item["call_id"]: json.loads(item.output)  # type: ignore[index]
        for item in result.new_items
        if isinstance(item, ToolCallOutputItem)
    }
    assert set(outputs) == set(TOOL_NAMES)
    assert not [name for name, output in outputs.items() if "error" in output]
    assert outputs["get_stock_quote"]["last"] == 105.2
    assert outputs["get_multiple_stock_quotes"]["quotes"]["MSFT"]["stale"] is True
    assert outputs["get_options_expiration_dates"]["dates"][-1] == "2026-12-18"
    assert [c["strike"] for c in outputs["get_call_options_chain"]["calls"]] == [95, 100, 105]
    assert outputs["get_put_options_chain"]["expiration"] == "2026-12-04"
    assert [b["close"] for b in outputs["get_stock_price_history"]["bars"]] == [135, 136, 137, 138, 139]
    assert outputs["get_ta_indicators"]["macd"]["histogram"] == 0.3
    assert outputs["get_market_status_and_date_time"]["phase"] == "regular"
    assert outputs["get_stock_data_bundle"]["technical"]["as_of"] == AS_OF


async def test_a_missing_symbol_says_a_fetch_was_queued(
    redis_url: str, reader: Reader, tools: dict[str, FunctionTool]
) -> None:
    """A miss answers at once (wait_s=0) with an error telling the model to ask again; the fetch is queued."""
    answer = await invoke(tools["get_stock_quote"], symbol="nvda")
    assert set(answer) == {"error", "symbol"}
    assert answer["symbol"] == "NVDA"
    assert "queued" in answer["error"]
    assert "again" in answer["error"]
    assert queued_jobs(redis_url) == [keys.fetch_job_id("quotes", "NVDA", "")]


async def test_an_unknown_symbol_says_the_upstream_does_not_know_it(
    redis_url: str, reader: Reader, tools: dict[str, FunctionTool]
) -> None:
    """A negative-cached symbol errs with the upstream's word and queues nothing."""
    unknown = Unknown(source="tradier", checked_at=NOW, detail="tradier does not know this symbol")
    client = redis.Redis.from_url(redis_url)
    client.set(keys.unknown("quotes", "ZZZZ"), unknown.model_dump_json())
    client.close()
    answer = await invoke(tools["get_stock_quote"], symbol="ZZZZ")
    assert answer["symbol"] == "ZZZZ"
    assert "tradier does not know this symbol" in answer["error"]
    assert queued_jobs(redis_url) == []


async def test_invalid_symbol_and_interval_name_the_value_and_the_fix(
    redis_url: str, reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """A malformed symbol or an unknown interval errs naming the value and what is accepted; no fetch."""
    bad_symbol = await invoke(tools["get_stock_quote"], symbol="AAPL*")
    assert bad_symbol == {"error": bad_symbol["error"], "symbol": "AAPL*"}
    assert "'AAPL*' is not a ticker symbol" in bad_symbol["error"]
    bad_interval = await invoke(tools["get_stock_price_history"], symbol="AAPL", interval="1w", limit=30)
    assert "interval='1w'" in bad_interval["error"]
    assert "'5m'" in bad_interval["error"]
    assert queued_jobs(redis_url) == []


async def test_an_unreachable_cache_is_a_short_error_without_the_url(
    tools: dict[str, FunctionTool], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis out of reach: the model reads 'unavailable'; neither it nor the log sees the password."""
    async with Reader("redis://:s3cret@127.0.0.1:1/0", clock=FakeClock(NOW), wait_s=0) as down:
        use_reader(down)
        with caplog.at_level(logging.WARNING, logger="agent_tools"):
            answer = await invoke(tools["get_multiple_stock_quotes"], symbols=["AAPL"])
        use_reader(None)
    assert answer == {"error": UNAVAILABLE}
    assert "tools.cache_unavailable tool=get_multiple_stock_quotes" in caplog.text
    assert "s3cret" not in caplog.text


async def test_without_use_reader_the_tools_read_redis_url(
    redis_url: str, stored: None, monkeypatch_env: pytest.MonkeyPatch
) -> None:
    """No reader set: the tools create a default Reader from REDIS_URL, one per event loop."""
    monkeypatch_env.setenv("REDIS_URL", redis_url)
    try:
        answer = json.loads(await get_stock_quote("AAPL"))
        assert json.loads(await get_stock_quote("AAPL")) == answer
        defaults = list(tools_module._defaults.values())
    finally:
        for default in tools_module._defaults.values():
            await default.aclose()
        tools_module._defaults.clear()
    assert answer["last"] == 105.2
    assert [d.url for d in defaults] == [redis_url]


async def test_plain_functions_work_without_the_sdk(
    reader: Reader, stored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tool functions are plain coroutines returning JSON; function_tools() alone needs the SDK."""
    assert json.loads(await get_stock_quote("AAPL"))["last"] == 105.2
    assert set(json.loads(await get_multiple_stock_quotes(["AAPL", "MSFT"]))["quotes"]) == {"AAPL", "MSFT"}
    monkeypatch.setitem(sys.modules, "agents", None)  # what a missing package looks like to import
    with pytest.raises(ImportError, match=r"pip install 'marketcache\[agents\]'"):
        function_tools()


def test_agent_tools_imports_without_the_sdk() -> None:
    """`import agent_tools` in a process where the SDK cannot be imported."""
    code = "import sys; sys.modules['agents'] = None; import agent_tools as t; print(len(t.TOOL_NAMES))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "9"), done.stderr


async def test_history_without_bars_says_why_and_until_when(
    reader: Reader, redis_url: str, tools: dict[str, FunctionTool]
) -> None:
    """Remembered "no data" (no 5m bars over a weekend, a new listing) is said, not a bare []."""
    empty = PriceHistory(**ENVELOPE, symbol="IPOX", interval="5m", bars=())
    client = redis.Redis.from_url(redis_url)
    client.set(keys.history("IPOX", "5m"), empty.model_dump_json())
    client.close()
    answer = await invoke(tools["get_stock_price_history"], symbol="IPOX", interval="5m", limit=None)
    assert (answer["bars"], answer["total_bars"]) == ([], 0)
    assert "no 5m bars of IPOX" in answer["note"]
    assert "checks again after 2026-11-24T15:00:40Z" in answer["note"]


async def test_multiple_quotes_takes_at_most_50_symbols() -> None:
    """Each miss may cost an upstream call: a longer list is refused with the limit, before any read."""
    answer = json.loads(await tools_module.get_multiple_stock_quotes([f"S{i}" for i in range(51)]))
    assert "at most 50" in answer["error"]
    assert "51 symbols" in answer["error"]


async def test_a_symbol_repeated_does_not_count_against_the_50(
    reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """60 names for one symbol in various spellings are one quote, not a refusal."""
    answer = await invoke(tools["get_multiple_stock_quotes"], symbols=["AAPL", "aapl", " AAPL"] * 20)
    assert list(answer["quotes"]) == ["AAPL"]


# Near the money: a chain stored without the underlying's price (Tradier sends none).

ISSUE_STRIKES = [50.0 + 5 * i for i in range(40)]  # 50, 55, ..., 245


def _store(redis_url: str, items: dict[str, Any]) -> None:
    client = redis.Redis.from_url(redis_url)
    for key, item in items.items():
        client.set(key, item.model_dump_json(exclude_none=True))
    client.close()


def _unpriced(expiration: date, strikes: list[float], *, deltas: bool = True) -> OptionChain:
    chain = _chain(expiration, strikes)
    contracts = chain.contracts if deltas else tuple(c._replace(delta=None) for c in chain.contracts)
    return chain.model_copy(update={"underlying_price": None, "contracts": contracts})


def _store_unpriced_chain(redis_url: str, quote: Quote | None, *, deltas: bool = True) -> None:
    """AAPL's nearest chain at strikes 50..245 without an underlying price, and `quote` if given."""
    items: dict[str, Any] = {
        keys.chain_index("AAPL"): ChainIndex(**ENVELOPE, symbol="AAPL", expirations=(NEAREST,)),
        keys.chain("AAPL", NEAREST): _unpriced(NEAREST, ISSUE_STRIKES, deltas=deltas),
    }
    if quote is not None:
        items[keys.quote("AAPL")] = quote
    _store(redis_url, items)


async def test_a_chain_stored_without_a_price_is_centred_on_the_cached_quote(
    redis_url: str, reader: Reader, tools: dict[str, FunctionTool]
) -> None:
    """Issue 12: strikes 50..245, no underlying price stored, quote last 100: the calls tool gives the
    30 strikes nearest 100 (50-195), the bundle 95/100/105, both saying the price and its time."""
    _store_unpriced_chain(redis_url, Quote(**ENVELOPE, symbol="AAPL", last=100.0))
    calls = await invoke(tools["get_call_options_chain"], symbol="AAPL", expiration=None, min_strike=None,
                         max_strike=None)  # fmt: skip
    assert [c["strike"] for c in calls["calls"]] == [50.0 + 5 * i for i in range(30)]
    assert (calls["underlying_price"], calls["underlying_price_at"]) == (100.0, AS_OF)
    assert calls["left_out"] == {"contracts": 10, "strikes_below": 0, "strikes_above": 10}
    assert "note" not in calls

    bundle = await invoke(tools["get_stock_data_bundle"], symbol="AAPL", include_options=True,
                          include_technical=False)  # fmt: skip
    (chain,) = bundle["options"]["chains"]
    assert sorted({c["strike"] for c in chain["contracts"]}) == [95.0, 100.0, 105.0]
    assert chain["underlying_price"] == 100.0


@pytest.mark.parametrize(
    ("quote", "price"),
    [
        pytest.param({"last": 100.0, "bid": 150.0, "ask": 150.2}, 100.0, id="last"),
        pytest.param(
            {"last": 0.0, "bid": 99.9, "ask": 100.1, "prevclose": 150.0}, 100.0, id="mid-of-bid-ask"
        ),
        pytest.param({"bid": 0.0, "ask": 100.1, "prevclose": 100.0}, 100.0, id="prevclose"),
    ],
)
def test_the_sync_reader_prices_a_chain_of_one_expiration_from_the_quote(
    redis_url: str, quote: dict[str, float], price: float
) -> None:
    """`SyncReader.chain` with an expiration: the quote's last, else the bid/ask midpoint, else the
    previous close, read in the same round trip; the chain's own price wins when it has one."""
    _store_unpriced_chain(redis_url, Quote(**ENVELOPE, symbol="AAPL", **quote))
    with SyncReader(redis_url, clock=FakeClock(NOW), wait_s=0) as sync:
        chain = sync.chain("AAPL", NEAREST, "calls")
        assert (chain.underlying_price, chain.underlying_price_at) == (pytest.approx(price), FETCHED)
        assert chain.read_at == NOW
        _store(redis_url, {keys.chain("AAPL", NEAREST): _chain(NEAREST, ISSUE_STRIKES)})  # priced 100
        _store(redis_url, {keys.quote("AAPL"): Quote(**ENVELOPE, symbol="AAPL", last=120.0)})
        own = sync.chain("AAPL", NEAREST)
        assert (own.underlying_price, own.underlying_price_at) == (100.0, None)


@pytest.mark.parametrize(
    "quote",
    [
        pytest.param(None, id="no-quote"),
        pytest.param(Quote(**ENVELOPE, symbol="AAPL", last=0.0, prevclose=0.0), id="zero-price"),
    ],
)
async def test_without_a_price_a_chain_is_centred_by_delta_and_says_so(
    redis_url: str, reader: Reader, tools: dict[str, FunctionTool], quote: Quote | None
) -> None:
    """No usable price (no quote, or only zeros): `underlying_price` is null, the strikes are centred
    on the strike whose delta is nearest 0.5, and a note says so and how to choose strikes."""
    _store_unpriced_chain(redis_url, quote)
    client = redis.Redis.from_url(redis_url)
    chain = _unpriced(NEAREST, ISSUE_STRIKES)
    # Deltas fall with the strike: 0.5 at strike 120 (the money, as the greeks see it).
    contracts = tuple(c._replace(delta=round(0.5 - (c.strike - 120) / 400, 4)) for c in chain.contracts)
    client.set(
        keys.chain("AAPL", NEAREST), chain.model_copy(update={"contracts": contracts}).model_dump_json()
    )
    client.close()
    calls = await invoke(tools["get_call_options_chain"], symbol="AAPL", expiration=None, min_strike=None,
                         max_strike=None)  # fmt: skip
    assert calls["underlying_price"] is None
    assert "underlying_price_at" not in calls
    assert [c["strike"] for c in calls["calls"]] == [50.0 + 5 * i for i in range(30)]  # nearest 120
    assert "underlying price is unknown" in calls["note"]
    assert "120" in calls["note"]
    assert "min_strike/max_strike" in calls["note"]
    bundle = await invoke(tools["get_stock_data_bundle"], symbol="AAPL", include_options=True,
                          include_technical=None)  # fmt: skip
    (part,) = bundle["options"]["chains"]
    assert (part["underlying_price"], "unknown" in part["note"]) == (None, True)
    assert sorted({c["strike"] for c in part["contracts"]}) == [115.0, 120.0, 125.0]


async def test_without_a_price_or_deltas_the_lowest_strikes_are_shown_and_said(
    redis_url: str, reader: Reader, tools: dict[str, FunctionTool]
) -> None:
    """Neither a price nor greeks: never the middle of the list in silence; the lowest strikes, said."""
    _store_unpriced_chain(redis_url, None, deltas=False)
    puts = await invoke(tools["get_put_options_chain"], symbol="AAPL", expiration=NEAREST.isoformat(),
                        min_strike=None, max_strike=None)  # fmt: skip
    assert puts["underlying_price"] is None
    assert [p["strike"] for p in puts["puts"]] == ISSUE_STRIKES[:30]
    assert "not centred" in puts["note"]
    assert puts["left_out"] == {"contracts": 10, "strikes_below": 0, "strikes_above": 10}


# Tools an LLM can use: strict schemas, bounded answers.

# OpenAI's strict function calling (Structured Outputs, "Supported schemas":
# https://platform.openai.com/docs/guides/structured-outputs#supported-schemas, and
# https://platform.openai.com/docs/guides/function-calling#strict-mode): every object sets
# `additionalProperties: false` and lists every property in `required`; an optional value is a
# union with null, never a `default` (the API refuses one: "In context=('properties', 'name'),
# 'default' is not permitted", as reported in dotnet/extensions#6196 and 567-labs/instructor#1074).
# Type-specific keywords are not supported by every model ("Some type-specific keywords are not yet
# supported": minLength, maxLength, pattern, format; minimum, maximum, multipleOf; patternProperties,
# minProperties, maxProperties; minItems, maxItems, uniqueItems...). So the check below allows only
# the keywords every strict model takes, and nothing else.
STRICT_KEYWORDS = frozenset(
    {"type", "description", "title", "properties", "required", "additionalProperties", "items", "enum",
     "const", "anyOf", "$ref", "$defs"}
)  # fmt: skip
STRICT_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})


def strict_mode_violations(schema: dict[str, Any], where: str = "") -> list[str]:
    """Where `schema` breaks OpenAI's strict-mode rules, as readable lines (none: it obeys them)."""
    found = [f"{where or '/'}: unsupported keyword {k!r}" for k in sorted(set(schema) - STRICT_KEYWORDS)]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    found += [f"{where or '/'}: unsupported type {t!r}" for t in types if t not in STRICT_TYPES]
    if "object" in types:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            found.append(f"{where or '/'}: additionalProperties is not false")
        if sorted(schema.get("required", [])) != sorted(properties):
            found.append(f"{where or '/'}: required {schema.get('required')} is not every property")
        for name, child in properties.items():
            found += strict_mode_violations(child, f"{where}/{name}")
    if isinstance(schema.get("items"), dict):
        found += strict_mode_violations(schema["items"], f"{where}/items")
    for i, option in enumerate(schema.get("anyOf", [])):
        found += strict_mode_violations(option, f"{where}/anyOf/{i}")
    for name, definition in schema.get("$defs", {}).items():
        found += strict_mode_violations(definition, f"{where}/$defs/{name}")
    return found


def test_every_tool_schema_obeys_openai_strict_mode(tools: dict[str, FunctionTool]) -> None:
    """The nine schemas: strict, every property required, nullable instead of `default`, only
    supported keywords (two tools used to carry `default`, which strict function calling refuses)."""
    assert len(tools) == 9
    violations = {
        name: strict_mode_violations(tool.params_json_schema)
        for name, tool in tools.items()
        if not tool.strict_json_schema or strict_mode_violations(tool.params_json_schema)
    }
    assert violations == {}
    history = tools["get_stock_price_history"].params_json_schema["properties"]
    assert history["limit"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    bundle = tools["get_stock_data_bundle"].params_json_schema["properties"]
    assert bundle["include_options"]["anyOf"] == [{"type": "boolean"}, {"type": "null"}]


def test_the_strict_mode_check_finds_what_openai_refuses() -> None:
    """The checker itself: a default, a missing `required`, an open object and `pattern` are found."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "default": "x", "pattern": "^x$"}, "b": {"type": "object"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    assert strict_mode_violations(schema) == [
        "/: required ['a'] is not every property",
        "/a: unsupported keyword 'default'",
        "/a: unsupported keyword 'pattern'",
        "/b: additionalProperties is not false",
    ]


async def test_null_arguments_mean_the_defaults(
    reader: Reader, stored: None, tools: dict[str, FunctionTool]
) -> None:
    """A model passes null for interval, limit and the bundle's flags: daily bars, 30 of them, the
    quote alone; the plain functions called without them answer the same."""
    history = await invoke(tools["get_stock_price_history"], symbol="AAPL", interval=None, limit=None)
    assert (history["interval"], len(history["bars"])) == ("1d", 30)
    assert json.loads(await get_stock_price_history("AAPL")) == history
    bundle = await invoke(tools["get_stock_data_bundle"], symbol="AAPL", include_options=None,
                          include_technical=None)  # fmt: skip
    assert set(bundle) == {"symbol", "quote"}
    assert json.loads(await get_stock_data_bundle("AAPL")) == bundle


TOKEN_BOUND = 6_000
"""The issue's bound on the largest answer of each tool, in tokens estimated as characters / 4."""


def _full_contract(expiration: date, kind: str, strike: float) -> OptionContract:
    """A contract with every field the upstream can send, at realistic precision."""
    return OptionContract(
        symbol=f"AAPL{expiration:%y%m%d}{kind[0].upper()}{int(strike * 1000):08d}", option_type=kind,  # type: ignore[arg-type]
        strike=strike, bid=12.35, ask=12.55, last=12.45, change=-0.35, volume=12345, open_interest=67890,
        bid_iv=0.251234, mid_iv=0.253456, ask_iv=0.255678, delta=0.512345 if kind == "call" else -0.487655,
        gamma=0.012345, theta=-0.045678, vega=0.123456, rho=0.034567,
    )  # fmt: skip


def _big_chain(expiration: date) -> OptionChain:
    """500 contracts: calls and puts at 250 strikes, 2.5 apart from 50, priced 200."""
    contracts = [
        _full_contract(expiration, kind, 50.0 + 2.5 * i) for i in range(250) for kind in ("call", "put")
    ]
    return OptionChain(
        **ENVELOPE, symbol="AAPL", expiration=expiration, underlying_price=200.0,
        greeks_updated_at=FETCHED, contracts=contracts,
    )  # fmt: skip


def _full_quote(symbol: str) -> Quote:
    """A quote with every Tradier field."""
    return Quote(
        **ENVELOPE, symbol=symbol, description=f"{symbol} Holdings Incorporated Class A Common Stock",
        exch="Q", type="stock", last=1234.56, change=-12.34, change_percentage=-0.99, volume=123456789,
        average_volume=98765432, last_volume=12345, trade_date=FETCHED, open=1240.01, high=1245.67,
        low=1230.12, close=1234.56, prevclose=1246.9, week_52_high=1500.25, week_52_low=900.75,
        bid=1234.5, bidsize=12, bidexch="Q", bid_date=FETCHED, ask=1234.62, asksize=15, askexch="P",
        ask_date=FETCHED, root_symbols=symbol,
    )  # fmt: skip


def _long_history() -> PriceHistory:
    """400 daily bars with every field, prices with cents, volumes in the tens of millions."""
    first = date(2026, 11, 24) - timedelta(days=399)
    bars = [
        Bar(
            start=datetime.combine(first + timedelta(days=i), datetime.min.time(), tzinfo=ET),
            open=1234.56 + i,
            high=1240.12 + i,
            low=1230.01 + i,
            close=1235.67 + i,
            volume=12345678.0 + i,
            vwap=1236.78 + i,
        )
        for i in range(400)
    ]
    return PriceHistory(**ENVELOPE, symbol="AAPL", interval="1d", bars=bars)


@pytest.fixture
def stored_large(redis_url: str) -> list[str]:
    """The largest data of each tool: 12 chains of 500 contracts, 400 bars, 50 full quotes (their
    symbols returned), 2,000 expirations, indicators at 20 windows each."""
    symbols = [f"S{i:02d}X" for i in range(50)]
    expirations = tuple(NOW.date() + timedelta(days=i) for i in range(2_000))
    items: dict[str, Any] = {keys.quote(s): _full_quote(s) for s in symbols}
    items |= {keys.chain("AAPL", d): _big_chain(d) for d in expirations[:12]}
    items |= {
        keys.quote("AAPL"): _full_quote("AAPL"),
        keys.chain_index("AAPL"): ChainIndex(**ENVELOPE, symbol="AAPL", expirations=expirations[:12]),
        keys.expirations("AAPL"): Expirations(**ENVELOPE, symbol="AAPL", dates=expirations),
        keys.history("AAPL", "1d"): _long_history(),
        keys.indicators("AAPL"): Indicators(
            **ENVELOPE, symbol="AAPL", interval="1d", as_of=datetime(2026, 11, 24, 5, tzinfo=UTC),
            close=1234.56, sma=dict.fromkeys(range(5, 205, 10), 1234.5678),
            ema=dict.fromkeys(range(5, 205, 10), 1234.5678), rsi=dict.fromkeys(range(2, 42, 2), 56.789),
            macd=Macd(fast=12, slow=26, signal_window=9, macd=1.23456, signal=1.12345, histogram=0.11111),
        ),
    }  # fmt: skip
    _store(redis_url, items)
    return symbols


async def test_the_largest_answer_of_each_tool_fits_the_token_bound(
    reader: Reader, stored_large: list[str], tools: dict[str, FunctionTool]
) -> None:
    """500-contract chains, 400 daily bars with limit 500, 50 full quotes, 2,000 expirations,
    indicators and market status: each answer is whole JSON under 6,000 tokens (characters / 4),
    and one that left rows out says `truncated`, what it left out and how to ask for the rest."""
    symbols = stored_large
    calls: dict[str, dict[str, Any]] = {
        "get_stock_quote": {"symbol": "AAPL"},
        "get_multiple_stock_quotes": {"symbols": symbols},
        "get_options_expiration_dates": {"symbol": "AAPL"},
        "get_call_options_chain": {"symbol": "AAPL", "expiration": None, "min_strike": None,
                                   "max_strike": None},
        "get_put_options_chain": {"symbol": "AAPL", "expiration": None, "min_strike": 0, "max_strike": 1e6},
        "get_stock_price_history": {"symbol": "AAPL", "interval": "1d", "limit": 500},
        "get_ta_indicators": {"symbol": "AAPL"},
        "get_market_status_and_date_time": {},
        "get_stock_data_bundle": {"symbol": "AAPL", "include_options": True, "include_technical": True},
    }  # fmt: skip
    answers: dict[str, dict[str, Any]] = {}
    for name, arguments in calls.items():
        raw_arguments = json.dumps(arguments)
        context = ToolContext(None, tool_name=name, tool_call_id="call_1", tool_arguments=raw_arguments)
        output = await tools[name].on_invoke_tool(context, raw_arguments)
        assert len(output) / 4 < TOKEN_BOUND, (name, len(output))
        assert len(output) <= tools_module.MAX_ANSWER_CHARS, (name, len(output))
        answers[name] = json.loads(output)
        assert "error" not in answers[name], (name, answers[name])

    calls_answer = answers["get_call_options_chain"]
    assert [c["strike"] for c in calls_answer["calls"]] == [162.5 + 2.5 * i for i in range(30)]  # around 200
    assert calls_answer["left_out"] == {"contracts": 220, "strikes_below": 45, "strikes_above": 175}
    puts = answers["get_put_options_chain"]
    assert (len(puts["puts"]), puts["truncated"], puts["left_out"]["contracts"]) == (30, True, 220)

    history = answers["get_stock_price_history"]
    kept = len(history["bars"])
    assert history["bars"][-1]["date"] == "2026-11-24"  # the most recent kept, the oldest cut
    assert (history["truncated"], history["left_out"], history["total_bars"]) == (
        True,
        {"bars": 400 - kept},
        400,
    )
    assert f"limit={kept}" in history["hint"]

    quotes = answers["get_multiple_stock_quotes"]
    listed = list(quotes["quotes"])
    assert listed + quotes.get("left_out", {}).get("symbols", []) == symbols  # each symbol: shown or named
    assert quotes["quotes"][symbols[0]]["week_52_high"] == 1500.25

    dates = answers["get_options_expiration_dates"]
    assert dates["dates"][0] == NOW.date().isoformat()
    assert dates["left_out"]["dates"] == 2_000 - len(dates["dates"])
    assert dates["truncated"] is True

    options = answers["get_stock_data_bundle"]["options"]
    shown = [c["expiration"] for c in options["chains"]]
    assert shown + options.get("left_out", {}).get("expirations", []) == [
        (NOW.date() + timedelta(days=i)).isoformat() for i in range(12)
    ]
    assert all(len(c["contracts"]) == 6 and c["left_out"]["contracts"] == 494 for c in options["chains"])
    assert answers["get_stock_data_bundle"]["technical"]["sma"]["195"] == 1234.5678
    assert answers["get_ta_indicators"]["rsi"]["40"] == 56.789


async def test_quotes_that_do_not_fit_are_named_with_a_hint(
    reader: Reader, stored_large: list[str], monkeypatch: pytest.MonkeyPatch, tools: dict[str, FunctionTool]
) -> None:
    """With a tighter bound, whole quotes are left out, named in `left_out`, and the JSON stays whole."""
    monkeypatch.setattr(answers, "MAX_ANSWER_CHARS", 5_000)
    answer = await invoke(tools["get_multiple_stock_quotes"], symbols=stored_large)
    assert len(json.dumps(answer, separators=(",", ":"))) <= 5_000
    kept = list(answer["quotes"])
    assert 0 < len(kept) < 50
    assert answer["truncated"] is True
    assert answer["left_out"] == {"symbols": stored_large[len(kept) :]}
    assert "another call" in answer["hint"]


async def test_an_answer_no_tool_could_cut_is_an_error_not_cut_json(
    redis_url: str, reader: Reader, tools: dict[str, FunctionTool], caplog: pytest.LogCaptureFixture
) -> None:
    """A quote with a 30,000-character description: an error saying the bound, never JSON cut short."""
    _store(
        redis_url, {keys.quote("AAPL"): Quote(**ENVELOPE, symbol="AAPL", last=1.0, description="x" * 30_000)}
    )
    with caplog.at_level(logging.WARNING, logger="agent_tools"):
        answer = await invoke(tools["get_stock_quote"], symbol="AAPL")
    assert set(answer) == {"error"}
    assert f"over the bound of {answers.MAX_ANSWER_CHARS}" in answer["error"]
    assert "tools.answer_too_long tool=get_stock_quote" in caplog.text


def test_function_tools_gives_the_named_ones_in_order_and_refuses_an_unknown_name() -> None:
    """`function_tools(*names)`: a subset for an agent that needs fewer; a typo names the valid ones."""
    tools = function_tools("get_market_status_and_date_time", "get_stock_quote")
    assert [tool.name for tool in tools] == ["get_market_status_and_date_time", "get_stock_quote"]
    with pytest.raises(ValueError, match=r"no tool named 'get_quote': choose from get_stock_quote, "):
        function_tools("get_stock_quote", "get_quote")


def test_the_one_definition_reads_each_tool_as_the_agents_sdk_would() -> None:
    """Each ToolSpec (served to Agents and MCP alike) has the description, parameter descriptions and
    strict schema the Agents SDK itself derives from the same function's signature and docstring."""
    from agents.function_schema import function_schema

    from agent_tools import SPECS, TOOLS

    for tool, spec in zip(TOOLS, SPECS, strict=True):
        derived = function_schema(tool)
        assert (spec.name, spec.description) == (derived.name, derived.description)
        assert dict(spec.parameters) == derived.params_json_schema, spec.name
    described = SPECS[0].parameters["properties"]["symbol"]["description"]
    assert described.startswith(
        'Ticker symbol, e.g. "AAPL" or "BRK.B" (upper or lower case), an index such as\n'
    )


async def test_an_argument_the_tool_does_not_take_is_an_error_naming_it(
    tools: dict[str, FunctionTool],
) -> None:
    """Arguments are checked by name before a read: an unknown or missing one, or arguments that are
    not a JSON object, answer an error naming it and the parameters the tool takes."""
    context = ToolContext(context=None, tool_name="get_stock_quote", tool_call_id="1", tool_arguments="{}")
    tool = tools["get_stock_quote"]
    unknown = json.loads(await tool.on_invoke_tool(context, '{"symbol": "AAPL", "ticker": "MSFT"}'))
    assert unknown == {"error": "get_stock_quote takes no argument 'ticker'; it takes: symbol"}
    missing = json.loads(await tool.on_invoke_tool(context, "{}"))
    assert missing == {"error": "get_stock_quote needs the argument 'symbol'; it takes: symbol"}
    not_an_object = json.loads(await tool.on_invoke_tool(context, '["AAPL"]'))
    assert not_an_object["error"].startswith("the arguments of get_stock_quote must be a JSON object")
