"""The market status as an MCP resource: its freshness lasts until the phase changes, and its
subscribers are told when the phase changes, by the injected clock, in both protocol eras."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from agent_tools import mcp_server
from agent_tools.mcp_server import CacheServer
from agent_tools.resources import MARKET_STATUS
from tests.support import FakeClock

CHECK_S = 0.1


async def test_a_status_subscriber_is_told_when_the_session_closes(
    redis_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 15:59:59 ET the status is "regular" for 1 s more (ttlMs 1000); once the clock passes 16:00
    a subscriber of either era is told within a check, and the status reads "post" until 20:00."""
    clock.now = clock.now.replace(hour=20, minute=59, second=59)  # 15:59:59 ET on Tuesday 2026-11-24
    monkeypatch.setattr(mcp_server, "PHASE_CHECK_S", CHECK_S)
    server = CacheServer(redis_url, clock=clock, wait_s=0)
    legacy_heard: list[str] = []
    told = anyio.Event()

    async def on_message(message: object) -> None:
        uri = getattr(getattr(message, "params", None), "uri", None)
        if uri is not None:
            legacy_heard.append(str(uri))
            told.set()

    async with (
        Client(server.server, cache=None) as modern,
        Client(server.server, mode="legacy", cache=None, message_handler=on_message) as legacy,
    ):
        before = await modern.read_resource(MARKET_STATUS)
        status = json.loads(before.contents[0].text)
        assert (status["phase"], status["fresh_until"], before.ttl_ms) == (
            "regular",
            "2026-11-24T21:00:00Z",
            1000,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # the 2025-11-25 way, deprecated in 2.x
            await legacy.subscribe_resource(MARKET_STATUS)
        async with modern.listen(resource_subscriptions=[MARKET_STATUS]) as events:
            await anyio.sleep(CHECK_S * 3)  # checks at 15:59:59: nothing to tell
            assert legacy_heard == []
            clock.advance(2)
            with anyio.fail_after(1):
                event = await events.__anext__()
                await told.wait()
        assert str(event.uri) == MARKET_STATUS
        assert legacy_heard == [MARKET_STATUS]
        after = await modern.read_resource(MARKET_STATUS)
        status = json.loads(after.contents[0].text)
        assert (status["phase"], status["fresh_until"]) == ("post", "2026-11-25T01:00:00Z")
        assert after.ttl_ms == int(timedelta(hours=4, seconds=-1).total_seconds() * 1000)


async def test_a_status_read_after_hours_is_fresh_until_midnight_not_the_next_pre_market(
    redis_url: str, clock: FakeClock
) -> None:
    """At 21:00 ET the phase holds until 04:00, but today's session and weekday change at midnight:
    the status is fresh until midnight New York time, and says no time of now but `as_of`."""
    clock.now = clock.now.replace(hour=2, minute=0)  # 21:00 ET on Monday 2026-11-23
    server = CacheServer(redis_url, clock=clock, wait_s=0)
    async with Client(server.server, cache=None) as client:
        read = await client.read_resource(MARKET_STATUS)
    status = json.loads(read.contents[0].text)
    assert (status["phase"], status["weekday"], status["session"]["date"]) == (
        "closed",
        "Monday",
        "2026-11-23",
    )
    assert (status["as_of"], status["fresh_until"]) == ("2026-11-24T02:00:00Z", "2026-11-24T05:00:00Z")
    assert read.ttl_ms == 3 * 3600 * 1000
    assert not [name for name in status if name.startswith("now_")]
