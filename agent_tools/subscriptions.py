"""Who is subscribed to which MCP resource, in both ways the protocol has had: `resources/subscribe`
(protocol 2025-11-25 and before), per connection, and `subscriptions/listen` streams (2026-07-28).
`agent_tools.mcp_server` tells them of a resource's update by the URI each subscribed with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession

from agent_tools.resources import canonical_uri


@dataclass
class Subscribers:
    """Who is told of a resource's update, by its canonical URI (`agent_tools.resources.canonical_uri`).

    `sessions`: the connections subscribed by `resources/subscribe` (protocol 2025-11-25 and
    before), by the connection's id: a session of it (to send on its standalone channel) and the
    URIs it subscribed as. `listened`: the URIs the open `subscriptions/listen` streams (2026-07-28)
    name, as (canonical URI, as named), with how many streams name each. The protocol matches a
    URI exactly: a client subscribed to `marketcache://quote/aapl` is told of that URI.
    """

    sessions: dict[str, dict[int, tuple[ServerSession, frozenset[str]]]] = field(default_factory=dict)
    listened: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, uri: str, ctx: ServerRequestContext[Any]) -> None:
        canonical, connection = canonical_uri(uri), connection_of(ctx)
        by_connection = self.sessions.setdefault(canonical, {})
        if id(connection) not in by_connection:
            # A client that goes away without unsubscribing is dropped when its connection closes.
            connection.exit_stack.callback(self.drop, canonical, id(connection))
        _, named = by_connection.get(id(connection), (ctx.session, frozenset[str]()))
        by_connection[id(connection)] = (ctx.session, named | {uri})

    def remove(self, uri: str, ctx: ServerRequestContext[Any]) -> None:
        """End the connection's subscription to the resource `uri` names, in whatever spelling."""
        self.drop(canonical_uri(uri), id(connection_of(ctx)))

    def drop(self, canonical: str, connection_id: int) -> None:
        by_connection = self.sessions.get(canonical, {})
        by_connection.pop(connection_id, None)
        if not by_connection:
            self.sessions.pop(canonical, None)

    def listen(self, uris: Sequence[str]) -> list[tuple[str, str]]:
        named = [(canonical_uri(uri), uri) for uri in uris]
        self.listened.update(named)
        return named

    def unlisten(self, named: list[tuple[str, str]]) -> None:
        self.listened.subtract(named)
        for pair in named:
            if self.listened[pair] <= 0:
                del self.listened[pair]

    def subscribed(self) -> set[str]:
        """The canonical URIs someone is subscribed to, in either era."""
        return set(self.sessions) | {canonical for canonical, _ in self.listened}

    def listened_as(self, canonical: str) -> list[str]:
        """The other spellings of `canonical` that open listen streams name."""
        return sorted({uri for c, uri in self.listened if c == canonical and uri != canonical})


def connection_of(ctx: ServerRequestContext[Any]) -> Connection:
    """The connection a request came on: `ctx.session` is made anew for each request, so it cannot
    tell two requests of one client apart from two clients (mcp 2.3 has no public accessor)."""
    return ctx.session._connection
