"""Every reader call answers within its bound: a Redis that accepts connections and never answers,
or that refuses them, costs a read about `timeout_s` (plus `wait_s` on a miss), never a hang."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from agent_tools.tools import TOOLS, use_reader
from reader import Reader, SyncReader
from reader.calendar import MarketCalendar
from reader.clock import utc_now
from tests.support import child_env

TIMEOUT_S = 0.5
SLACK_S = 1.0  # scheduling, a second command after the first timed out, process start


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A TCP listener that accepts connections and never writes a byte: a stalled Redis."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
def refused_redis() -> str:
    """A port nothing listens on: a Redis that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


async def test_async_reads_against_a_silent_redis_raise_within_the_timeout(silent_redis: str) -> None:
    """quote, quotes, chain, bundle, with and without a wait: redis.TimeoutError within the bound."""
    async with Reader(silent_redis, timeout_s=TIMEOUT_S, wait_s=1.0) as reader:
        calls = {
            "quote": reader.quote("AAPL"),
            "quote fresh": reader.quote("AAPL", fresh=True, wait_s=1.0),
            "quotes": reader.quotes(["AAPL", "MSFT"]),
            "chain": reader.chain("AAPL"),
            "history": reader.history("AAPL"),
            "bundle": reader.bundle("AAPL"),
        }
        for name, call in calls.items():
            started = time.perf_counter()
            with pytest.raises(redis.TimeoutError):
                await asyncio.wait_for(call, timeout=10)
            assert time.perf_counter() - started < TIMEOUT_S + 1.0 + SLACK_S, name


def test_sync_reads_against_a_silent_redis_raise_within_the_timeout(silent_redis: str) -> None:
    """The blocking reader is bounded the same way."""
    with SyncReader(silent_redis, timeout_s=TIMEOUT_S, wait_s=1.0) as reader:
        for name, call in {
            "quote": lambda: reader.quote("AAPL"),
            "quotes": lambda: reader.quotes(["AAPL"]),
            "indicators": lambda: reader.indicators("AAPL"),
        }.items():
            started = time.perf_counter()
            with pytest.raises(redis.TimeoutError):
                call()
            assert time.perf_counter() - started < TIMEOUT_S + 1.0 + SLACK_S, name


async def test_every_tool_answers_an_error_within_the_bound(silent_redis: str) -> None:
    """Each agent tool answers `{"error": ...}` (without the URL) instead of hanging; the market status
    tool answers from the installed calendar, flagged."""
    calendar = MarketCalendar()
    calendar.status(utc_now())  # loaded before the clock starts: the bound is Redis's, not pandas's
    reader = Reader(silent_redis, timeout_s=TIMEOUT_S, wait_s=1.0, calendar=calendar)
    use_reader(reader)
    try:
        for tool in TOOLS:
            args: tuple[Any, ...] = (["AAPL"],) if tool.__name__ == "get_multiple_stock_quotes" else ("AAPL",)
            status_tool = tool.__name__ == "get_market_status_and_date_time"
            started = time.perf_counter()
            answer = json.loads(await asyncio.wait_for(tool(*(() if status_tool else args)), timeout=10))
            assert time.perf_counter() - started < TIMEOUT_S + 1.0 + SLACK_S, tool.__name__
            if status_tool:  # the installed calendar answers, flagged
                assert answer["calendar"] == "installed-redis-unreadable", answer
                continue
            assert "error" in answer, (tool.__name__, answer)
            assert "127.0.0.1" not in answer["error"], answer
    finally:
        use_reader(None)
        await reader.aclose()


@pytest.mark.parametrize("which", ["silent", "refused"])
async def test_the_cli_answers_within_its_default_bound(
    which: str, silent_redis: str, refused_redis: str
) -> None:
    """`python -m reader quote AAPL` against a silent or a stopped Redis: a one-line error, exit 1,
    within the default timeout (2 s) plus start-up, where it waited more than 15 s before."""
    url = silent_redis if which == "silent" else refused_redis
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reader",
        "quote",
        "AAPL",
        env=child_env(REDIS_URL=url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=20)
    elapsed = time.perf_counter() - started
    assert process.returncode == 1, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot read from Redis"), lines
    assert elapsed < 2.0 + 3.0, elapsed  # 2 s timeout, plus an interpreter's start


def test_a_timeout_that_is_not_a_positive_number_is_refused() -> None:
    """0, a negative number or NaN for timeout_s: a ValueError naming the value and the fix."""
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"timeout_s=.*expected a number of seconds above 0"):
            SyncReader("redis://127.0.0.1:1/0", timeout_s=bad)
