"""One upstream request: breaker, rate gate, timeout, status mapping, JSON decoding; shared by providers.

Errors carry the provider, the endpoint and what went wrong; never a header, a key, or a URL
with query parameters (Polygon accepts keys in the query; we send them as headers anyway).
A JSON error body is quoted by its `error` or `message`; an HTML page (a proxy's) by its title;
any other body by its first bytes. A 404 raises `UpstreamNotFound`.

How each failure maps (and its `worker.incidents.FaultKind`, reported to the upstream's health):

| what happened | error | kind |
|---|---|---|
| 5xx (a burst, a proxy's 502 page) | `UpstreamUnavailable` "HTTP 502 ..." | server_error |
| no whole answer within `timeout_s` (a hang, a trickle) | `UpstreamUnavailable` | timeout |
| refused, reset, closed before or in the answer | `UpstreamUnavailable` "connection failed" | connection |
| a 2xx that is not JSON: truncated, HTML, XML | `UpstreamBadPayload` "answer is not JSON" | bad_payload |
| 429 after waiting for its window (1) | `UpstreamRateLimited` | rate_limited |
| 401/403 | `UpstreamAuthError` with what to check | auth |
| another 4xx | `UpstreamError` "HTTP 400 ..." | client_error |
| the breaker is open: not sent | `worker.breaker.CircuitOpen` | circuit_open |

(1) The window ends at `X-Ratelimit-Expiry` (Tradier), else `Retry-After`, else after 60 s.

`timeout_s` bounds the whole exchange, body included: a body that trickles in slower fails with
the timeout, not later. Nothing of a failed request is returned, so nothing of it is stored.

Each request carries the gate's clock at the moment it is sent in its `Date` header (RFC 9110 lets
a client send one; the real APIs ignore it): the emulator refuses a client on another clock.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from worker.breaker import CircuitOpen
from worker.errors import (
    UpstreamAuthError,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from worker.health import UpstreamHealth
from worker.incidents import FaultKind
from worker.logs import Redactor
from worker.ratelimit import RateGate, RateWindowClosed

WindowReader = Callable[[CIMultiDictProxy[str]], tuple[int | None, datetime | None]]
"""Reads (requests left, window end) from a response's headers; (None, None) if it says nothing."""

RATE_LIMIT_RETRIES = 2
_BODY_EXCERPT = 120
_MESSAGE_MAX = 240
_TAIL = 40  # bytes shown of the end of a body cut short
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# What a connection failure was, by aiohttp's exception (most specific first).
_CONNECTION_FAILURES: tuple[tuple[type[aiohttp.ClientError], str], ...] = (
    (aiohttp.ClientPayloadError, "closed in the middle of the answer"),
    (aiohttp.ServerDisconnectedError, "closed before an answer"),
    (aiohttp.ClientConnectorError, "cannot connect"),
    (aiohttp.ClientOSError, "reset"),
)


def _no_window(_: CIMultiDictProxy[str]) -> tuple[int | None, datetime | None]:
    return None, None


