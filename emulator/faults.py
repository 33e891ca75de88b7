"""Faults the emulator can inject for tests: what a broken upstream, or a proxy before it, does.

A `Fault` is armed for a path (exact, or a prefix ending in `*`: `/v1/markets/*` is every Tradier
market route) and replaces the answer of the next `times` requests to it (None: until the faults
are cleared). Its `kind` says how:

- `answer`: a canned answer, `status`, `body`, `content_type` and `headers`, after `delay_ms`.
  5xx bursts (`times` in a row), truncated JSON, a proxy's HTML page with status 200 or 502, XML,
  401/403 and 429 are all canned answers. For a 429, `retry_after_s` adds `Retry-After` and
  `rate_window_s` adds Tradier's `X-Ratelimit-*` headers of a spent window that ends that long
  after the emulator's now (`X-Ratelimit-Expiry` in epoch ms).
- `reset`: the connection is reset (TCP RST) after the first `after_bytes` bytes of the real
  answer, headers included in the count only once they were sent: 0 resets before any answer, a
  few hundred cuts the body short.
- `hang`: nothing is ever sent; the request is held until the client gives up (or the faults are
  cleared, which resets it, or the emulator stops).
- `trickle`: the real answer, `chunk_bytes` bytes every `interval_ms`: a body slower than any
  sensible client timeout.

Calls that got no answer (`reset` before any byte, `hang`) are counted under status 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from aiohttp import web
from aiohttp.typedefs import Handler

FaultKind = Literal["answer", "reset", "hang", "trickle"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
NO_ANSWER = 0
"""The status under which calls that got no answer are counted."""

_POLL_S = 0.02  # how often a held request checks whether its client is gone


_NUMBER = (int, float)
_JSON_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "path": ("a string", (str,)),
    "kind": ("a string", (str,)),
    "status": ("an integer", (int,)),
    "body": ("a string", (str,)),
    "content_type": ("a string", (str,)),
    "delay_ms": ("a number", _NUMBER),
    "times": ("an integer or null", (int, type(None))),
    "headers": ("an object of strings", (dict,)),
    "retry_after_s": ("a number or null", (*_NUMBER, type(None))),
    "rate_window_s": ("a number or null", (*_NUMBER, type(None))),
    "after_bytes": ("an integer", (int,)),
    "chunk_bytes": ("an integer", (int,)),
    "interval_ms": ("a number", _NUMBER),
}
"""Each field of a fault's JSON body: what it must be (bool is not a number here)."""


@dataclass(frozen=True)
class Fault:
    """An injected failure for requests to `path`; see the module's docstring for each `kind`."""

    path: str
    kind: FaultKind = "answer"
    status: int = 500
    body: str = "Internal Server Error"
    content_type: str = "text/plain"
    delay_ms: float = 0.0
    times: int | None = 1
    headers: dict[str, str] = field(default_factory=dict)
    retry_after_s: float | None = None
    rate_window_s: float | None = None
    after_bytes: int = 0
    chunk_bytes: int = 16
    interval_ms: float = 200.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times={self.times}: expected 1 or more, or null for until cleared")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status={self.status}: expected an HTTP status (100-599)")
        if self.chunk_bytes < 1 or self.interval_ms < 0 or self.after_bytes < 0 or self.delay_ms < 0:
            raise ValueError("chunk_bytes must be 1 or more; interval_ms, after_bytes, delay_ms 0 or more")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown or "path" not in data:
            raise ValueError(f"fault needs 'path' and takes only {sorted(known)}; got {sorted(data)}")
        for name, value in data.items():
            expected, types = _JSON_TYPES[name]
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                raise ValueError(f"{name}={json.dumps(value)}: expected {expected}")
        return cls(**data)

    def matches(self, path: str) -> bool:
        """Whether a request to `path` gets this fault."""
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    def answer_headers(self, now: datetime) -> dict[str, str]:
        """`headers`, plus those `retry_after_s` and `rate_window_s` stand for, as of `now`."""
        headers = dict(self.headers)
        if self.retry_after_s is not None:
            headers["Retry-After"] = str(math.ceil(self.retry_after_s))
        if self.rate_window_s is not None:
            expiry = now + timedelta(seconds=self.rate_window_s)
            headers.update(
                {
                    "X-Ratelimit-Allowed": "120",
                    "X-Ratelimit-Used": "120",
                    "X-Ratelimit-Available": "0",
                    "X-Ratelimit-Expiry": str(int(expiry.timestamp() * 1000)),
                }
            )
        return headers


class NoAnswer(Exception):
    """The fault left the client without an answer; the request is counted under `NO_ANSWER`."""


async def serve(
    fault: Fault, request: web.Request, handler: Handler, now: datetime, armed: Callable[[], bool]
) -> web.StreamResponse:
    """Answer `request` as `fault` says, the emulator's clock reading `now`; raises `NoAnswer` for
    a connection left without one. A hang ends when `armed()` turns false (the faults were cleared)."""
    if fault.delay_ms:
        await asyncio.sleep(fault.delay_ms / 1000)
    if fault.kind == "answer":
        return web.Response(
            status=fault.status,
            body=fault.body.encode(),
            content_type=fault.content_type,
            headers=fault.answer_headers(now),
        )
    if fault.kind == "hang":
        # Polled: aiohttp tells a handler nothing when its client leaves (no handler cancellation).
        while armed() and not _client_gone(request):  # noqa: ASYNC110
            await asyncio.sleep(_POLL_S)
        _reset(request)  # cleared while the client still waits: it gets no answer either
        raise NoAnswer
    real = await handler(request)
    body = real.body if isinstance(real, web.Response) else None
    if not isinstance(body, bytes):
        raise web.HTTPInternalServerError(text=f"cannot {fault.kind} an answer that is not in memory")
    if fault.kind == "reset" and fault.after_bytes == 0:
        _reset(request)
        raise NoAnswer
    streamed = web.StreamResponse(status=real.status, headers=real.headers)
    streamed.content_length = len(body)
    await streamed.prepare(request)
    if fault.kind == "reset":
        await streamed.write(body[: fault.after_bytes])
        await asyncio.sleep(_POLL_S)  # let the bytes leave before the reset
        _reset(request)
        return streamed
    for start in range(0, len(body), fault.chunk_bytes):
        if _client_gone(request):
            break
        await streamed.write(body[start : start + fault.chunk_bytes])
        await asyncio.sleep(fault.interval_ms / 1000)
    return streamed


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _reset(request: web.Request) -> None:
    """Close the connection with a TCP RST (linger 0), as a crashed proxy does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
