"""The agent tools and the cache's items over the Model Context Protocol: `python -m reader mcp`.

`CacheServer(...).server` is an `mcp` low-level `Server` that serves:

- the nine tools of `agent_tools.catalog.SPECS`, with their names, descriptions, parameter
  schemas and answers, annotated read-only; an answer that is `{"error": ...}` is a tool error
  (`isError`), with the same text;
- the resources of `agent_tools.resources` (a quote, a chain, the market status) with their
  freshness: `as_of`, `stale` and `fresh_until` in the JSON, and `fresh_until - now` as the
  result's `ttlMs` on sessions of protocol 2026-07-28 (older ones have no such field);
- subscriptions to those resources, both ways the protocol has had: `resources/subscribe`
  (protocol 2025-11-25 and before) and `subscriptions/listen` (2026-07-28). A subscriber is told
  `notifications/resources/updated` as soon as a worker stores a newer value: the worker
  announces each write on `reader.keys.STORED`, and the server listens there.

It reads Redis through a `reader.Reader` and its own connection for the announcements, both as
the user of `url` (`REDIS_URL`): run it as the reader's Redis user, which can write no data.
Redis out of reach is a tool error (`agent_tools.answers.UNAVAILABLE`, or `MISCONFIGURED` for a
refused login) or a resource read error;
the server keeps running and listens again once Redis is back.

Needs the `mcp` extra: `pip install 'marketcache[mcp]'`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import redis.asyncio
import redis.exceptions
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from agent_tools import resources
from agent_tools.answers import redis_trouble
from agent_tools.catalog import SPECS, ToolSpec
from agent_tools.subscriptions import Subscribers
from agent_tools.tools import use_reader
from reader import __version__, keys
from reader.client import DEFAULT_TIMEOUT_S, DEFAULT_WAIT_S, Reader, redis_options
from reader.clock import Clock, utc_now
from reader.errors import NotCached, ReaderError
from reader.models import MarketStatus
from reader.redis_url import redact_url, resolve_url
from reader.telemetry import PublishedPlan

__all__ = ["CacheServer"]

log = logging.getLogger(__name__)

NAME = "marketcache"
INSTRUCTIONS = (
    "Market data (quotes, option chains, price history, technical indicators, market hours) from a "
    "cache that a worker keeps fresh. Every answer says when its data was fetched (as_of) and whether "
    "it is stale. When an answer says a fetch is queued, ask again in a few seconds."
)
NOT_CACHED_YET = -32010
"""The error code of a resource read that missed and queued a fetch: read again in a few seconds (an
implementation-defined code, -32000 to -32019 in the 2026-07-28 allocation)."""

RETRY_S = 1.0
"""How long the announcement listener waits before it connects again after losing Redis."""

PHASE_CHECK_S = 1.0
"""How often the server checks whether the market status says something new (seconds)."""

_READ_ONLY = types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def _tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        description=spec.description,
        input_schema=dict(spec.parameters),
        annotations=_READ_ONLY,
    )


async def _answer(spec: ToolSpec, arguments: Mapping[str, Any] | None, reader: Reader) -> str:
    """The answer of the tool `spec` to `arguments`, read through `reader`."""
    use_reader(reader)
    return await spec.invoke(arguments)


def _is_error(answer: str) -> bool:
    """Whether a tool's answer is its error (`{"error": ...}` as the whole answer)."""
    return answer.startswith('{"error":')


