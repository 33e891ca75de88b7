"""The worker under faults of Redis and of its own process: it never dies of a passing fault, and
what it was doing when it died is retaken by the survivors within seconds."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
import redis
from arq.constants import in_progress_key_prefix

from devtools.redis_server import RedisServer, free_port
from emulator.state import Fault
from reader import Quote, Reader, SyncReader, keys
from reader.clock import Clock
from tests.conftest import StartWorker
from tests.support import RunningEmulator, start_worker_process, until
from worker.daemon import LEASE_S

pytestmark = pytest.mark.processes  # their emulator runs on a clock the processes share

API_KEY = "fault-test-key"
QUOTES = "/v1/markets/quotes"
EVERY_1_S = "{pre: 1, regular: 1, post: 1, closed: 1}"
EVERY_2_S = "{pre: 2, regular: 2, post: 2, closed: 2}"
EVERY_30_S = "{pre: 30, regular: 30, post: 30, closed: 30}"


def _config(tmp_path: Path, symbols: list[str], cadence: str = EVERY_2_S) -> Path:
    """A quotes-only config of `symbols`."""
    path = tmp_path / "config.yaml"
    others = ", ".join(
        f"{name}: {{enabled: false}}" for name in ("expirations", "chains", "history", "indicators")
    )
    path.write_text(
        f"watchlist: [{', '.join(symbols)}]\ndatasets: {{quotes: {{cadence_s: {cadence}}}, {others}}}\n"
    )
    return path


def _fresh_quote(redis_url: str, symbol: str, clock: Clock) -> bool:
    """Whether a fresh quote of `symbol` is stored (read as is: a reader's miss would enqueue a fetch)."""
    try:
        with redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            raw = client.get(keys.quote(symbol))
    except redis.RedisError:
        return False
    return raw is not None and Quote.model_validate_json(raw).fresh_until > clock()


def _in_progress(redis_url: str, pattern: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return list(client.scan_iter(in_progress_key_prefix + pattern))
    finally:
        client.close()


async def _quotes_body(emulator: RunningEmulator, symbols: str) -> str:
    """A real answer of the quotes endpoint, to be served again later (delayed) as a fault."""
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Accept": "application/json",
        "Date": format_datetime(emulator.state.clock(), usegmt=True),
    }
    async with (
        aiohttp.ClientSession() as session,
        session.get(emulator.url + QUOTES, params={"symbols": symbols}, headers=headers) as response,
    ):
        body = await response.text()
    assert json.loads(body)["quotes"]["quote"], body
    return body


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL a worker unless it has exited (it outlives Redis: never leave one behind)."""
    if process.returncode is None:
        process.kill()
        await process.wait()


async def _stop(process: asyncio.subprocess.Process) -> str:
    """Stop a worker with SIGINT: it exits 0 without a traceback. Returns what it logged."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    try:
        _, err_bytes = await asyncio.wait_for(process.communicate(), timeout=30)
    except TimeoutError:
        await _kill(process)
        raise
    err = err_bytes.decode()
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    return err


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test stops and starts (in memory: a restart
    loses every key, the queue included)."""
    server = RedisServer()
    yield server
    server.stop()


async def test_the_worker_survives_a_redis_restart(
    tmp_path: Path, own_redis: RedisServer, emulator: RunningEmulator, clock: Clock
) -> None:
    """Redis stopped for 4 s under `python -m worker run` and started again (empty): the process
    keeps running, says so in two lines, and every quote is fresh again within a few cadences."""
    own_redis.start()
    config = _config(tmp_path, ["AAPL", "MSFT"])
    process = await start_worker_process(config, own_redis.url, emulator, API_KEY)
    try:
        await until(lambda: _fresh_quote(own_redis.url, "MSFT", clock), 30, "the first quotes")
        own_redis.stop()
        await asyncio.sleep(4)
        assert process.returncode is None, "the worker exited while Redis was down"
        own_redis.start()
        back = await until(
            lambda: all(_fresh_quote(own_redis.url, s, clock) for s in ("AAPL", "MSFT")), 15, "fresh quotes"
        )
        assert back < 2 + 2 + 3, back  # the reconnect backoff, a cadence, the refresh
        assert process.returncode is None
    finally:
        err = await _stop(process)
    assert err.count("worker.redis_unavailable") == 1, err
    assert err.count("worker.redis_available") == 1, err


async def test_the_worker_waits_for_redis_at_start(
    tmp_path: Path, emulator: RunningEmulator, clock: Clock
) -> None:
    """Started before Redis: one line saying it waits, then it starts when Redis comes."""
    server = RedisServer(free_port())
    config = _config(tmp_path, ["AAPL"])
    process = await start_worker_process(config, server.url, emulator, API_KEY)
    try:
        await asyncio.sleep(6)  # past arq's own five tries a second apart
        assert process.returncode is None, "the worker gave up waiting for Redis"
        server.start()
        await until(lambda: _fresh_quote(server.url, "AAPL", clock), 15, "the first quote")
    finally:
        try:
            err = await _stop(process)
        finally:
            server.stop()
    assert err.count("worker.waiting_for_redis") == 1, err
    assert "worker.redis_available" in err


async def test_a_batch_of_a_killed_worker_is_retaken_within_seconds(
    tmp_path: Path,
    redis_url: str,
    emulator: RunningEmulator,
    clock: Clock,
    start_worker: StartWorker,
) -> None:
    """SIGKILL while a quotes batch waits on the upstream: no partial batch is visible, and a
    surviving worker retakes the same job once its lease lapses (seconds, not arq's 130 s)."""
    body = await _quotes_body(emulator, "AAPL,MSFT")
    emulator.state.arm(
        Fault(path=QUOTES, status=200, body=body, content_type="application/json", delay_ms=20_000)
    )
    config = _config(tmp_path, ["AAPL", "MSFT"], cadence=EVERY_30_S)
    process = await start_worker_process(config, redis_url, emulator, API_KEY)
    try:
        in_flight = "mc:v1:refresh:quotes:*"
        await until(lambda: bool(_in_progress(redis_url, in_flight)), 30, "the batch in flight")
        # Killed once its request holds the fault: else the survivor's would wait the fault out.
        await until(lambda: emulator.state.armed() == 0, 30, "the batch's request at the upstream")
        await _kill(process)
        killed_at = time.monotonic()
        client = redis.Redis.from_url(redis_url)
        assert client.get(keys.quote("AAPL")) is None  # nothing of the batch is stored
        assert client.get(keys.quote("MSFT")) is None
        client.close()
        async with start_worker(["AAPL", "MSFT"]):
            await until(
                lambda: all(_fresh_quote(redis_url, s, clock) for s in ("AAPL", "MSFT")), 20, "the retake"
            )
        assert time.monotonic() - killed_at < LEASE_S + 5
    finally:
        await _kill(process)


async def test_an_on_demand_fetch_lost_in_a_crash_is_retried_while_the_reader_waits(
    tmp_path: Path,
    redis_url: str,
    emulator: RunningEmulator,
    clock: Clock,
    start_worker: StartWorker,
) -> None:
    """A reader waits for MSFT, and for NVDA and AMD in one quotes() call (fetched in one batch: a
    job and one it claimed); the worker fetching them is killed mid-call; a survivor runs MSFT's
    job after its lease lapses, NVDA and AMD once their claims lapse, and the reader gets every
    quote within its `wait_s`."""
    config = _config(tmp_path, ["AAPL"], cadence="{pre: 60}")  # nothing scheduled in the session
    process = await start_worker_process(config, redis_url, emulator, API_KEY)
    try:
        await until(lambda: _fresh_quote(redis_url, "AAPL", clock), 30, "the start-up catch-up")
        body = await _quotes_body(emulator, "MSFT")
        hang = Fault(
            path=QUOTES, status=200, body=body, content_type="application/json", delay_ms=20_000, times=None
        )
        emulator.state.arm(hang)  # every quotes call hangs until the faults are cleared
        async with Reader(redis_url, clock=clock, wait_s=12) as reader:
            batch = asyncio.create_task(reader.quotes(["NVDA", "AMD"]))
            in_flight = "mc:v1:fetch:quotes:*"
            await until(lambda: len(_in_progress(redis_url, in_flight)) == 2, 10, "the batch in flight")
            asked = asyncio.create_task(reader.quote("MSFT"))
            await until(lambda: len(_in_progress(redis_url, in_flight)) == 3, 10, "the fetch in flight")
            await _kill(process)
            killed_at = time.monotonic()
            emulator.state.clear_faults()
            async with start_worker(["AAPL"]):
                quote = await asyncio.wait_for(asked, timeout=15)
                quotes = await asyncio.wait_for(batch, timeout=15)
        assert quote.symbol == "MSFT"
        assert {s: getattr(q, "symbol", q) for s, q in quotes.items()} == {"NVDA": "NVDA", "AMD": "AMD"}
        assert time.monotonic() - killed_at < LEASE_S + 5
    finally:
        await _kill(process)


@pytest.mark.long(seconds=13)
async def test_the_worker_rides_out_a_stalled_redis(
    tmp_path: Path, own_redis: RedisServer, emulator: RunningEmulator, clock: Clock
) -> None:
    """Redis stopped (SIGSTOP) for 8 s, past the worker's command timeout, then resumed: the worker
    says so once, does not hang, and keeps the quotes fresh after."""
    own_redis.start()
    assert own_redis.process is not None
    config = _config(tmp_path, ["AAPL"])
    process = await start_worker_process(config, own_redis.url, emulator, API_KEY)
    try:
        await until(lambda: _fresh_quote(own_redis.url, "AAPL", clock), 30, "the first quote")
        own_redis.process.send_signal(signal.SIGSTOP)
        await asyncio.sleep(8)
        own_redis.process.send_signal(signal.SIGCONT)
        assert process.returncode is None
        calls = emulator.calls().get("200", 0)
        await until(lambda: emulator.calls().get("200", 0) >= calls + 2, 20, "two refreshes after")
        assert _fresh_quote(own_redis.url, "AAPL", clock)
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
        err = await _stop(process)
    assert err.count("worker.redis_unavailable") == 1, err
    assert "worker.redis_available" in err


@pytest.mark.long(seconds=18)
async def test_at_maxmemory_the_worker_stays_up_says_so_and_reads_go_on(
    tmp_path: Path, own_redis: RedisServer, emulator: RunningEmulator, clock: Clock
) -> None:
    """`maxmemory` reached with `noeviction`: writes fail, the worker stays up and logs it once,
    readers still read the last quotes; with memory back, quotes are fresh again."""
    own_redis.start()
    config = _config(tmp_path, ["AAPL", "MSFT"])
    process = await start_worker_process(config, own_redis.url, emulator, API_KEY)
    admin = redis.Redis.from_url(own_redis.url)
    try:
        await until(
            lambda: all(_fresh_quote(own_redis.url, s, clock) for s in ("AAPL", "MSFT")),
            30,
            "the first quotes",
        )
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)  # every write that needs memory is refused
        await asyncio.sleep(12)  # past the worker's health write (every 10 s) and several cadences
        assert process.returncode is None, "the worker exited at maxmemory"
        with SyncReader(own_redis.url, clock=clock, wait_s=0) as reader:
            assert reader.quote("AAPL").symbol == "AAPL"  # stale by now, still served
        admin.config_set("maxmemory", 0)
        await until(
            lambda: all(_fresh_quote(own_redis.url, s, clock) for s in ("AAPL", "MSFT")), 15, "fresh quotes"
        )
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
        err = await _stop(process)
    assert "command not allowed when used memory > 'maxmemory'" in err, err
    assert err.count("worker.redis_unavailable") == 1, err


async def test_sigterm_abandons_a_batch_past_the_grace_cleanly(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator
) -> None:
    """SIGTERM while a batch waits on a slow upstream, with `shutdown_grace_s: 1`: the worker exits 0
    within the grace (plus shutting down), stores nothing of the batch, and leaves the job queued
    for another worker (arq re-queues a job cancelled by a shutdown)."""
    body = await _quotes_body(emulator, "AAPL")
    emulator.state.arm(
        Fault(path=QUOTES, status=200, body=body, content_type="application/json", delay_ms=20_000)
    )
    config = _config(tmp_path, ["AAPL"], cadence=EVERY_30_S)
    config.write_text(config.read_text() + "worker: {shutdown_grace_s: 1}\n")
    process = await start_worker_process(config, redis_url, emulator, API_KEY)
    in_flight = "mc:v1:refresh:quotes:*"
    await until(lambda: bool(_in_progress(redis_url, in_flight)), 30, "the batch in flight")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err_bytes = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err_bytes.decode()
    assert time.monotonic() - started < 1 + 4
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.get(keys.quote("AAPL")) is None
        queued = [job.decode() for job in client.zrange(keys.QUEUE, 0, -1)]
        assert any(job.startswith("mc:v1:refresh:quotes:") for job in queued), queued
    finally:
        client.close()


@pytest.mark.long(seconds=13)
async def test_a_deleted_truncated_or_invalid_config_keeps_the_last_good_one_running(
    tmp_path: Path, redis_url: str, emulator: RunningEmulator, clock: Clock
) -> None:
    """The config file deleted, then truncated mid-line, then emptied, then invalid: each is logged,
    the worker keeps refreshing the last good watchlist; a good file again is applied."""
    config = _config(tmp_path, ["AAPL"], cadence=EVERY_1_S)
    good = config.read_text()
    process = await start_worker_process(config, redis_url, emulator, API_KEY)
    try:
        await until(lambda: _fresh_quote(redis_url, "AAPL", clock), 30, "the first quote")
        for damage in ("delete", "truncate", "empty", "invalid"):
            if damage == "delete":
                config.unlink()
            else:
                text = {"truncate": good[: len(good) // 2], "empty": "", "invalid": "watchlist: 42\n"}[damage]
                config.write_text(text)
            before = emulator.calls().get("200", 0)
            await until(
                lambda before=before: emulator.calls().get("200", 0) >= before + 2,
                15,
                f"refreshes after {damage}",
            )
            assert process.returncode is None, damage
            assert _fresh_quote(redis_url, "AAPL", clock), damage
        config.write_text(good.replace("[AAPL]", "[AAPL, MSFT]"))
        await until(lambda: _fresh_quote(redis_url, "MSFT", clock), 15, "MSFT after the good edit")
    finally:
        err = await _stop(process)
    assert err.count("config.reload_failed") == 4, err
    assert "added=MSFT" in err


@pytest.mark.parametrize("password", ["", "wrong"], ids=["no-password", "wrong-password"])
async def test_a_redis_that_refuses_the_credentials_is_a_config_error_not_a_wait(
    tmp_path: Path, emulator: RunningEmulator, password: str
) -> None:
    """Waiting would not fix a missing or wrong password: one line naming REDIS_URL, exit 2."""
    with RedisServer() as server:
        with redis.Redis.from_url(server.url) as admin:
            admin.config_set("requirepass", "right")
        url = server.url.replace("redis://", f"redis://:{password}@") if password else server.url
        process = await start_worker_process(_config(tmp_path, ["AAPL"]), url, emulator, API_KEY)
        _, err_bytes = await asyncio.wait_for(process.communicate(), timeout=20)
    err = err_bytes.decode()
    assert process.returncode == 2, err
    assert err.count("\n") == 1, err
    assert "refused the worker" in err
    assert "check REDIS_URL" in err
    assert "wrong" not in err  # the password is not shown
