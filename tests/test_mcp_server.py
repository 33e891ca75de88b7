"""The MCP server (`python -m reader mcp`) through the mcp SDK's own client, in memory, against a real
Redis: its tools, its resources with their freshness, Redis out of reach, the reader's ACL user,
and subscriptions told of the worker's stores; each through both protocol eras the SDK speaks
(2026-07-28 with `mode="auto"`, 2025-11-25 with `mode="legacy"`)."""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import mcp_types as types
import pytest
import redis
import redis.asyncio
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import Client
from mcp.client.subscriptions import ResourceUpdated, Subscription
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from agent_tools import SPECS, TOOL_NAMES, function_tools, mcp_server, resources, use_reader
from agent_tools import tools as plain
from agent_tools.answers import MISCONFIGURED
from agent_tools.mcp_server import CacheServer
from devtools.redis_server import RedisServer, free_port
from reader import Quote, Reader, keys
from reader.ondemand import Unknown
from reader.telemetry import PublishedPlan
from tests.support import FakeClock, RunningEmulator, make_config
from tests.test_acl import PASSWORDS, acl_urls  # noqa: F401  (a fixture: the reader's and the worker's ACL users)
from tests.test_tools import NEAREST, NOW, stored  # noqa: F401  (a fixture: AAPL's datasets, MSFT stale)
from worker.config import Secrets
from worker.runtime import Runtime
from worker.store import Store

ERAS = [pytest.param("auto", id="2026-07-28"), pytest.param("legacy", id="2025-11-25")]
PROTOCOL = {"auto": "2026-07-28", "legacy": "2025-11-25"}
AAPL = resources.quote_uri("AAPL")
MSFT = resources.quote_uri("MSFT")
NOTIFIED_WITHIN_S = 1.0
"""The acceptance's bound: a subscriber hears of a stored quote within a second of the store."""
WAIT_S = 5.0
"""The longest wait for any other notification (a loaded machine must not fail them)."""


@asynccontextmanager
async def connect(url: str, mode: str, clock: FakeClock, **options: Any) -> AsyncIterator[Client]:
    """An SDK client connected in memory to a new `CacheServer` on `url`, at `clock`, in the era of
    `mode`; a miss answers at once (wait_s=0). No response cache: every read reaches the server."""
    server = CacheServer(url, clock=clock, wait_s=0, timeout_s=1)
    async with Client(server.server, mode=mode, cache=None, **options) as client:
        assert client.protocol_version == PROTOCOL[mode]
        yield client


async def until_announcements_heard(url: str) -> None:
    """Wait until a server's listener has subscribed to the worker's announcements (`keys.STORED`):
    it starts with the server, and a store before it subscribed would go unheard."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        for _ in range(500):
            if dict(await client.pubsub_numsub(keys.STORED)).get(keys.STORED.encode(), 0) >= 1:
                return
            await anyio.sleep(0.01)
    finally:
        await client.aclose()
    raise AssertionError(f"no server subscribed to {keys.STORED} within 5 s")


def _set(url: str, key: str, value: str) -> None:
    client = redis.Redis.from_url(url)
    client.set(key, value)
    client.close()


def _text(result: types.CallToolResult) -> str:
    """The text of a tool's answer (one text content)."""
    (content,) = result.content
    assert isinstance(content, types.TextContent)
    return content.text


def _without(data: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in data.items() if name not in names}


# The tools.


@pytest.mark.parametrize("mode", ERAS)
async def test_the_tool_list_is_the_nine_agent_tools_read_only(
    redis_url: str, clock: FakeClock, mode: str
) -> None:
    """Names in order, descriptions, parameter schemas (those the Agents SDK is given), read-only."""
    sdk_tools = {tool.name: tool for tool in function_tools()}
    async with connect(redis_url, mode, clock) as client:
        listed = (await client.list_tools()).tools
    assert tuple(tool.name for tool in listed) == TOOL_NAMES
    assert len(listed) == 9
    for tool, spec in zip(listed, SPECS, strict=True):
        assert tool.description == spec.description == sdk_tools[tool.name].description
        assert tool.input_schema == dict(spec.parameters) == sdk_tools[tool.name].params_json_schema
        properties = tool.input_schema["properties"]
        assert all(p["description"].strip() for p in properties.values()), tool.name
        assert tool.annotations == types.ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        )
        assert tool.output_schema is None  # the answer is the text, as the Agents SDK tool's
    assert (
        listed[0].input_schema["properties"]["symbol"]["description"].startswith('Ticker symbol, e.g. "AAPL"')
    )
    assert set(listed[3].input_schema["properties"]) == {"symbol", "expiration", "min_strike", "max_strike"}


