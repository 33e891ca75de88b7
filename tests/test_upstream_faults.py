"""Upstream faults (issue 11, the fault matrix's Upstream row), against a real arq worker in this
event loop, a real Redis and the emulator, all on the test's fake clock (Tuesday 2026-11-24).

For each fault the emulator can inject: the refresh fails with a clear error and stores nothing,
the good previous value stays in Redis and readable (flagged stale), the failure is counted in
Redis and logged once, and a transient fault is retried with backoff until the item is fresh
again. Then the circuit breaker, the retries of a closing refresh of daily bars, and the parts
(backoff, breaker, incident log, emulator faults) on their own.

arq defers a retry by the real clock; the tests fix the jitter (`worker.retry.jitter`) so that a
retry waits a known time (minutes), then move the fake clock on by that time and make the job due
in arq's queue at once (`_run_retry`): no test sleeps through a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio
from arq import Worker
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from arq.jobs import Job

from devtools.redis_server import free_port
from emulator.state import Fault
from reader import Quote, Reader, keys
from reader import jobs as job_contract
from reader.calendar import exchange_date
from reader.jobs import refresh_job
from tests.conftest import API_KEY, StartWorker
from tests.support import QUOTES_ONLY, FakeClock, RunningEmulator, create_job_pool, make_gate
from worker import retry as retry_module
from worker import schedule
from worker.breaker import Breaker, CircuitOpen
from worker.errors import UpstreamRateLimited, UpstreamUnavailable
from worker.incidents import IncidentLog, reported_kind, transient
from worker.providers.tradier import TradierProvider
from worker.retry import Backoff, plan_retry

QUOTES = "/v1/markets/quotes"
HISTORY = "/v1/markets/history"
SYMBOLS = ["AAPL", "MSFT"]
TIMEOUT_S = 0.5
HOURLY = {"pre": 3600, "regular": 3600, "post": 3600}  # 10:00 ET falls in the 09:30-10:30 slot
BASE_S = 100.0
JITTER = 0.5  # fixed by `fixed_jitter`: the first retry comes after 50 s, the second after 100 s
PROXY_LOGIN = (
    "<!DOCTYPE html><html><head><title>Sign in to the network</title></head>"
    "<body><form action='/login'></form></body></html>"
)
BAD_GATEWAY = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
TRADIER_XML = '<?xml version="1.0" encoding="UTF-8"?><quotes><quote><symbol>AAPL</symbol></quote></quotes>'


def _sections(emulator: RunningEmulator, **tradier: Any) -> dict[str, Any]:
    """Config sections: hourly quotes from Tradier with a short timeout, retries after minutes."""
    provider = {"base_url": emulator.url, "rate_per_min": 600, "batch_size": 100, "timeout_s": TIMEOUT_S}
    return {
        "providers": {"tradier": {**provider, **tradier}},
        "datasets": {**QUOTES_ONLY, "quotes": {"cadence_s": HOURLY}},
        "retry": {"base_s": BASE_S, "cap_s": 1000},
    }


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    """arq's connection as the scheduler uses it: enqueues refreshes, reads their results."""
    opened = await create_job_pool(redis_url)
    yield opened
    await opened.aclose()


@pytest.fixture
async def warm_emulator(emulator: RunningEmulator) -> RunningEmulator:
    """The emulator, past its first answer (a second or two, building its market), with its counts reset:
    the worker's requests then answer within `TIMEOUT_S`."""
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Accept": "application/json",
        "Date": format_datetime(emulator.state.clock(), usegmt=True),
    }
    async with aiohttp.ClientSession() as session:
        for path, params in (
            (QUOTES, {"symbols": "AAPL"}),
            (HISTORY, {"symbol": "AAPL", "interval": "daily"}),
        ):
            async with session.get(emulator.url + path, params=params, headers=headers) as response:
                assert response.status == 200, await response.text()
    emulator.state.reset()
    return emulator


