"""The emulator's aiohttp application: upstream routes plus `/_emulator/*` controls for tests.

Routes: Tradier (`emulator.tradier`, `emulator.tradier_markets`, `emulator.tradier_options`) and
Polygon (`emulator.polygon`, `emulator.polygon_aggs`, `emulator.polygon_options`). The middlewares
(call counts, the client's clock, latency, armed faults) apply to every one of them; unknown paths
get aiohttp's plain-text 404.

A request whose `Date` header (the worker sends its clock there) is more than
`CLIENT_CLOCK_TOLERANCE_S` away from the emulator's clock is refused with a 400 naming both: the
emulator answers for its own "now", so a client on another clock (a process that reads today
while a test's emulator reads a fixed Tuesday) would get answers about the wrong days.

Controls: `GET /_emulator/stats` (calls served, per path and status, and per path and method),
`GET /_emulator/clock` (`now`, and `offset_s`: how far its clock runs ahead of the system clock,
null for a clock no other process can share, such as a test's frozen one), `POST /_emulator/reset`,
`POST /_emulator/faults` (arm a fault: a canned answer, a reset, a hang or a trickle; see
`emulator.faults`), `DELETE /_emulator/faults` (disarm them all, and release held requests).
"""

from __future__ import annotations

import asyncio
import json
from email.utils import parsedate_to_datetime

from aiohttp import web
from aiohttp.typedefs import Handler

from emulator import faults, polygon, polygon_aggs, polygon_options, tradier, tradier_markets, tradier_options
from emulator.market import Market
from emulator.ratelimit import WindowLimiter
from emulator.state import STATE, EmulatorOptions, EmulatorState, Fault
from reader.clock import Clock, clock_offset_s, utc_now

CONTROL_PREFIX = "/_emulator/"
CLIENT_CLOCK_TOLERANCE_S = 5.0


def create_app(
    options: EmulatorOptions | None = None, *, clock: Clock = utc_now, market: Market | None = None
) -> web.Application:
    """A fresh emulator; `clock` drives the simulated market and the rate-limit windows."""
    options = options or EmulatorOptions()
    app = web.Application(middlewares=[_count_calls, _check_client_clock, _inject_faults])
    app[STATE] = EmulatorState(
        options=options,
        clock=clock,
        market=market or Market(options.seed),
        tradier_limiter=WindowLimiter(options.rate_per_min),
    )
    for module in (tradier, tradier_markets, tradier_options, polygon, polygon_aggs, polygon_options):
        module.add_routes(app)
    app.router.add_get(CONTROL_PREFIX + "stats", _stats)
    app.router.add_get(CONTROL_PREFIX + "clock", _clock)
    app.router.add_post(CONTROL_PREFIX + "reset", _reset)
    app.router.add_post(CONTROL_PREFIX + "faults", _arm_fault)
    app.router.add_delete(CONTROL_PREFIX + "faults", _clear_faults)
    return app


@web.middleware
async def _count_calls(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    state = request.app[STATE]
    state.methods[(request.path, request.method)] += 1
    try:
        response = await handler(request)
    except web.HTTPException as e:
        state.calls[(request.path, e.status)] += 1
        raise
    except faults.NoAnswer:
        state.calls[(request.path, faults.NO_ANSWER)] += 1
        # The connection is closed or abandoned by its client: what aiohttp writes here goes nowhere.
        return web.Response(status=499)
    state.calls[(request.path, response.status)] += 1
    return response


@web.middleware
async def _check_client_clock(request: web.Request, handler: Handler) -> web.StreamResponse:
    sent = request.headers.get("Date")
    if request.path.startswith(CONTROL_PREFIX) or sent is None:
        return await handler(request)
    try:
        client_now = parsedate_to_datetime(sent)
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text=f"Date header {sent!r} is not an HTTP date") from None
    now = request.app[STATE].clock()
    apart_s = (client_now - now).total_seconds()
    if abs(apart_s) > CLIENT_CLOCK_TOLERANCE_S:
        raise web.HTTPBadRequest(
            text=f"clock mismatch: the request's Date is {client_now.isoformat()}, the emulator's clock "
            f"reads {now.isoformat()} ({apart_s:+.0f} s apart); the client and the emulator must read one "
            "clock (tests: start processes with tests/support.start_process)"
        )
    return await handler(request)


@web.middleware
async def _inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(CONTROL_PREFIX):
        return await handler(request)
    state = request.app[STATE]
    if state.options.latency_ms:
        await asyncio.sleep(state.options.latency_ms / 1000)
    fault = state.take_fault(request.path)
    if fault is None:
        return await handler(request)
    generation = state.fault_generation
    return await faults.serve(fault, request, handler, state.clock(), lambda: state.armed_since(generation))


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


async def _clock(request: web.Request) -> web.Response:
    clock = request.app[STATE].clock
    return web.json_response({"now": clock().isoformat(), "offset_s": clock_offset_s(clock)})


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"ok": True})


async def _arm_fault(request: web.Request) -> web.Response:
    try:
        fault = Fault.from_json(await request.json())
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise web.HTTPBadRequest(text=f"bad fault: {e}") from e
    request.app[STATE].arm(fault)
    return web.json_response({"armed": fault.path})


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].clear_faults()
    return web.json_response({"ok": True})