TOOL_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_stock_quote", {"symbol": "aapl"}),
    ("get_stock_quote", {"symbol": "MSFT"}),  # stale
    ("get_stock_quote", {"symbol": "AAPL*"}),  # not a ticker symbol
    ("get_stock_quote", {"symbol": "ZZZZ"}),  # the upstream does not know it
    ("get_multiple_stock_quotes", {"symbols": ["AAPL", "MSFT", "AAPL*"]}),  # one part an error
    ("get_multiple_stock_quotes", {"symbols": []}),
    ("get_options_expiration_dates", {"symbol": "AAPL"}),
    (
        "get_call_options_chain",
        {"symbol": "AAPL", "expiration": None, "min_strike": None, "max_strike": None},
    ),
    ("get_call_options_chain", {"symbol": "AAPL"}),  # the nullable ones left out
    ("get_call_options_chain", {"symbol": "AAPL", "expiration": "12/18/2026"}),
    (
        "get_put_options_chain",
        {"symbol": "AAPL", "expiration": "2026-11-27", "min_strike": 95, "max_strike": 110},
    ),
    ("get_put_options_chain", {"symbol": "AAPL", "min_strike": 110, "max_strike": 100}),
    ("get_stock_price_history", {"symbol": "AAPL", "interval": "1d", "limit": 5}),
    ("get_stock_price_history", {"symbol": "AAPL", "interval": "1w", "limit": None}),
    ("get_ta_indicators", {"symbol": "AAPL"}),
    ("get_market_status_and_date_time", {}),
    ("get_stock_data_bundle", {"symbol": "AAPL", "include_options": True, "include_technical": True}),
    ("get_stock_data_bundle", {"symbol": "ZZZZ", "include_options": True, "include_technical": None}),
]


@pytest.mark.parametrize("mode", ERAS)
async def test_each_tool_answers_what_its_function_answers(
    redis_url: str,
    stored: None,  # noqa: F811
    clock: FakeClock,
    mode: str,
) -> None:
    """For the same cached data and arguments, each tool's text is its plain function's answer;
    `isError` exactly when that answer is `{"error": ...}`."""
    unknown = Unknown(source="tradier", checked_at=NOW, detail="tradier does not know this symbol")
    for dataset in ("quotes", "expirations", "chains", "indicators"):
        _set(redis_url, keys.unknown(dataset, "ZZZZ"), unknown.model_dump_json())
    assert {name for name, _ in TOOL_CALLS} == set(TOOL_NAMES)
    errors: list[bool] = []
    async with Reader(redis_url, clock=clock, wait_s=0) as reader, connect(redis_url, mode, clock) as client:
        use_reader(reader)
        try:
            for name, arguments in TOOL_CALLS:
                expected = await getattr(plain, name)(**arguments)
                result = await client.call_tool(name, arguments)
                assert _text(result) == expected, (name, arguments)
                is_error = "error" in json.loads(expected)
                assert result.is_error is is_error, (name, arguments, expected)
                errors.append(is_error)
        finally:
            use_reader(None)
    assert errors.count(True) == 6  # and 12 answers, two of which carry a part's error
    assert json.loads(expected)["quote"]["error"]  # the last: a bundle whose parts are errors