@pytest.fixture
def fixed_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every retry waits `JITTER` of its backoff ceiling (instead of a random share of it)."""
    monkeypatch.setattr(retry_module, "jitter", lambda: JITTER)


@contextlib.asynccontextmanager
async def _running(start_worker: StartWorker, pool: ArqRedis, **sections: Any) -> AsyncIterator[Worker]:
    """A real arq worker on `SYMBOLS`; the deferred retries still queued at the end are dropped
    (the worker's burst would wait for them)."""
    async with start_worker(SYMBOLS, **sections) as worker:
        try:
            yield worker
        finally:
            await _drop_queued(pool)


async def _refresh(pool: ArqRedis, dataset: str, symbols: list[str], slot: str) -> dict[str, Any]:
    """Enqueue one batch as the scheduler does (its job id) and wait for its report."""
    job_id = keys.refresh_job_id(dataset, slot, schedule.batch_id(symbols))
    job = await pool.enqueue_job(refresh_job(dataset), symbols, _job_id=job_id, _queue_name=keys.QUEUE)
    assert job is not None
    result: dict[str, Any] = await job.result(timeout=20, poll_delay=0.01)
    return result


def _job(pool: ArqRedis, job_id: str) -> Job:
    return Job(job_id, pool, _queue_name=keys.QUEUE, _deserializer=job_contract.loads)


async def _deferred_s(pool: ArqRedis, job_id: str) -> float:
    """How long arq holds a queued job back: its score less its enqueue time."""
    info = await _job(pool, job_id).info()
    assert info is not None, f"{job_id} is not queued"
    assert info.score is not None
    return (info.score - int(info.enqueue_time.timestamp() * 1000)) / 1000


async def _run_retry(pool: ArqRedis, clock: FakeClock, summary: dict[str, Any]) -> dict[str, Any]:
    """Let the retry a report announced run now: the clock moves on by its delay, and arq (which
    defers by the real clock) finds it due."""
    retry = summary["retry"]
    assert await _deferred_s(pool, retry["job"]) == pytest.approx(retry["delay_s"], abs=0.002)
    clock.advance(retry["delay_s"])
    await pool.zadd(keys.QUEUE, {retry["job"]: int(time.time() * 1000)})
    result: dict[str, Any] = await _job(pool, retry["job"]).result(timeout=20, poll_delay=0.01)
    return result


async def _drop_queued(pool: ArqRedis) -> list[str]:
    """Remove the jobs still queued (deferred retries), so that the worker's burst can end."""
    ids = [member.decode() for member in await pool.zrange(keys.QUEUE, 0, -1)]
    if ids:
        await pool.zrem(keys.QUEUE, *ids)
        await pool.delete(*(job_key_prefix + job_id for job_id in ids))
    return ids


async def _settle(pool: ArqRedis, job_ids: list[str], timeout_s: float = 10) -> None:
    """Wait until these jobs (the on-demand fetches a stale read enqueued) have ended."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while any([await pool.exists(job_key_prefix + job_id) for job_id in job_ids]):
        assert loop.time() - started < timeout_s, f"{job_ids} still running after {timeout_s} s"
        await asyncio.sleep(0.02)


async def _stale_reads(redis_url: str, clock: FakeClock, pool: ArqRedis) -> dict[str, Quote]:
    """What a reader gets: every quote, each flagged stale. The refresh each stale read enqueues
    (an on-demand fetch) is waited for before the next read: one at a time, as a fetch waiting on
    the rate window moves the shared fake clock, which a concurrent request would find moved."""
    quotes = {}
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        for symbol in SYMBOLS:
            quotes[symbol] = await reader.quote(symbol)
            await _settle(pool, [keys.fetch_job_id("quotes", symbol, "")])
    return quotes


def _stored(redis_url: str) -> dict[str, bytes | None]:
    client = redis.Redis.from_url(redis_url)
    values = {symbol: client.get(keys.quote(symbol)) for symbol in SYMBOLS}
    client.close()
    return values  # type: ignore[return-value]


def _hash(redis_url: str, key: str) -> dict[str, str]:
    client = redis.Redis.from_url(redis_url)
    raw: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
    client.close()
    return {k.decode(): v.decode() for k, v in raw.items()}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNING (and worse) lines of marketcache's own loggers."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("worker", "reader"))
    ]


FAULTS = [
    pytest.param(
        Fault(QUOTES, status=503, body="busy", times=None), r"HTTP 503 'busy'", "server_error", id="5xx"
    ),
    pytest.param(
        Fault(QUOTES, kind="reset", times=None),
        r"connection failed \(reset: ClientOSError\)",
        "connection",
        id="connection-reset",
    ),
    pytest.param(
        Fault(QUOTES, kind="reset", after_bytes=60, times=None),
        r"connection failed \(closed in the middle of the answer: ClientPayloadError\)",
        "connection",
        id="reset-mid-body",
    ),
    pytest.param(
        Fault(QUOTES, kind="hang", times=None), r"no answer within 0\.5 s", "timeout", id="hang-past-timeout"
    ),
    pytest.param(
        Fault(QUOTES, kind="trickle", chunk_bytes=8, interval_ms=50, times=None),
        r"the answer began but was not whole within 0\.5 s \(its body trickled in\)",
        "timeout",
        id="trickle",
    ),
    pytest.param(
        Fault(
            QUOTES,
            status=200,
            body='{"quotes": {"quote": [{"symbol": "AAPL", "la',
            content_type="application/json",
            times=None,
        ),
        r"answer is not JSON: cut short after 44 bytes, ending \.\.\.'",
        "bad_payload",
        id="truncated-json",
    ),
    pytest.param(
        Fault(QUOTES, status=200, body=PROXY_LOGIN, content_type="text/html", times=None),
        r"answer is not JSON: an HTML page titled 'Sign in to the network', not the API's answer",
        "bad_payload",
        id="html-200",
    ),
    pytest.param(
        Fault(QUOTES, status=502, body=BAD_GATEWAY, content_type="text/html", times=None),
        r"HTTP 502 an HTML page titled '502 Bad Gateway'",
        "server_error",
        id="html-502",
    ),
    pytest.param(
        Fault(QUOTES, status=200, body=TRADIER_XML, content_type="application/xml", times=None),
        r"answer is not JSON: XML \(is Accept: application/json honoured\?\): '<\?xml",
        "bad_payload",
        id="xml",
    ),
    pytest.param(
        Fault(QUOTES, status=401, body="Invalid Access Token", content_type="plain/text", times=None),
        r"HTTP 401 'Invalid Access Token'; check TRADIER_API_KEY",
        "auth",
        id="401",
    ),
    pytest.param(
        Fault(QUOTES, status=403, body="Forbidden: market data not entitled", times=None),
        r"HTTP 403 'Forbidden: market data not entitled'; check TRADIER_API_KEY",
        "auth",
        id="403",
    ),
    pytest.param(
        Fault(QUOTES, status=429, body="slow down", retry_after_s=2, times=None),
        r"429 after 2 waits for the rate window",
        "rate_limited",
        id="429-retry-after",
    ),
    pytest.param(
        Fault(QUOTES, status=429, body="slow down", rate_window_s=20, times=None),
        r"429 after 2 waits for the rate window",
        "rate_limited",
        id="429-ratelimit-expiry",
    ),
    pytest.param(
        Fault(QUOTES, status=429, body="slow down", times=None),
        r"the tradier rate window reopens at \d\d:\d\d:\d\d UTC, past the [\d.]+ s a request may wait",
        "rate_limited",
        id="429-no-window",
    ),
]


@pytest.mark.usefixtures("fixed_jitter", "warm_emulator")
@pytest.mark.parametrize(("fault", "error", "kind"), FAULTS)
async def test_a_faulty_answer_keeps_the_good_quotes_and_a_retry_makes_them_fresh(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    pool: ArqRedis,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    error: str,
    kind: str,
) -> None:
    """The refresh fails with a clear error naming the upstream and stores nothing; the reader gets
    the previous quotes, flagged stale; the fault is counted in Redis and logged once; a transient
    one is retried after the backoff (401/403 are not: the next refresh tries again), and once the
    fault clears the quotes are fresh again and the incident ends with one line."""
    caplog.set_level(logging.INFO)
    async with _running(start_worker, pool, **_sections(emulator)):
        first = await _refresh(pool, "quotes", SYMBOLS, "slot-1")
        assert first["stored"] == 2, first
        good = _stored(redis_url)
        clock.advance(3600)  # the next slot: the stored quotes are stale now
        emulator.state.arm(fault)
        started = time.monotonic()

        failed = await _refresh(pool, "quotes", SYMBOLS, "slot-2")

        elapsed_s = time.monotonic() - started
        assert (failed["stored"], failed["failed"]) == (0, 2), failed
        assert re.search(f"^tradier {QUOTES}: {error}", failed["errors"][0]), failed["errors"]
        assert API_KEY not in json.dumps(failed)
        assert elapsed_s < 5  # a hang or a trickle is cut at the timeout (0.5 s), not waited out
        assert (
            sum(emulator.state.methods.values()) >= 2
        )  # the fault was served (a hang is counted when it ends)
        assert _stored(redis_url) == good  # byte for byte
        assert _hash(redis_url, keys.upstream_faults("tradier")) == {kind: "1"}  # saved by the job
        readable = await _stale_reads(redis_url, clock, pool)  # their refreshes fail too, storing nothing
        for symbol, quote in readable.items():
            previous = Quote.model_validate_json(good[symbol] or b"")
            assert quote.stale
            assert (quote.fetched_at, quote.last) == (previous.fetched_at, previous.last)
        assert _stored(redis_url) == good
        # The on-demand refreshes of the stale reads failed too, and saved their counts.
        assert int(_hash(redis_url, keys.upstream_faults("tradier"))[kind]) >= 1
        incident = _hash(redis_url, keys.upstream_incident("tradier"))
        assert incident["kind"] == kind, incident
        assert re.search(error, incident["error"]), incident
        assert datetime.fromisoformat(incident["started_at"]) <= clock.now
        assert _warnings(caplog) == [
            f'upstream.incident_started provider=tradier kind={kind} error="{incident["error"]}"'
        ]

        emulator.state.clear_faults()
        if kind == "auth":
            assert "retry" not in failed
            assert failed["retryable"] == 0
            assert await _drop_queued(pool) == []
            clock.advance(3600)
            recovered = await _refresh(pool, "quotes", SYMBOLS, "slot-3")
        else:
            assert (failed["retryable"], failed["retry"]["attempt"]) == (2, 1), failed
            assert failed["retry"]["delay_s"] == pytest.approx(JITTER * BASE_S)
            recovered = await _run_retry(pool, clock, failed)
        assert recovered["stored"] == 2, recovered

        async with Reader(redis_url, clock=clock, wait_s=0) as reader:
            fresh = await reader.quotes(SYMBOLS)
        for quote in fresh.values():
            assert isinstance(quote, Quote), quote
            assert not quote.stale
            assert quote.fetched_at == clock.now
    assert _hash(redis_url, keys.upstream_incident("tradier")) == {}
    # The job's fault and the two on-demand fetches' (saved by the next refresh job).
    assert _hash(redis_url, keys.upstream_faults("tradier")) == {kind: "3"}
    ended = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream.incident_ended")]
    assert len(ended) == 1, ended
    assert re.match(
        rf"upstream.incident_ended provider=tradier duration_s=[\d.]+ faults=3 kinds={kind}:3 ", ended[0]
    )
    assert len(_warnings(caplog)) == 1


@pytest.mark.usefixtures("warm_emulator")
async def test_a_5xx_burst_is_retried_with_growing_jittered_delays_until_it_passes(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    pool: ArqRedis,
) -> None:
    """Three 503s in a row: the job and two retries fail, the third retry stores; each retry was
    deferred by arq (real, short delays here) within its ceiling, base_s * 2**n capped at cap_s."""
    sections = {**_sections(emulator), "retry": {"base_s": 0.05, "cap_s": 0.15}}
    emulator.state.arm(Fault(QUOTES, status=503, body="busy", times=3))
    async with _running(start_worker, pool, **sections):
        summary = await _refresh(pool, "quotes", SYMBOLS, "slot-1")
        chain = [summary]
        while "retry" in chain[-1]:
            retry = chain[-1]["retry"]
            assert retry["attempt"] == len(chain)
            assert 0 <= retry["delay_s"] <= min(0.15, 0.05 * 2 ** (len(chain) - 1))
            result = await _job(pool, retry["job"]).result_info()
            while result is None:  # not run yet
                await asyncio.sleep(0.01)
                result = await _job(pool, retry["job"]).result_info()
            assert result.start_time - result.enqueue_time >= timedelta(seconds=retry["delay_s"] - 0.005)
            chain.append(result.result)
    assert [(s["attempt"], s["stored"]) for s in chain] == [(0, 0), (1, 0), (2, 0), (3, 2)]
    assert emulator.calls() == {"503": 3, "200": 1}
    async with Reader(redis_url, clock=clock, wait_s=0) as reader:
        quote = await reader.quote("AAPL")
    assert not quote.stale
    assert quote.fetched_at == clock.now


@pytest.mark.usefixtures("fixed_jitter", "warm_emulator")
async def test_a_retry_expires_at_the_next_refresh_and_none_is_queued_past_it(
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    pool: ArqRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Quotes every 15 s: a retry due in 1 s is queued to expire at the next refresh (arq drops it
    unstarted then); one due in 50 s is not queued at all: the next refresh supersedes it."""
    caplog.set_level(logging.INFO)
    every_15_s = {"datasets": {**QUOTES_ONLY, "quotes": {"cadence_s": {"regular": 15}}}}
    emulator.state.arm(Fault(QUOTES, status=503, times=None))
    async with _running(start_worker, pool, **{**_sections(emulator), **every_15_s, "retry": {"base_s": 2}}):
        soon = await _refresh(pool, "quotes", SYMBOLS, "slot-1")
        assert soon["retry"]["delay_s"] == pytest.approx(1.0)
        ttl_ms = await pool.pttl(job_key_prefix + soon["retry"]["job"])
        assert 14_000 < ttl_ms <= 15_000  # 10:00:00 ET now, the next refresh at 10:00:15
        await _drop_queued(pool)
    async with _running(start_worker, pool, **{**_sections(emulator), **every_15_s}):
        late = await _refresh(pool, "quotes", SYMBOLS, "slot-2")
        assert late["retryable"] == 2
        assert "retry" not in late
        assert await pool.zcard(keys.QUEUE) == 0
    assert any(r.getMessage().startswith("refresh.retry_skipped dataset=quotes") for r in caplog.records)


@pytest.mark.usefixtures("fixed_jitter", "warm_emulator")
async def test_the_breaker_opens_fails_fast_probes_once_and_closes(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    pool: ArqRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three 503s in a row open Tradier's breaker: the next refresh fails at once without a call,
    readers get the last good quotes flagged stale, retries wait for the probe; 30 s later one
    request probes (a concurrent one still fails fast), fails, and the breaker opens again; when the
    upstream is well the next probe closes it. One WARNING line for it all, one line at the end."""
    caplog.set_level(logging.INFO)
    sections = {**_sections(emulator, breaker_failures=3, breaker_open_s=30), "retry": {"base_s": 10}}
    async with _running(start_worker, pool, **sections):
        assert (await _refresh(pool, "quotes", SYMBOLS, "slot-1"))["stored"] == 2
        good = _stored(redis_url)
        clock.advance(3600)
        emulator.state.arm(Fault(QUOTES, status=503, body="busy", times=None))
        for n in range(3):
            failed = await _refresh(pool, "quotes", SYMBOLS, f"slot-2-{n}")
            assert "HTTP 503 'busy'" in failed["errors"][0]
        assert emulator.calls() == {"200": 1, "503": 3}

        fast = await _refresh(pool, "quotes", SYMBOLS, "slot-3")
        opened_at = clock.now
        assert fast["errors"] == [
            f"tradier {QUOTES}: circuit open after 3 failures in a row, not called "
            f"(next probe {opened_at + timedelta(seconds=30):%H:%M:%S} UTC)"
        ]
        assert fast["retry"]["delay_s"] == 30  # not before the probe (the backoff alone: 5 s)
        assert emulator.calls() == {"200": 1, "503": 3}  # no call
        readable = await _stale_reads(redis_url, clock, pool)  # their fetches fail fast too
        assert all(q.stale for q in readable.values())
        assert emulator.calls() == {"200": 1, "503": 3}
        assert _stored(redis_url) == good

        clock.advance(30)
        emulator.state.clear_faults()
        emulator.state.arm(Fault(QUOTES, status=503, body="busy", delay_ms=300, times=None))
        jobs = [
            await pool.enqueue_job(refresh_job("quotes"), [s], _job_id=f"probe-{s}", _queue_name=keys.QUEUE)
            for s in SYMBOLS
        ]
        probes = await asyncio.gather(*(job.result(timeout=20, poll_delay=0.01) for job in jobs if job))
        errors = sorted(p["errors"][0] for p in probes)
        assert errors[0].endswith("HTTP 503 'busy'"), errors  # the probe
        assert errors[1].endswith("not called (a probe is in flight)"), errors
        assert emulator.calls() == {"200": 1, "503": 4}

        clock.advance(30)
        emulator.state.clear_faults()
        closed = await _refresh(pool, "quotes", SYMBOLS, "slot-5")
        assert closed["stored"] == 2
        assert emulator.calls() == {"200": 2, "503": 4}
        async with Reader(redis_url, clock=clock, wait_s=0) as reader:
            fresh = await reader.quotes(SYMBOLS)
        assert all(isinstance(q, Quote) and not q.stale for q in fresh.values()), fresh

    assert _warnings(caplog) == [
        "upstream.incident_started provider=tradier kind=server_error "
        f"error=\"tradier {QUOTES}: HTTP 503 'busy'\""
    ]
    ended = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upstream.incident_ended")]
    # 4 calls answered 503; not called: slot-3, the two readers' fetches, the concurrent probe.
    assert ended == [
        "upstream.incident_ended provider=tradier duration_s=60.0 faults=8 "
        "kinds=server_error:4,circuit_open:4 first=server_error"
    ]
    assert _hash(redis_url, keys.upstream_faults("tradier")) == {"server_error": "4", "circuit_open": "4"}
    assert _hash(redis_url, keys.upstream_incident("tradier")) == {}


@pytest.mark.usefixtures("fixed_jitter", "warm_emulator")
async def test_a_failed_closing_refresh_of_daily_bars_is_retried_the_same_evening(
    redis_url: str,
    emulator: RunningEmulator,
    clock: FakeClock,
    start_worker: StartWorker,
    pool: ArqRedis,
) -> None:
    """Tuesday's closing refresh of daily bars meets a 503: Monday's bars and indicators stay
    readable (stale), and a retry 50 s later stores Tuesday's bar and its indicators, fresh until
    Wednesday's close, instead of waiting a day."""
    history = {"enabled": True, "intraday": None}
    datasets = {**QUOTES_ONLY, "history": history, "indicators": {"enabled": True}}
    sections = {**_sections(emulator, timeout_s=10), "datasets": datasets}  # 400 days of bars: no rush
    monday_close = datetime(2026, 11, 23, 21, 1, tzinfo=UTC)  # 16:01 ET: the closing refresh
    clock.now = monday_close
    async with _running(start_worker, pool, **sections):
        monday = await _refresh(pool, "history", SYMBOLS, "monday")
        assert monday["stored"] == 2, monday
        good_bars = _raw(redis_url, keys.history("AAPL", "1d"))
        good_indicators = _raw(redis_url, keys.indicators("AAPL"))

        clock.now = monday_close + timedelta(days=1)
        emulator.state.arm(Fault(HISTORY, status=503, body="busy", times=None))
        failed = await _refresh(pool, "history", SYMBOLS, "tuesday")
        assert failed["failed"] == 2
        assert failed["retry"]["delay_s"] == pytest.approx(50)
        assert await pool.pttl(job_key_prefix + failed["retry"]["job"]) > 86_000_000  # Wednesday's close
        clock.advance(10)  # past fresh_until (Tuesday's closing refresh, plus 5 s)
        async with Reader(redis_url, clock=clock, wait_s=0) as reader:
            bars = await reader.history("AAPL")
            indicators = await reader.indicators("AAPL")
        await _settle(
            pool, [keys.fetch_job_id("history", "AAPL", ""), keys.fetch_job_id("indicators", "AAPL", "")]
        )
        assert bars.stale
        assert indicators.stale
        assert exchange_date(bars.bars[-1].start) == date(2026, 11, 23)
        assert (_raw(redis_url, keys.history("AAPL", "1d")), _raw(redis_url, keys.indicators("AAPL"))) == (
            good_bars,
            good_indicators,
        )

        emulator.state.clear_faults()
        retried = await _run_retry(pool, clock, failed)
        assert retried["stored"] == 2, retried
        async with Reader(redis_url, clock=clock, wait_s=0) as reader:
            bars = await reader.history("AAPL")
            indicators = await reader.indicators("AAPL")
    assert exchange_date(bars.bars[-1].start) == date(2026, 11, 24)
    assert not bars.stale
    assert bars.fresh_until == datetime(2026, 11, 25, 21, 1, 5, tzinfo=UTC)
    assert indicators.fetched_at == clock.now
    assert not indicators.stale


def _raw(redis_url: str, key: str) -> bytes | None:
    client = redis.Redis.from_url(redis_url)
    value: bytes | None = client.get(key)  # type: ignore[assignment]
    client.close()
    return value


def test_backoff_delays_are_full_jitter_under_a_doubling_capped_ceiling() -> None:
    """Delay n is uniform in [0, min(cap, base * 2**n)]: spread out, never past the ceiling."""
    backoff = Backoff(base_s=2, cap_s=60)
    assert [backoff.ceiling_s(n) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert backoff.ceiling_s(10_000) == 60  # a huge attempt number stays finite
    draws = random.Random(11)
    delays = [backoff.delay_s(4, draws.random) for _ in range(2000)]
    assert 0 <= min(delays) < 1
    assert 31 < max(delays) <= 32
    assert 14 < sum(delays) / len(delays) < 18  # the mean of uniform(0, 32)


def test_a_retry_waits_for_the_breaker_and_none_comes_after_the_next_refresh() -> None:
    """The delay is the backoff's, or the wait for the breaker's probe if longer; a retry that
    would start at or after the next scheduled refresh is not planned."""
    now = datetime(2026, 11, 24, 15, tzinfo=UTC)
    backoff = Backoff(base_s=10, cap_s=300)

    def plan(attempts_before: int, next_in_s: float, probe_in_s: float | None = None) -> float | None:
        planned = plan_retry(
            first_job_id="mc:v1:refresh:quotes:1:abc",
            attempts_before=attempts_before,
            symbols=["AAPL"],
            now=now,
            next_refresh=now + timedelta(seconds=next_in_s),
            backoff=backoff,
            probe_at=None if probe_in_s is None else now + timedelta(seconds=probe_in_s),
            rand=lambda: 0.5,
        )
        if planned is not None:
            assert planned.job_id == f"mc:v1:refresh:quotes:1:abc:retry:{attempts_before + 1}"
            assert planned.expires_s == next_in_s
        return None if planned is None else planned.delay_s

    assert plan(0, 60) == 5
    assert plan(3, 60) == 40
    assert plan(4, 60) is None  # 80 s: the next refresh comes first
    assert plan(0, 60, probe_in_s=30) == 30
    assert plan(0, 60, probe_in_s=90) is None
    assert (
        plan_retry(
            first_job_id="x", attempts_before=0, symbols=[], now=now, next_refresh=now, backoff=backoff
        )
        is None
    )


def test_the_breaker_opens_after_failures_in_a_row_and_lets_one_probe_through(clock: FakeClock) -> None:
    """Closed: failures count, a success resets them. Open: CircuitOpen until open_s passed; then
    one probe at a time; its failure opens it again, its success closes it; a 4xx frees its place."""
    breaker = Breaker("tradier", failures=3, open_s=30, clock=clock)
    for _ in range(2):
        assert breaker.check("/q") is False
        assert breaker.failed(probe=False) is False
    breaker.succeeded()
    for n in range(3):
        breaker.check("/q")
        assert breaker.failed(probe=False) is (n == 2)
    assert breaker.state == "open"
    with pytest.raises(
        CircuitOpen, match=r"circuit open after 3 failures in a row, not called \(next probe 15:00:30"
    ):
        breaker.check("/q")
    assert breaker.failed(probe=False) is False  # a late answer to an earlier request changes nothing

    clock.advance(30)
    assert breaker.check("/q") is True  # the probe
    with pytest.raises(CircuitOpen, match=r"a probe is in flight"):
        breaker.check("/q")
    breaker.released(probe=True)  # it got a 401: the next request probes instead
    assert breaker.check("/q") is True
    assert breaker.failed(probe=True) is True
    assert breaker.state == "open"
    assert breaker.probe_at == clock.now + timedelta(seconds=30)

    clock.advance(30)
    assert breaker.check("/q") is True
    assert breaker.succeeded() is True
    assert breaker.state == "closed"
    assert breaker.check("/q") is False
    assert repr(breaker) == "<Breaker tradier closed failures=0/3 open_s=30>"


async def test_an_incident_is_logged_once_and_its_counts_saved_to_redis(
    clock: FakeClock, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Six faults of three kinds make one WARNING line and, at recovery, one line with the counts
    and the duration; a flush adds the counts to Redis and records the incident, a flush after
    recovery deletes it; a flush Redis refuses keeps its counts for the next one."""
    caplog.set_level(logging.INFO, logger="worker.incidents")
    incidents = IncidentLog("polygon", clock=clock)
    errors = [UpstreamUnavailable("polygon", "/v2/aggs", f"HTTP 50{n}") for n in range(5)]
    for n, error in enumerate(errors):
        incidents.fault("timeout" if n == 2 else "server_error", error)
        clock.advance(3)
    assert [reported_kind(e) for e in errors] == ["server_error"] * 2 + ["timeout"] + ["server_error"] * 2
    assert all(transient(e) for e in errors)
    denied = UpstreamUnavailable("polygon", "/v2/aggs", "HTTP 401")
    incidents.fault("auth", denied)
    assert not transient(denied)
    assert not transient(ValueError("a bug"))
    assert [r.getMessage() for r in caplog.records] == [
        'upstream.incident_started provider=polygon kind=server_error error="polygon /v2/aggs: HTTP 500"'
    ]

    down = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        await incidents.flush(down)
    await down.aclose()
    client = redis.asyncio.Redis.from_url(redis_url)
    await incidents.flush(client)
    assert _hash(redis_url, keys.upstream_faults("polygon")) == {
        "server_error": "4",
        "timeout": "1",
        "auth": "1",
    }
    assert _hash(redis_url, keys.upstream_incident("polygon")) == {
        "started_at": "2026-11-24T15:00:00+00:00",
        "kind": "server_error",
        "error": "polygon /v2/aggs: HTTP 500",
    }

    incidents.recovered()
    incidents.recovered()  # a second good answer says nothing more
    await incidents.flush(client)
    await client.aclose()
    assert [r.getMessage() for r in caplog.records][1:] == [
        "upstream.incident_ended provider=polygon duration_s=15.0 faults=6 "
        "kinds=server_error:4,timeout:1,auth:1 first=server_error"
    ]
    assert _hash(redis_url, keys.upstream_incident("polygon")) == {}
    assert _hash(redis_url, keys.upstream_faults("polygon")) == {
        "server_error": "4",
        "timeout": "1",
        "auth": "1",
    }


async def test_the_emulator_faults_check_their_fields_match_prefixes_and_hold_until_cleared(
    emulator: RunningEmulator,
) -> None:
    """A fault with an unknown kind or `times` 0 is refused (400); `/v1/markets/*` matches every
    Tradier market route; `times: null` answers until cleared; a hang is released by clearing it
    (a reset), counted under status 0; a 429 carries Retry-After and a spent Tradier window."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    async with aiohttp.ClientSession() as session:

        async def get(path: str, **params: str) -> aiohttp.ClientResponse:
            sent = {**headers, "Date": format_datetime(emulator.state.clock(), usegmt=True)}
            async with session.get(emulator.url + path, params=params, headers=sent) as response:
                await response.read()
                return response

        for bad in ({"path": QUOTES, "kind": "explode"}, {"path": QUOTES, "times": 0}, {"kind": "hang"}):
            async with session.post(f"{emulator.url}/_emulator/faults", json=bad) as response:
                assert response.status == 400, bad
        for bad, named in (
            ({"path": QUOTES, "status": "abc"}, 'status="abc": expected an integer'),
            ({"path": QUOTES, "times": True}, "times=true: expected an integer or null"),
            ({"path": QUOTES, "delay_ms": "5"}, 'delay_ms="5": expected a number'),
        ):
            async with session.post(f"{emulator.url}/_emulator/faults", json=bad) as response:
                assert (response.status, await response.text()) == (400, f"bad fault: {named}")
        storm = {
            "path": "/v1/markets/*",
            "status": 429,
            "times": None,
            "retry_after_s": 1.5,
            "rate_window_s": 20,
        }
        async with session.post(f"{emulator.url}/_emulator/faults", json=storm) as response:
            assert response.status == 200
        answers = [await get(QUOTES, symbols="AAPL") for _ in range(3)] + [await get(HISTORY, symbol="AAPL")]
        assert [a.status for a in answers] == [429] * 4
        expiry_ms = int((emulator.state.clock() + timedelta(seconds=20)).timestamp() * 1000)
        assert answers[0].headers["Retry-After"] == "2"
        assert (answers[0].headers["X-Ratelimit-Available"], answers[0].headers["X-Ratelimit-Expiry"]) == (
            "0",
            str(expiry_ms),
        )
        assert (await get("/v2/aggs/ticker/AAPL/range/1/day/2026-11-20/2026-11-24")).status != 429
        async with session.delete(f"{emulator.url}/_emulator/faults") as response:
            assert response.status == 200
        assert (await get(QUOTES, symbols="AAPL")).status == 200

        emulator.state.arm(Fault(QUOTES, kind="hang"))
        held = asyncio.create_task(get(QUOTES, symbols="AAPL"))
        await asyncio.sleep(0.2)
        assert not held.done()
        emulator.state.clear_faults()
        # Reset: aiohttp sends an idempotent GET again on a reset connection, and gets the answer.
        assert (await asyncio.wait_for(held, timeout=2)).status == 200
    assert emulator.calls(QUOTES) == {"429": 3, "200": 2, "0": 1}


async def test_a_retry_after_date_holds_the_gate_until_then(
    emulator: RunningEmulator, clock: FakeClock
) -> None:
    """A 429 storm with `Retry-After` as an HTTP date (and no rate window): the client waits until
    that date before each new try, then gives up with UpstreamRateLimited after two waits."""
    retry_at = format_datetime(clock.now + timedelta(seconds=12), usegmt=True)
    emulator.state.arm(Fault(QUOTES, status=429, body="later", headers={"Retry-After": retry_at}, times=3))
    gate = make_gate("tradier", clock)
    async with aiohttp.ClientSession() as session:
        provider = TradierProvider(
            session,
            base_url=emulator.url,
            api_key=API_KEY,
            gate=gate,
            batch_size=100,
            timeout_s=5,
            clock=clock,
        )
        with pytest.raises(UpstreamRateLimited, match=r"429 after 2 waits"):
            await provider.fetch_quotes(["AAPL"], freshness=lambda at: at)
    assert 12 <= clock.slept_s[0] <= 13  # until the date (plus the margin and jitter), not 60 s
    assert emulator.calls() == {"429": 3}