class CacheServer:
    """The MCP server over the cache (see the module's docstring).

    `url`: Redis (None: `REDIS_URL`, else redis://localhost:6379/0). `clock`, `wait_s` and
    `timeout_s` are the `Reader`'s: the clock decides `stale` and `ttlMs`; a miss waits up to
    `wait_s` seconds for the fetch it enqueues; each Redis command gets `timeout_s`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        clock: Clock = utc_now,
        wait_s: float = DEFAULT_WAIT_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = resolve_url(url)
        self._clock = clock
        self._wait_s = wait_s
        self._timeout_s = timeout_s
        self._bus = InMemorySubscriptionBus()
        self._listen_handler = ListenHandler(self._bus)
        self._subscribers = Subscribers()
        self._reader: Reader | None = None
        self._redis: redis.asyncio.Redis | None = None
        self._specs = {s.name: s for s in SPECS}
        self.server: Server[Any] = Server(
            NAME,
            version=__version__,
            instructions=INSTRUCTIONS,
            lifespan=self._lifespan,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_resource_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_subscriptions_listen=self._listen_stream,
        )

    @asynccontextmanager
    async def _lifespan(self, _server: Server[Any]) -> AsyncIterator[dict[str, Any]]:
        """The reader and the announcement listener, for as long as the server runs."""
        announcements = redis.asyncio.Redis.from_url(self.url, **redis_options(self._timeout_s))
        async with (
            Reader(self.url, clock=self._clock, wait_s=self._wait_s, timeout_s=self._timeout_s) as reader,
            anyio.create_task_group() as tasks,
        ):
            self._reader, self._redis = reader, announcements
            tasks.start_soon(self._listen, announcements)
            tasks.start_soon(self._tell_phase_changes, reader)
            try:
                yield {}
            finally:
                tasks.cancel_scope.cancel()
                self._reader = self._redis = None
        await announcements.aclose()

    def _read_through(self) -> Reader:
        if self._reader is None:  # only before the lifespan starts or after it ends
            raise MCPError(types.INTERNAL_ERROR, "the marketcache server is not running")
        return self._reader

    # Tools.

    async def _list_tools(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[_tool(s) for s in SPECS])

    async def _call_tool(
        self, _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        spec = self._specs.get(params.name)
        if spec is None:
            raise MCPError(
                types.INVALID_PARAMS, f"no tool named {params.name!r}: choose from {', '.join(self._specs)}"
            )
        # In a task of its own, so that the reader set is this call's alone: an in-process client
        # of protocol 2026-07-28 awaits the handler in the caller's task, whose tools read through
        # a reader of their own.
        answer = await asyncio.create_task(_answer(spec, params.arguments, self._read_through()))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=answer)], is_error=_is_error(answer)
        )

    # Resources.

    async def _list_resources(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """The market status, and the quote of each symbol of the watchlist the worker published."""
        listed = [
            types.Resource(
                uri=resources.MARKET_STATUS,
                name="market status",
                description="The exchange's phase now, today's session and the next open and close.",
                mime_type="application/json",
            )
        ]
        for symbol in await self._watchlist():
            listed.append(
                types.Resource(
                    uri=resources.quote_uri(symbol),
                    name=f"{symbol} quote",
                    description=f"The cached quote of {symbol}, with as_of, stale and fresh_until.",
                    mime_type="application/json",
                )
            )
        return types.ListResourcesResult(resources=listed)

    async def _watchlist(self) -> tuple[str, ...]:
        """The watchlist of the plan the worker published (none before a worker started, or while
        Redis cannot be read)."""
        if self._redis is None:
            raise MCPError(types.INTERNAL_ERROR, "the marketcache server is not running")
        try:
            raw = await self._redis.get(keys.PLAN)
        except redis.exceptions.RedisError as e:
            redis_trouble("resources/list", e)
            return ()  # the market status is still listed
        if raw is None:
            return ()
        try:
            return PublishedPlan.model_validate_json(raw).watchlist
        except ValueError:
            return ()  # a newer worker's format: no list rather than a wrong one

    async def _list_resource_templates(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    uri_template=resources.QUOTE,
                    name="quote",
                    description="The cached quote of a stock, ETF, index or OCC option symbol "
                    "(cache form: upper case, BRK.B, SPX), with as_of, stale and fresh_until.",
                    mime_type="application/json",
                ),
                types.ResourceTemplate(
                    uri_template=resources.CHAIN,
                    name="option chain",
                    description="One cached option chain (calls and puts), the 30 strikes nearest the "
                    "money, with as_of, stale and fresh_until; expiration is YYYY-MM-DD.",
                    mime_type="application/json",
                ),
            ]
        )

    async def _read_resource(
        self, _ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            answer = await resources.read(self._read_through(), uri, self._clock())
        except NotCached as e:  # a fetch is queued: read again shortly
            raise MCPError(NOT_CACHED_YET, str(e)) from e
        except ReaderError as e:  # no such resource or symbol (the 2026-07-28 code for a missing resource)
            raise MCPError(types.INVALID_PARAMS, str(e)) from e
        except redis.exceptions.RedisError as e:
            raise MCPError(types.INTERNAL_ERROR, redis_trouble(f"uri={uri}", e)) from e
        contents = types.TextResourceContents(uri=uri, mime_type="application/json", text=answer.text)
        # The market data is the same for every client: any cache may share it.
        return types.ReadResourceResult(contents=[contents], ttl_ms=answer.ttl_ms, cache_scope="public")

    # Subscriptions.

    async def _subscribe(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        if not resources.is_resource(str(params.uri)):
            raise MCPError(types.INVALID_PARAMS, str(resources.UnknownResource(str(params.uri))))
        self._subscribers.add(str(params.uri), ctx)
        return types.EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        self._subscribers.remove(str(params.uri), ctx)
        return types.EmptyResult()

    async def _listen_stream(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """A `subscriptions/listen` stream (2026-07-28), whose resource URIs are remembered while it
        is open: those in another spelling than the canonical one are told of by that spelling."""
        named = self._subscribers.listen(params.notifications.resource_subscriptions or ())
        try:
            return await self._listen_handler(ctx, params)
        finally:
            self._subscribers.unlisten(named)

    async def updated(self, uri: str) -> None:
        """Tell every subscriber of the resource `uri` (canonical: `resources.canonical_uri`), in both
        protocol eras, that it has a newer value, by the URI each subscribed to."""
        for named in (uri, *self._subscribers.listened_as(uri)):
            await self._bus.publish(ResourceUpdated(uri=named))
        for key, (session, spellings) in list(self._subscribers.sessions.get(uri, {}).items()):
            try:
                for named in sorted(spellings):
                    await session.send_resource_updated(named)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.drop(uri, key)  # that client went away

    async def _tell_phase_changes(self, reader: Reader) -> None:
        """Tell the market status's subscribers when it says something new: the phase changed (by
        the injected clock), or the calendar the worker published did. Checked every
        `PHASE_CHECK_S` (one GET of the published calendar) while someone is subscribed."""
        told: MarketStatus | None = None
        while True:
            if resources.MARKET_STATUS not in self._subscribers.subscribed():
                told = None  # no one to tell: no read
            else:
                try:
                    status = await reader.market_status()
                except redis.exceptions.RedisError:
                    pass  # the announcement listener logs Redis out of reach
                else:
                    if told is not None and _moved(told, status):
                        await self.updated(resources.MARKET_STATUS)
                    told = status
            await anyio.sleep(PHASE_CHECK_S)

    async def _listen(self, client: redis.asyncio.Redis) -> None:
        """Relay the worker's store announcements to the subscribers, for as long as the server
        runs; after losing Redis, connect again every `RETRY_S` and then tell every subscribed URI
        (a newer value may have been stored meanwhile)."""
        lost = False
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(keys.STORED)
                    if lost:
                        log.info("mcp.announcements_back url=%s", redact_url(self.url))
                        for uri in sorted(self._subscribers.subscribed()):
                            await self.updated(uri)
                        lost = False
                    while True:
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if message is not None and message["type"] == "message":
                            # A write names up to a batch of keys: only those someone listens to are told.
                            wanted = self._subscribers.subscribed()
                            for key in resources.stored_keys(message["data"]):
                                for uri in resources.uris_of(key):
                                    if uri in wanted:
                                        await self.updated(uri)
            except (redis.exceptions.RedisError, OSError) as e:
                if not lost:
                    log.warning(
                        "mcp.announcements_lost url=%s error=%s: %s",
                        redact_url(self.url),
                        type(e).__name__,
                        e,
                    )
                lost = True
                await anyio.sleep(RETRY_S)

    def __repr__(self) -> str:
        return f"<CacheServer {redact_url(self.url)} tools={len(SPECS)}>"


def _moved(before: MarketStatus, after: MarketStatus) -> bool:
    """Whether the market status says something else than before, apart from its time."""
    ignore = {"at"}
    return before.model_dump(exclude=ignore) != after.model_dump(exclude=ignore)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def host_check(allowed_hosts: Sequence[str]) -> TransportSecuritySettings | None:
    """The HTTP server's Host and Origin check (against DNS rebinding: a web page that a browser
    sends to this port must not be answered): requests must name a loopback host or one of
    `allowed_hosts`, any port. None when no host is given: the SDK's default, checking on a
    loopback bind only."""
    if not allowed_hosts:
        return None
    names = list(dict.fromkeys([*LOOPBACK_HOSTS, *allowed_hosts, *(h.lower() for h in allowed_hosts)]))
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        # With its port, or bare: a client on port 80, or behind a proxy, names no port.
        allowed_hosts=[*names, *(f"{name}:*" for name in names)],
        allowed_origins=[f"{scheme}://{name}:*" for name in names for scheme in ("http", "https")],
    )


def serve(
    server: CacheServer, http: tuple[str, int] | None = None, allowed_hosts: Sequence[str] = ()
) -> None:
    """Run `server` until stopped: over stdio (`http` None: what desktop clients launch), else as
    Streamable HTTP on `http` (host, port), path `/mcp`, answering requests that name a loopback
    host or one of `allowed_hosts` (`host_check`). Logs go to stderr; stdout is the protocol's."""
    if http is None:
        anyio.run(_serve_stdio, server)
        return
    import uvicorn

    host, port = http
    security = host_check(allowed_hosts)
    if security is None and host not in LOOPBACK_HOSTS and host != "::1":
        log.warning(
            "mcp.host_check_off host=%s: requests naming any host are answered; pass --allow-host NAME "
            "(the names clients reach this server by) to check the Host and Origin headers",
            host,
        )
    app = server.server.streamable_http_app(host=host, transport_security=security)
    shown = f"[{host}]" if ":" in host else host
    log.info("mcp.http_serving url=http://%s:%d/mcp redis=%s", shown, port, redact_url(server.url))
    uvicorn.run(app, host=host, port=port, log_level="warning")


async def _serve_stdio(server: CacheServer) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.server.run(read_stream, write_stream, server.server.create_initialization_options())