@pytest.mark.parametrize("mode", ERAS)
async def test_a_tool_call_leaves_the_callers_reader_alone(
    redis_url: str, clock: FakeClock, mode: str
) -> None:
    """The server reads through its own reader for a call, and the caller's tools (in the same
    process) still read through theirs: here a reader an hour ahead of the server's clock."""
    later = FakeClock(NOW + timedelta(hours=1))
    async with Reader(redis_url, clock=later, wait_s=0) as reader, connect(redis_url, mode, clock) as client:
        use_reader(reader)
        try:
            served = await client.call_tool("get_market_status_and_date_time", {})
            own = json.loads(await plain.get_market_status_and_date_time())
        finally:
            use_reader(None)
    assert json.loads(_text(served))["now_utc"] == "2026-11-24T15:00:00Z"
    assert own["now_utc"] == "2026-11-24T16:00:00Z"


@pytest.mark.parametrize("mode", ERAS)
async def test_a_bad_tool_call_is_answered_an_error(redis_url: str, clock: FakeClock, mode: str) -> None:
    """An argument a tool does not take, or a required one missing: an error answer naming it;
    an unknown tool: a protocol error naming it and the tools there are."""
    async with connect(redis_url, mode, clock) as client:
        extra = await client.call_tool("get_stock_quote", {"symbol": "AAPL", "exchange": "Q"})
        missing = await client.call_tool("get_stock_quote", {})
        with pytest.raises(MCPError, match="no tool named 'get_news': choose from get_stock_quote, "):
            await client.call_tool("get_news", {"symbol": "AAPL"})
    assert (extra.is_error, json.loads(_text(extra))) == (
        True,
        {"error": "get_stock_quote takes no argument 'exchange'; it takes: symbol"},
    )
    assert (missing.is_error, json.loads(_text(missing))) == (
        True,
        {"error": "get_stock_quote needs the argument 'symbol'; it takes: symbol"},
    )


# The resources.


@pytest.mark.parametrize("mode", ERAS)
async def test_the_resources_are_the_market_status_and_the_watchlists_quotes(
    redis_url: str, clock: FakeClock, mode: str
) -> None:
    """Listed: the market status, and a quote per symbol of the plan the worker published (none
    before one did); the quote and chain templates."""
    async with connect(redis_url, mode, clock) as client:
        before = [r.uri for r in (await client.list_resources()).resources]
        plan = PublishedPlan(
            published_at=NOW, timezone="America/New_York", priority=("quotes",), keep_stale_s=600,
            watchlist=("AAPL", "BRK.B", "SPX"),
        )  # fmt: skip
        _set(redis_url, keys.PLAN, plan.model_dump_json())
        listed = (await client.list_resources()).resources
        templates = (await client.list_resource_templates()).resource_templates
    assert before == [resources.MARKET_STATUS]
    assert [(r.uri, r.name, r.mime_type) for r in listed] == [
        ("marketcache://market/status", "market status", "application/json"),
        ("marketcache://quote/AAPL", "AAPL quote", "application/json"),
        ("marketcache://quote/BRK.B", "BRK.B quote", "application/json"),
        ("marketcache://quote/SPX", "SPX quote", "application/json"),
    ]
    assert [(t.uri_template, t.name) for t in templates] == [
        ("marketcache://quote/{symbol}", "quote"),
        ("marketcache://chain/{symbol}/{expiration}", "option chain"),
    ]
    assert all(t.mime_type == "application/json" and t.description for t in templates)


async def _read(client: Client, uri: str) -> tuple[dict[str, Any], types.ReadResourceResult]:
    result = await client.read_resource(uri)
    (contents,) = result.contents
    assert isinstance(contents, types.TextResourceContents)
    assert (contents.uri, contents.mime_type) == (uri, "application/json")
    return json.loads(contents.text), result