async def request_json(
    session: aiohttp.ClientSession,
    gate: RateGate,
    *,
    provider: str,
    method: str,
    url: str,
    endpoint: str,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    form: Mapping[str, str] | None = None,
    timeout_s: float,
    window: WindowReader = _no_window,
    auth_hint: str = "check the API key",
    secrets: Sequence[str] = (),
    health: UpstreamHealth | None = None,
) -> Any:
    """The decoded JSON body of a 2xx answer; an `UpstreamError` subclass for anything else.

    `health` (the upstream's breaker and incidents) may refuse the request before it is sent
    (`CircuitOpen`) and hears how it ended. A 429 holds the gate (and, through Redis, every worker's
    gate of this upstream) until the announced window ends
    (`X-Ratelimit-Expiry` through `window`, else `Retry-After`) and retries, at most
    `RATE_LIMIT_RETRIES` times, waiting no more than the gate's `max_wait_s` in all. `secrets`
    are cut out of any upstream text quoted in an error (a proxy may echo the auth header).
    `health` also counts each attempt sent (its status, or the fault when no answer came) and the
    request's wait at the gate (`worker.usage`, `worker.metrics`).
    """
    probe = False
    ended = False

    def fail(kind: FaultKind, error: UpstreamError) -> UpstreamError:
        nonlocal ended
        ended = True
        if health is not None:
            health.failed(kind, error, probe)
        return error

    def answered() -> None:
        nonlocal ended
        ended = True
        if health is not None:
            health.succeeded()

    started = gate.clock()
    gate_wait_s = 0.0  # at the rate gate, over every attempt
    try:
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            waited_s = (gate.clock() - started).total_seconds()
            try:
                async with gate.slot(waited_s) as slot_wait_s:
                    gate_wait_s += slot_wait_s
                    if health is not None and attempt == 0:
                        # Checked once the gate lets the request go: one that queued there while
                        # the breaker opened is not sent.
                        try:
                            probe = health.check(endpoint)
                        except CircuitOpen:
                            ended = True  # counted by `check` itself
                            raise
                    status, body, content_type, reset_at = await _exchange(
                        session, gate, method, url, headers, params, form, timeout_s, window
                    )
            except _NoAnswer as e:
                if health is not None:
                    health.sent(endpoint, e.kind)
                raise fail(e.kind, UpstreamUnavailable(provider, endpoint, e.detail)) from e.__cause__
            except RateWindowClosed as e:
                gate_wait_s += max(e.waited_s - waited_s, 0.0)
                if health is not None:
                    health.not_sent(endpoint, "rate_limited")
                raise fail("rate_limited", UpstreamRateLimited(provider, endpoint, str(e))) from e
            if health is not None:
                health.sent(endpoint, status)
            if status == 429:
                await gate.throttled(reset_at)
                continue
            body = _redact(body, secrets)
            if not 200 <= status < 300:
                kind, error = _status_error(provider, endpoint, status, body, content_type, auth_hint)
                if kind is None:
                    answered()
                    raise error
                raise fail(kind, error)
            try:
                payload = json.loads(body)
            except ValueError as e:
                detail = f"answer is not JSON: {_not_json(body, content_type, e)}"
                raise fail("bad_payload", UpstreamBadPayload(provider, endpoint, detail)) from e
            answered()
            return payload
        detail = f"429 after {RATE_LIMIT_RETRIES} waits for the rate window"
        raise fail("rate_limited", UpstreamRateLimited(provider, endpoint, detail))
    finally:
        if health is not None:
            health.waited(gate_wait_s)
            if not ended:
                health.released(probe)  # cancelled (a job timeout), or a bug: the probe's place is free


