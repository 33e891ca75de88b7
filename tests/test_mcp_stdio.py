"""`python -m reader mcp` as a process: over stdio, launched as a desktop client launches it, and
over Streamable HTTP (`--http HOST:PORT`), each answering from the cache on the test's clock."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from datetime import timedelta

import aiohttp
import pytest
import redis
from mcp import Client, StdioServerParameters

from agent_tools import TOOL_NAMES
from agent_tools.answers import iso
from devtools.redis_server import free_port
from reader import Quote, keys
from reader.__main__ import main as reader_main
from reader.clock import ShiftedClock
from tests.support import REPO, child_env


def _store_fresh_quote(redis_url: str, clock: ShiftedClock) -> Quote:
    """AAPL's quote, fetched 10 s ago by `clock`, fresh for another minute: `stale` is false only
    for a server that reads the test's clock (today's date would find it days old)."""
    now = clock()
    quote = Quote(
        symbol="AAPL",
        source="tradier",
        fetched_at=now - timedelta(seconds=10),
        fresh_until=now + timedelta(seconds=60),
        last=231.5,
        bid=231.49,
        ask=231.51,
    )
    client = redis.Redis.from_url(redis_url)
    client.set(keys.quote("AAPL"), quote.model_dump_json(exclude_none=True))
    client.close()
    return quote


def _server_env(redis_url: str, clock: ShiftedClock) -> dict[str, str]:
    """What the server process is given: Redis and the test's clock (a launched server inherits
    nothing else, as under a desktop client)."""
    return child_env(REDIS_URL=redis_url, **clock.env())


@pytest.mark.processes  # the `clock` fixture: a ShiftedClock the server process shares
async def test_stdio_server_launched_as_a_desktop_client_lists_the_tools_and_answers_from_the_cache(
    redis_url: str, clock: ShiftedClock
) -> None:
    """Launched over stdio with the 2025 handshake of desktop clients, the server lists the nine
    tools, answers a stored quote with its as_of and stale, and reads the quote's resource."""
    quote = _store_fresh_quote(redis_url, clock)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "reader", "mcp"], env=_server_env(redis_url, clock), cwd=REPO
    )
    async with Client(params, mode="legacy", cache=None) as client:
        assert client.protocol_version == "2025-11-25"
        tools = (await client.list_tools()).tools
        assert [tool.name for tool in tools] == list(TOOL_NAMES)
        assert all(tool.annotations is not None and tool.annotations.read_only_hint for tool in tools)

        called = await client.call_tool("get_stock_quote", {"symbol": "aapl"})
        assert called.is_error is False
        answer = json.loads(called.content[0].text)  # type: ignore[union-attr]
        assert answer["symbol"] == "AAPL"
        assert answer["last"] == 231.5
        assert answer["as_of"] == iso(quote.fetched_at)
        assert answer["stale"] is False

        read = await client.read_resource("marketcache://quote/AAPL")
        resource = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert (resource["symbol"], resource["last"]) == ("AAPL", 231.5)
        assert resource["as_of"] == iso(quote.fetched_at)
        assert resource["stale"] is False
        assert resource["fresh_until"] == iso(quote.fresh_until)


async def _until_listening(port: int, server: asyncio.subprocess.Process, timeout_s: float = 15) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        if server.returncode is not None:
            _, err = await server.communicate()
            raise AssertionError(f"the server exited {server.returncode}:\n{err.decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert loop.time() < deadline, f"nothing listens on 127.0.0.1:{port} after {timeout_s} s"
            await asyncio.sleep(0.05)


@pytest.mark.processes
async def test_http_server_serves_the_tools_and_the_resources_ttl_at_slash_mcp(
    redis_url: str, clock: ShiftedClock
) -> None:
    """`--http 127.0.0.1:PORT` serves Streamable HTTP at /mcp: a 2026-07-28 client lists the tools,
    calls one, reads the quote with its ttlMs (fresh_until - now), and SIGINT stops the server. A
    request naming a host other than loopback and `--allow-host`'s is refused (421: DNS rebinding)."""
    quote = _store_fresh_quote(redis_url, clock)
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reader", "mcp", "--http", f"127.0.0.1:{port}", "--allow-host", "mcp.internal",
        cwd=REPO, env=_server_env(redis_url, clock),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _until_listening(port, server)
        async with Client(f"http://127.0.0.1:{port}/mcp", cache=None) as client:
            assert client.protocol_version == "2026-07-28"
            assert [tool.name for tool in (await client.list_tools()).tools] == list(TOOL_NAMES)
            called = await client.call_tool("get_stock_quote", {"symbol": "AAPL"})
            answer = json.loads(called.content[0].text)  # type: ignore[union-attr]
            assert (answer["last"], answer["as_of"], answer["stale"]) == (231.5, iso(quote.fetched_at), False)
            read = await client.read_resource("marketcache://quote/AAPL")
            assert 0 < read.ttl_ms <= 60_000
            assert json.loads(read.contents[0].text)["fresh_until"] == iso(quote.fresh_until)  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session:
            statuses = {}
            for host in ("mcp.internal", "mcp.internal:{port}", "rebound.example:{port}"):
                headers = {"Host": host.format(port=port), "Content-Type": "application/json"}
                async with session.post(f"http://127.0.0.1:{port}/mcp", headers=headers, data="{}") as answer:
                    statuses[host] = answer.status
        assert statuses["rebound.example:{port}"] == 421
        # Named with its port, or bare (port 80, a proxy): refused for the body, not for the host.
        assert statuses["mcp.internal:{port}"] != 421
        assert statuses["mcp.internal"] != 421
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(server.communicate(), timeout=15)
    assert server.returncode == 0, err.decode()


@pytest.mark.parametrize("value", ["8000", "localhost", "127.0.0.1:http", "127.0.0.1:70000"])
def test_a_bad_http_value_exits_2_naming_it(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--http` takes HOST:PORT: anything else exits 2 before serving, the message naming the value."""
    with pytest.raises(SystemExit) as exited:
        reader_main(["mcp", "--http", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"{value!r} is not HOST:PORT" in err
    assert "127.0.0.1:8000" in err  # the fix


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--url", "notaurl", "mcp"], "'notaurl' is not a Redis URL: expected redis://"),
        (
            ["quote", "AAPL", "--url", "http://user:secret@cache:6379/0"],
            "'http://user:***@cache:6379/0' is not",
        ),
        (["mcp", "--allow-host", "mcp.internal"], "--allow-host names hosts of the HTTP server: pass --http"),
    ],
)
def test_a_bad_url_or_a_host_without_http_exits_2_before_anything_starts(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Redis URL of no Redis scheme (redacted in the message), or `--allow-host` without `--http`:
    exit 2 with one line, not a traceback from inside the server."""
    assert reader_main(argv) == 2
    err = capsys.readouterr().err
    assert said in err
    assert "secret" not in err
    assert "Traceback" not in err