@pytest.mark.parametrize("mode", ERAS)
async def test_a_resource_read_says_its_freshness(
    redis_url: str,
    stored: None,  # noqa: F811
    clock: FakeClock,
    mode: str,
) -> None:
    """A quote, a chain and the market status read with `as_of`, `stale` and `fresh_until`; on a
    2026-07-28 session `ttlMs` is `fresh_until - now` (0 when stale), on 2025-11-25 there is none."""
    modern = mode == "auto"
    async with Reader(redis_url, clock=clock, wait_s=0) as reader, connect(redis_url, mode, clock) as client:
        use_reader(reader)
        try:
            quote_tool = json.loads(await plain.get_stock_quote("AAPL"))
            calls_tool = json.loads(await plain.get_call_options_chain("AAPL", NEAREST.isoformat()))
            status_tool = json.loads(await plain.get_market_status_and_date_time())
        finally:
            use_reader(None)
        quote, quote_read = await _read(client, AAPL)
        lower, _ = await _read(client, "marketcache://quote/aapl")  # the symbol in any case
        stale, stale_read = await _read(client, MSFT)
        chain, chain_read = await _read(client, resources.chain_uri("AAPL", NEAREST))
        status, status_read = await _read(client, resources.MARKET_STATUS)

    # The quote: the tool's answer (as_of, stale first), with fresh_until after stale.
    assert list(quote)[:4] == ["symbol", "as_of", "stale", "fresh_until"]
    assert _without(quote, "fresh_until") == quote_tool
    assert (quote["as_of"], quote["stale"], quote["fresh_until"]) == (
        "2026-11-24T14:59:40Z",
        False,
        "2026-11-24T15:00:40Z",
    )
    assert lower == quote
    assert (stale["stale"], stale["fresh_until"]) == (True, "2026-11-24T14:01:00Z")

    # The chain: both sides, the 30 strikes nearest the money, as the tools cut them.
    assert (chain["expiration"], chain["stale"], chain["fresh_until"]) == (
        "2026-11-27",
        False,
        "2026-11-24T15:00:40Z",
    )
    calls = [c for c in chain["contracts"] if c["option_type"] == "call"]
    assert [_without(c, "option_type") for c in calls] == calls_tool["calls"]
    assert len(chain["contracts"]) == 60
    assert chain["left_out"] == calls_tool["left_out"] | {"contracts": 20}

    # The market status: as of now, fresh until the phase changes (the close, 16:00 ET); the tool's
    # answer less its times of now (a reused answer would tell a time long past).
    assert (status["as_of"], status["stale"], status["fresh_until"]) == (
        "2026-11-24T15:00:00Z", False, "2026-11-24T21:00:00Z",
    )  # fmt: skip
    assert _without(status, "as_of", "stale", "fresh_until") == _without(
        status_tool, "now_utc", "now_new_york"
    )

    ttl_ms = [r.ttl_ms for r in (quote_read, stale_read, chain_read, status_read)]
    if modern:
        assert ttl_ms == [40_000, 0, 40_000, 6 * 3600 * 1000]
        assert {r.cache_scope for r in (quote_read, status_read)} == {"public"}
    else:  # not on the wire: the model's defaults
        assert ttl_ms == [0, 0, 0, 0]
        assert "ttl_ms" not in quote_read.model_fields_set


@pytest.mark.parametrize("mode", ERAS)
async def test_ttl_is_what_is_left_of_the_freshness_at_the_servers_clock(
    redis_url: str,
    stored: None,  # noqa: F811
    clock: FakeClock,
    mode: str,
) -> None:
    """31.97 s later the quote has 8.03 s left, to the millisecond; 41 s later it is stale and
    has none."""
    async with connect(redis_url, mode, clock) as client:
        clock.advance(31.97)
        later, later_read = await _read(client, AAPL)
        clock.advance(9.03)
        past, past_read = await _read(client, AAPL)
    assert (later["stale"], later_read.ttl_ms) == (False, 8_030 if mode == "auto" else 0)
    assert (past["stale"], past_read.ttl_ms) == (True, 0)