class _NoAnswer(Exception):
    """No whole answer came: `kind` and `detail` of the `UpstreamUnavailable` to raise."""

    def __init__(self, kind: FaultKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: FaultKind = kind
        self.detail = detail


async def _exchange(
    session: aiohttp.ClientSession,
    gate: RateGate,
    method: str,
    url: str,
    headers: Mapping[str, str],
    params: Mapping[str, str] | None,
    form: Mapping[str, str] | None,
    timeout_s: float,
    window: WindowReader,
) -> tuple[int, bytes, str, datetime | None]:
    """One request and its whole answer within `timeout_s`: (status, body, content type, the end of
    the rate window it announces); tells the gate what it announced."""
    began = False
    try:
        async with (
            asyncio.timeout(timeout_s),
            session.request(
                method,
                url,
                params=params,
                data=form,
                headers={**headers, "Date": format_datetime(gate.clock(), usegmt=True)},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response,
        ):
            began = True
            body = await response.read()
            left, reset_at = window(response.headers)
            if response.status == 429 and reset_at is None:
                reset_at = _retry_after(response.headers, gate.clock())
            gate.observe(left, reset_at)
            return response.status, body, response.content_type, reset_at
    except TimeoutError as e:
        if began:
            detail = f"the answer began but was not whole within {timeout_s:g} s (its body trickled in)"
        else:
            detail = f"no answer within {timeout_s:g} s"
        raise _NoAnswer("timeout", detail) from e
    except aiohttp.ClientError as e:
        what = next((text for cls, text in _CONNECTION_FAILURES if isinstance(e, cls)), "")
        raise _NoAnswer(
            "connection", f"connection failed ({what + ': ' if what else ''}{type(e).__name__})"
        ) from e


def _retry_after(headers: CIMultiDictProxy[str], now: datetime) -> datetime | None:
    """When a `Retry-After` header (seconds, or an HTTP date) says to try again; None without one."""
    raw = headers.get("Retry-After", "").strip()
    if not raw:
        return None
    if raw.isdigit():
        return now + timedelta(seconds=int(raw))
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None


def _status_error(
    provider: str, endpoint: str, status: int, body: bytes, content_type: str, auth_hint: str
) -> tuple[FaultKind | None, UpstreamError]:
    """The error of a non-2xx answer and its fault kind (None: a 404, an answer, not a fault)."""
    detail = f"HTTP {status} {_describe(body, content_type)}"
    if status in (401, 403):
        return "auth", UpstreamAuthError(provider, endpoint, f"{detail}; {auth_hint}")
    if status == 404:
        return None, UpstreamNotFound(provider, endpoint, detail, reason=upstream_message(body))
    if status >= 500:
        return "server_error", UpstreamUnavailable(provider, endpoint, detail)
    return "client_error", UpstreamError(provider, endpoint, detail)


def _describe(body: bytes, content_type: str) -> str:
    """An error body in a few words: its JSON message, an HTML page's title, else its first bytes."""
    message = upstream_message(body)
    if message is not None:
        return repr(message)
    if _is_html(body, content_type):
        return _html_page(body)
    return _excerpt(body)


def _not_json(body: bytes, content_type: str, error: ValueError) -> str:
    """What a 2xx body that does not parse is instead."""
    if not body.strip():
        return "(empty body)"
    if _is_html(body, content_type):
        return f"{_html_page(body)}, not the API's answer (a proxy or a captive portal?)"
    if body.lstrip().startswith(b"<") or "xml" in content_type:
        return f"XML (is Accept: application/json honoured?): {_excerpt(body)}"
    if isinstance(error, json.JSONDecodeError) and (
        error.msg.startswith("Unterminated") or error.pos >= len(error.doc.rstrip())
    ):
        tail = body[-_TAIL:].decode("utf-8", "replace").replace("\n", " ")
        return f"cut short after {len(body)} bytes, ending {'...' if len(body) > _TAIL else ''}{tail!r}"
    where = f" ({error.msg} at character {error.pos})" if isinstance(error, json.JSONDecodeError) else ""
    return f"{_excerpt(body)}{where}"


def _is_html(body: bytes, content_type: str) -> bool:
    start = body.lstrip()[:15].lower()
    return content_type == "text/html" or start.startswith((b"<!doctype html", b"<html"))


def _html_page(body: bytes) -> str:
    """An HTML page by its title (a proxy's "502 Bad Gateway"), else by its first bytes."""
    found = _TITLE.search(body)
    title = found.group(1).decode("utf-8", "replace").strip()[:_BODY_EXCERPT] if found else ""
    return f"an HTML page titled {title!r}" if title else f"an HTML page {_excerpt(body)}"


def upstream_message(body: object) -> str | None:
    """The message of a JSON error body (`error`, else `message`, as Polygon sends them), or None.

    Takes the raw body or its decoded JSON; the message is cut to a readable length.
    """
    if isinstance(body, bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, dict):
        return None
    message = body.get("error") or body.get("message")
    if not isinstance(message, str) or not message:
        return None
    return message if len(message) <= _MESSAGE_MAX else message[:_MESSAGE_MAX] + "..."


def _redact(body: bytes, secrets: Sequence[str]) -> bytes:
    """`body` with the keys cut out as the logs cut them: a short key only where it stands alone
    (a 401 body "Invalid Access Token k" must not turn "Token" into "To***en")."""
    return _redactor(tuple(secrets)).in_bytes(body)


@functools.lru_cache(maxsize=16)
def _redactor(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(secrets)


def _excerpt(body: bytes) -> str:
    text = body[:_BODY_EXCERPT].decode("utf-8", "replace").strip().replace("\n", " ")
    more = "..." if len(body) > _BODY_EXCERPT else ""
    return repr(text + more) if text else "(empty body)"
