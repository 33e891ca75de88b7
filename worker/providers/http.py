"""One upstream request: rate gate, timeout, status mapping, JSON decoding; shared by providers.

Errors carry the provider, the endpoint and what went wrong; never a header, a key, or a URL
with query parameters (Polygon accepts keys in the query; we send them as headers anyway).
A JSON error body is quoted by its `error` or `message`; any other body by its first bytes.
A 404 raises `UpstreamNotFound`.

Each request carries the gate's clock at the moment it is sent in its `Date` header (RFC 9110 lets
a client send one; the real APIs ignore it): the emulator refuses a client on another clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from email.utils import format_datetime
from typing import Any, NoReturn

import aiohttp
from multidict import CIMultiDictProxy

from worker.errors import (
    UpstreamAuthError,
    UpstreamBadPayload,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from worker.logs import REDACTED
from worker.ratelimit import RateGate, RateWindowClosed

WindowReader = Callable[[CIMultiDictProxy[str]], tuple[int | None, datetime | None]]
"""Reads (requests left, window end) from a response's headers; (None, None) if it says nothing."""

RATE_LIMIT_RETRIES = 2
_BODY_EXCERPT = 120
_MESSAGE_MAX = 240


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
) -> Any:
    """The decoded JSON body of a 2xx answer; an `UpstreamError` subclass for anything else.

    A 429 holds the gate until the announced window ends and retries, at most
    `RATE_LIMIT_RETRIES` times, waiting no more than the gate's `max_wait_s` in all. `secrets`
    are cut out of any upstream text quoted in an error (a proxy may echo the auth header).
    """
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    started = gate.clock()
    for _attempt in range(RATE_LIMIT_RETRIES + 1):
        waited_s = (gate.clock() - started).total_seconds()
        try:
            async with gate.slot(waited_s):
                try:
                    sent_at = format_datetime(gate.clock(), usegmt=True)
                    async with session.request(
                        method,
                        url,
                        params=params,
                        data=form,
                        headers={**headers, "Date": sent_at},
                        timeout=timeout,
                    ) as response:
                        body = await response.read()
                        status = response.status
                        left, reset_at = window(response.headers)
                        gate.observe(left, reset_at)
                except TimeoutError as e:
                    raise UpstreamUnavailable(provider, endpoint, f"no answer within {timeout_s:g} s") from e
                except aiohttp.ClientError as e:
                    failure = f"connection failed ({type(e).__name__})"
                    raise UpstreamUnavailable(provider, endpoint, failure) from e
        except RateWindowClosed as e:
            raise UpstreamRateLimited(provider, endpoint, str(e)) from e
        if status == 429:
            gate.throttled(reset_at)
            continue
        if not 200 <= status < 300:
            _raise_for_status(provider, endpoint, status, _redact(body, secrets), auth_hint)
        try:
            return json.loads(body)
        except ValueError as e:
            excerpt = _excerpt(_redact(body, secrets))
            raise UpstreamBadPayload(provider, endpoint, f"answer is not JSON: {excerpt}") from e
    raise UpstreamRateLimited(provider, endpoint, f"429 after {RATE_LIMIT_RETRIES} waits for the rate window")


def _raise_for_status(provider: str, endpoint: str, status: int, body: bytes, auth_hint: str) -> NoReturn:
    message = upstream_message(body)
    detail = f"HTTP {status} {_excerpt(body) if message is None else repr(message)}"
    if status in (401, 403):
        raise UpstreamAuthError(provider, endpoint, f"{detail}; {auth_hint}")
    if status == 404:
        raise UpstreamNotFound(provider, endpoint, detail, reason=message)
    if status >= 500:
        raise UpstreamUnavailable(provider, endpoint, detail)
    raise UpstreamError(provider, endpoint, detail)


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
    for secret in secrets:
        if secret:
            body = body.replace(secret.encode(), REDACTED.encode())
    return body


def _excerpt(body: bytes) -> str:
    text = body[:_BODY_EXCERPT].decode("utf-8", "replace").strip().replace("\n", " ")
    more = "..." if len(body) > _BODY_EXCERPT else ""
    return repr(text + more) if text else "(empty body)"