@pytest.mark.parametrize("mode", ERAS)
async def test_an_unknown_resource_or_symbol_is_an_error_naming_it(
    redis_url: str, clock: FakeClock, mode: str
) -> None:
    """A URI of no resource names itself and the forms there are; a symbol the upstream does not
    know, or that is no symbol, names the symbol and why."""
    unknown = Unknown(source="tradier", checked_at=NOW, detail="tradier does not know this symbol")
    _set(redis_url, keys.unknown("quotes", "ZZZZ"), unknown.model_dump_json())
    async with connect(redis_url, mode, clock) as client:
        for uri in ("marketcache://news/AAPL", "marketcache://chain/AAPL/12-18-2026", "marketcache://quote/"):
            with pytest.raises(MCPError, match=f"uri='{uri}' is not valid: expected marketcache://quote/"):
                await client.read_resource(uri)
        with pytest.raises(MCPError, match=r"'ZZZZ'.*tradier does not know this symbol") as not_known:
            await client.read_resource("marketcache://quote/ZZZZ")
        with pytest.raises(MCPError, match=r"'AAPL\*' is not a ticker symbol"):
            await client.read_resource("marketcache://quote/AAPL*")
        with pytest.raises(
            MCPError, match="no option chain cached for 'AAPL': no chain cached for expiration 2026-11-27"
        ):
            await client.read_resource(resources.chain_uri("AAPL", NEAREST))
        # The URI as the client sent it, not as the server read it (BRK's class share, upper-cased).
        with pytest.raises(MCPError, match="uri='marketcache://quote/brk/b' is not valid"):
            await client.read_resource("marketcache://quote/brk/b")
        with pytest.raises(MCPError, match="fetch") as queued:  # a miss, no worker: not yet cached
            await client.read_resource("marketcache://quote/IBM")
        if mode == "legacy":  # resources/subscribe: only to a resource
            for uri in ("marketcache://bogus", "marketcache://quote/NOPE!!"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    with pytest.raises(MCPError, match=f"uri='{re.escape(uri)}' is not valid"):
                        await client.subscribe_resource(uri)
    assert not_known.value.error.code == types.INVALID_PARAMS
    assert queued.value.error.code == mcp_server.NOT_CACHED_YET


@pytest.mark.parametrize("mode", ERAS)
async def test_a_refused_redis_login_is_a_setup_error_not_an_outage(
    acl_urls: dict[str, str],  # noqa: F811
    clock: FakeClock,
    mode: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong password: the tools answer that asking again will not help (the user must fix
    REDIS_URL), not "try again in a minute"; a read says the same; the log has it at ERROR."""
    wrong = acl_urls["reader"].replace(PASSWORDS["reader"], "not-the-password")
    async with connect(wrong, mode, clock) as client:
        answer = await client.call_tool("get_stock_quote", {"symbol": "AAPL"})
        with pytest.raises(MCPError) as read_error:
            await client.read_resource(AAPL)
    assert (answer.is_error, json.loads(_text(answer))) == (True, {"error": MISCONFIGURED})
    assert read_error.value.error.message == MISCONFIGURED
    assert "check REDIS_URL's user and password" in MISCONFIGURED
    refused = [r for r in caplog.records if "cache_refused" in r.getMessage()]
    assert refused
    assert {r.levelname for r in refused} == {"ERROR"}
    assert "not-the-password" not in caplog.text


# Redis out of reach.


@pytest.mark.parametrize("mode", ERAS)
async def test_redis_out_of_reach_is_an_error_answer_until_it_is_back(
    redis_server: RedisServer,
    clock: FakeClock,
    notifications: Notifications,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """No Redis at the URL: a tool answers `isError` with UNAVAILABLE, a read and the resource
    list raise it, the market status still answers (the installed calendar). Once a Redis listens
    there, the same server answers from it, and tells its subscribers (a newer value may have been
    stored meanwhile), then of each store again."""
    monkeypatch.setattr(mcp_server, "RETRY_S", 0.05)  # how soon it tries Redis again
    private = RedisServer(free_port(), binary=redis_server.binary)
    async with connect(private.url, mode, clock, message_handler=notifications.handler) as client:
        down = await client.call_tool("get_stock_quote", {"symbol": "AAPL"})
        with pytest.raises(MCPError, match=plain.UNAVAILABLE) as read_error:
            await client.read_resource(AAPL)
        # The list still has what needs no Redis: the market status (by the installed calendar).
        assert [r.uri for r in (await client.list_resources()).resources] == [resources.MARKET_STATUS]
        status, status_read = await _read(client, resources.MARKET_STATUS)
        async with subscribed(client, notifications, AAPL) as updates:
            started = time.monotonic()
            with private:
                caught_up, _ = await next_uri(updates, started)
                quote = Quote(
                    source="tradier", fetched_at=NOW, fresh_until=NOW + timedelta(seconds=30), symbol="AAPL"
                )
                store_redis = redis.asyncio.Redis.from_url(private.url)
                started = time.monotonic()
                await Store(store_redis, keep_stale_s=600, clock=clock).put_quotes([quote])
                await store_redis.aclose()
                stored_then, _ = await next_uri(updates, started)
                back = await client.call_tool("get_stock_quote", {"symbol": "AAPL"})
                read_back, _ = await _read(client, AAPL)
    assert (down.is_error, _text(down)) == (
        True,
        json.dumps({"error": plain.UNAVAILABLE}, separators=(",", ":")),
    )
    assert read_error.value.error.code == types.INTERNAL_ERROR
    assert (status["phase"], status["calendar"]) == ("regular", "installed-redis-unreadable")
    assert status_read.ttl_ms == 0  # told without the worker's calendar: not to be reused
    assert (caught_up, stored_then) == (AAPL, AAPL)
    assert (back.is_error, json.loads(_text(back))["as_of"]) == (False, "2026-11-24T15:00:00Z")
    assert read_back["fresh_until"] == "2026-11-24T15:00:30Z"


# Subscriptions.


class Notifications:
    """The URIs a client is told are updated, in order: by `notifications/resources/updated` (2025-11-25)
    or on a listen stream (2026-07-28)."""

    def __init__(self) -> None:
        self._send, self.received = anyio.create_memory_object_stream[str](100)

    async def handler(self, message: object) -> None:
        """A `message_handler` for `Client`."""
        if isinstance(message, types.ResourceUpdatedNotification):
            await self._send.send(str(message.params.uri))

    def close(self) -> None:
        self._send.close()
        self.received.close()


@pytest.fixture
def notifications() -> Iterator[Notifications]:
    told = Notifications()
    yield told
    told.close()


async def next_uri(
    source: MemoryObjectReceiveStream[str] | Subscription, started: float, within_s: float = WAIT_S
) -> tuple[str, float]:
    """The next URI updated, and the seconds from `started` (time.monotonic) to its arrival; fails
    if none comes within `within_s` of `started`."""
    with anyio.fail_after(max(0.0, started + within_s - time.monotonic())):
        if isinstance(source, Subscription):
            event = await anext(aiter(source))
            assert isinstance(event, ResourceUpdated)
            uri = event.uri
        else:
            uri = await source.receive()
    return uri, time.monotonic() - started


@asynccontextmanager
async def subscribed(client: Client, notifications: Notifications, *uris: str) -> AsyncIterator[Any]:
    """Subscribed to `uris`, in the client's era: a listen stream (2026-07-28: yielded), else
    `resources/subscribe` (its notifications reach `notifications`: yielded), unsubscribed after."""
    if client.protocol_version == "2026-07-28":
        async with client.listen(resource_subscriptions=list(uris)) as subscription:
            assert subscription.honored.resource_subscriptions == list(uris)
            yield subscription
        return
    with warnings.catch_warnings():  # the 2025-11-25 way is deprecated in the SDK, still served
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        for uri in uris:
            await client.subscribe_resource(uri)
    yield notifications.received
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        for uri in uris:
            await client.unsubscribe_resource(uri)


@pytest.fixture
async def runtime(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, secrets: Secrets
) -> AsyncIterator[Runtime]:
    """The worker's refresh path (providers, rate gates, store) on the emulator, for quotes."""
    config = make_config(["AAPL", "MSFT"], redis_url=redis_url, tradier_url=emulator.url)
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as opened:
        yield opened
    await client.aclose()


@pytest.mark.parametrize("mode", ERAS)
async def test_a_subscriber_is_told_within_a_second_of_the_worker_storing_a_newer_quote(
    redis_url: str, runtime: Runtime, clock: FakeClock, notifications: Notifications, mode: str
) -> None:
    """Subscribed to AAPL's quote: told within 1 s of a worker refresh storing a newer one, which
    a read then shows; not told of MSFT's; no longer told once unsubscribed."""
    refreshed = await runtime.refresh("quotes", ["AAPL", "MSFT"])
    assert refreshed.complete, refreshed.errors

    async def refresh(*symbols: str) -> float:
        clock.advance(60)  # the next refresh fetches a newer quote
        started = time.monotonic()
        for symbol in symbols:
            report = await runtime.refresh("quotes", [symbol])
            assert report.complete, report.errors
        return started

    async with connect(redis_url, mode, clock, message_handler=notifications.handler) as client:
        before, _ = await _read(client, AAPL)
        await until_announcements_heard(redis_url)
        async with subscribed(client, notifications, AAPL) as updates:
            # From before the refresh (its upstream call included) to the test reading the word:
            # no shorter than from the store to the word's arrival.
            uri, arrived_s = await next_uri(updates, await refresh("AAPL"), NOTIFIED_WITHIN_S)
            after, _ = await _read(client, AAPL)
            # MSFT stored, then AAPL: the first word is of AAPL, so none came of MSFT.
            heard_next, _ = await next_uri(updates, await refresh("MSFT", "AAPL"))
        async with subscribed(client, notifications, MSFT) as updates:  # AAPL's subscription ended
            # AAPL stored, then MSFT: the first word is of MSFT, so none came of AAPL.
            heard_last, _ = await next_uri(updates, await refresh("AAPL", "MSFT"))

    assert uri == AAPL
    assert arrived_s < NOTIFIED_WITHIN_S
    assert (before["as_of"], after["as_of"]) == ("2026-11-24T15:00:00Z", "2026-11-24T15:01:00Z")
    assert after["stale"] is False
    assert heard_next == AAPL
    assert heard_last == MSFT


@pytest.mark.parametrize("mode", ERAS)
async def test_a_subscription_to_a_lower_case_symbol_is_told_of_its_quote(
    redis_url: str, clock: FakeClock, notifications: Notifications, mode: str
) -> None:
    """`marketcache://quote/aapl` names AAPL's quote (as a read does): its subscriber is told when
    AAPL's is stored, by the URI it subscribed to."""
    client_redis = redis.asyncio.Redis.from_url(redis_url)
    store = Store(client_redis, keep_stale_s=600, clock=clock)
    lower = "marketcache://quote/aapl"
    async with connect(redis_url, mode, clock, message_handler=notifications.handler) as client:
        await until_announcements_heard(redis_url)
        async with subscribed(client, notifications, lower) as updates:
            started = time.monotonic()
            await store.put_quotes([Quote(source="tradier", fetched_at=NOW, fresh_until=NOW, symbol="AAPL")])
            uri, _ = await next_uri(updates, started)
    await client_redis.aclose()
    assert uri == lower


# The reader's Redis user.


@pytest.mark.parametrize("mode", ERAS)
async def test_the_server_works_as_the_readers_redis_user(
    acl_urls: dict[str, str],  # noqa: F811
    redis_url: str,
    stored: None,  # noqa: F811
    clock: FakeClock,
    notifications: Notifications,
    mode: str,
) -> None:
    """Through the reader's ACL user: the tools answer, resources are listed and read, and a
    subscriber is told of a store the worker's user makes."""
    worker_redis = redis.asyncio.Redis.from_url(acl_urls["worker"])
    store = Store(worker_redis, keep_stale_s=600, clock=clock)
    async with connect(acl_urls["reader"], mode, clock, message_handler=notifications.handler) as client:
        answer = await client.call_tool("get_stock_quote", {"symbol": "AAPL"})
        listed = [r.uri for r in (await client.list_resources()).resources]
        quote, _ = await _read(client, AAPL)
        await until_announcements_heard(redis_url)
        async with subscribed(client, notifications, AAPL) as updates:
            started = time.monotonic()
            newer = Quote(
                source="tradier", fetched_at=NOW, fresh_until=NOW + timedelta(seconds=30), symbol="AAPL"
            )
            assert await store.put_quotes([newer]) == 1
            uri, _ = await next_uri(updates, started)
        newer_read, _ = await _read(client, AAPL)
    await worker_redis.aclose()
    assert (answer.is_error, json.loads(_text(answer))["last"]) == (False, 105.2)
    assert listed == [resources.MARKET_STATUS]
    assert quote["last"] == 105.2
    assert uri == AAPL
    assert (newer_read["as_of"], "last" in newer_read) == ("2026-11-24T15:00:00Z", False)
