"""Test doubles and builders shared by the tests: a fake clock, an in-process emulator, configs."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import job_key_prefix
from yarl import URL

from devtools.faketime import clock_env, faketime_library
from emulator.app import create_app
from emulator.state import STATE, EmulatorOptions, EmulatorState
from reader import jobs as job_contract
from reader import keys
from reader.clock import Clock, ShiftedClock, system_now
from worker import jobs
from worker.config import Config
from worker.ratelimit import RateGate

# A regular Tuesday, 10:00 ET: the market is open.
TUESDAY_10_ET = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told to; `sleep` advances it instead of waiting."""

    def __init__(self, now: datetime = TUESDAY_10_ET) -> None:
        self.now = now
        self.slept_s: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


@dataclass
class RunningEmulator:
    """An emulator served on 127.0.0.1 by this test's event loop."""

    server: TestServer
    app: web.Application

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def state(self) -> EmulatorState:
        return self.app[STATE]

    def calls(self, path: str = "/v1/markets/quotes") -> dict[str, int]:
        """Calls served on `path`, by status code (as strings, like the stats endpoint)."""
        return dict(self.state.stats()["calls"].get(path, {}))


async def start_emulator(options: EmulatorOptions, clock: Clock) -> RunningEmulator:
    app = create_app(options, clock=clock)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return RunningEmulator(server=server, app=app)


class CommandLog:
    """Every command Redis runs while the block is active, from MONITOR, with the client that sent it."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.commands: list[tuple[str, str]] = []  # (client "host:port", command line)
        self._marker = f"end-of-command-log-{id(self)}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CommandLog:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        closer = redis.Redis.from_url(self._url)
        closer.echo(self._marker)  # MONITOR sees it after everything sent before it
        closer.close()
        self._thread.join(10)

    def _run(self) -> None:
        client = redis.Redis.from_url(self._url)
        with client.monitor() as monitor:
            self._ready.set()
            while True:
                event = monitor.next_command()
                if self._marker in event["command"]:
                    break
                self.commands.append((f"{event['client_address']}:{event['client_port']}", event["command"]))
        client.close()

    def transactions(self) -> list[list[str]]:
        """The commands inside each MULTI ... EXEC, per client, in order."""
        open_: dict[str, list[str]] = {}
        done: list[list[str]] = []
        for client, command in self.commands:
            name = command.split(" ", 1)[0].upper()
            if name == "MULTI":
                open_[client] = []
            elif name == "EXEC" and client in open_:
                done.append(open_.pop(client))
            elif client in open_:
                open_[client].append(command)
        return done

    def script_calls(self) -> list[list[str]]:
        """The commands each script call (EVAL, EVALSHA) ran; a script runs alone, so they follow it."""
        calls: list[list[str]] = []
        inside = False
        for client, command in self.commands:
            name = command.split(" ", 1)[0].upper()
            if client.startswith("lua:"):
                if inside:
                    calls[-1].append(command)
            elif name in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"):
                calls.append([])
                inside = True
            else:
                inside = False
        return calls

    def outside_transactions(self) -> list[str]:
        """Commands not sent between a MULTI and its EXEC."""
        in_multi: set[str] = set()
        outside = []
        for client, command in self.commands:
            name = command.split(" ", 1)[0].upper()
            if name == "MULTI":
                in_multi.add(client)
            elif name == "EXEC":
                in_multi.discard(client)
            elif client not in in_multi:
                outside.append(command)
        return outside


async def create_job_pool(redis_url: str) -> ArqRedis:
    """An arq connection that speaks the worker's queue and job encoding, as a tick or a reader would."""
    return await create_pool(
        RedisSettings.from_dsn(redis_url),
        default_queue_name=keys.QUEUE,
        job_serializer=job_contract.dumps,
        job_deserializer=job_contract.loads,
    )


QUOTES_ONLY: dict[str, Any] = {
    "expirations": {"enabled": False},
    "chains": {"enabled": False},
    "history": {"enabled": False},
    "indicators": {"enabled": False},
}
"""`datasets` of a config that refreshes quotes and nothing else."""


def make_config(
    symbols: list[str], *, redis_url: str, tradier_url: str, polygon_url: str | None = None, **sections: Any
) -> Config:
    """A valid config for tests, of quotes only unless `datasets=` says otherwise; Polygon at
    `polygon_url` if given; `sections` override top-level keys (e.g. providers=..., cache=...)."""
    providers = {"tradier": {"base_url": tradier_url, "rate_per_min": 600, "batch_size": 100}}
    if polygon_url is not None:
        providers["polygon"] = {"base_url": polygon_url, "rate_per_min": 600}
    data: dict[str, Any] = {
        "redis_url": redis_url,
        "watchlist": symbols,
        "providers": providers,
        "datasets": QUOTES_ONLY,
    }
    data.update(sections)
    return Config.model_validate(data)


def make_gate(
    name: str, clock: FakeClock, *, rate_per_min: int = 1000, concurrency: int = 4, max_wait_s: float = 3600
) -> RateGate:
    """A provider's rate gate on the fake clock: waits advance the clock instead of sleeping."""
    return RateGate(name, rate_per_min, concurrency, max_wait_s=max_wait_s, clock=clock, sleep=clock.sleep)


@dataclass(frozen=True)
class SentRequest:
    """One request a client session sent: method, full URL (query included) and headers."""

    method: str
    url: URL
    headers: dict[str, str]


def recording_trace(sent: list[SentRequest]) -> aiohttp.TraceConfig:
    """A trace config for `aiohttp.ClientSession(trace_configs=[...])` appending each request to `sent`."""

    async def on_start(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        sent.append(SentRequest(params.method, params.url, dict(params.headers)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace


async def run_queued_jobs(
    ctx: dict[str, Any], upstream_calls: Callable[[], int] = lambda: 0
) -> list[tuple[str, str, int]]:
    """Run the jobs a tick queued with the worker's own job functions, as an arq worker would, and
    drop them from the queue; for each, (dataset, job id, `upstream_calls()` it added). Every job
    must store everything it was asked for."""
    pool: ArqRedis = ctx["redis"]
    ran = []
    for job in await pool.queued_jobs(queue_name=keys.QUEUE):
        assert job.job_id is not None
        dataset = job.function.removeprefix("refresh_")
        before = upstream_calls()
        summary = await jobs.refresh_job_function(dataset)(ctx, *job.args)
        assert summary["failed"] == 0, summary
        ran.append((dataset, job.job_id, upstream_calls() - before))
        await pool.zrem(keys.QUEUE, job.job_id)
        await pool.delete(job_key_prefix + job.job_id)
    return ran


def command_calls(redis_url: str) -> dict[str, int]:
    """How many times Redis ran each command since its statistics were last reset."""
    client = redis.Redis.from_url(redis_url)
    stats = client.info("commandstats")
    client.close()
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def reset_command_calls(redis_url: str) -> None:
    """Start counting `command_calls` from zero."""
    client = redis.Redis.from_url(redis_url)
    client.config_resetstat()
    client.close()


REPO = Path(__file__).resolve().parent.parent


def faketime_library_or_skip() -> Path:
    """libfaketime (installed by `devtools.faketime` where it can be), else the test is skipped."""
    try:
        return faketime_library()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts: PATH, what fakes the clock of this run (libfaketime,
    under `make test-dates`, so the process reads the suite's clock), and `extra`; nothing else of
    the user's (no REDIS_URL, no API key)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **clock_env(os.environ), **extra}


CLOCK_TOLERANCE_S = 1.0
"""How far apart a process's clock and its emulator's may be: scheduling works in whole seconds."""

PRINT_NOW = "from reader.clock import utc_now; print(utc_now().isoformat())"
"""What a process started with a given environment reads as now (`python -c PRINT_NOW`)."""


class ClockMismatch(AssertionError):
    """A process would read another clock than the emulator it talks to."""


async def emulator_clock(emulator_url: str) -> tuple[datetime, float | None]:
    """The emulator's now, and its clock's offset from the system clock (None: not shareable)."""
    async with aiohttp.ClientSession() as session, session.get(f"{emulator_url}/_emulator/clock") as response:
        answer = await response.json()
    return datetime.fromisoformat(answer["now"]), answer["offset_s"]


async def process_env(emulator_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker or reader process started against the emulator at
    `emulator_url`: `child_env` with `TRADIER_BASE_URL` and the emulator's clock
    (`ShiftedClock.env`), plus `extra`.

    Checks the clock such a process really reads (a probe started with this environment prints it)
    against the emulator's, read before and after the probe. Raises `ClockMismatch` if the emulator
    runs on a clock no process can share (a frozen `FakeClock`: mark the test `processes`), or if
    the probe read another time (another machine, a libfaketime that is not an offset)."""
    before, offset_s = await emulator_clock(emulator_url)
    if offset_s is None:
        raise ClockMismatch(
            f"the emulator at {emulator_url} reads {before.isoformat()} from a clock that no process "
            "can share (a frozen FakeClock?); a process started now would read "
            f"{system_now().isoformat()}: mark the test `processes` to run the emulator on a `ShiftedClock`"
        )
    env = child_env(TRADIER_BASE_URL=emulator_url, **ShiftedClock(offset_s).env(), **extra)
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PRINT_NOW, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await probe.communicate()
    assert probe.returncode == 0, f"python -c {PRINT_NOW!r} failed in the environment {env}"
    process_now = datetime.fromisoformat(out.decode().strip())
    after, _ = await emulator_clock(emulator_url)
    tolerance = timedelta(seconds=CLOCK_TOLERANCE_S)
    if not before - tolerance <= process_now <= after + tolerance:
        raise ClockMismatch(
            f"a process given the emulator's offset ({offset_s:+.3f} s) read {process_now.isoformat()}, "
            f"while the emulator at {emulator_url} read {before.isoformat()} to {after.isoformat()}: is "
            "the emulator on another machine, or the process under another libfaketime?"
        )
    return env


class ServesAnEmulator(Protocol):
    """An emulator in this process (`RunningEmulator`) or in one of its own: where it listens."""

    @property
    def url(self) -> str: ...


async def start_process(emulator: ServesAnEmulator, *args: str, **env: str) -> asyncio.subprocess.Process:
    """`python *args` (a worker, a reader) from the repository, on the clock of `emulator`
    (`process_env`, which refuses a mismatch), stdout and stderr piped. Every process a test
    starts against an emulator starts here."""
    return await asyncio.create_subprocess_exec(
        sys.executable, *args,
        cwd=REPO, env=await process_env(emulator.url, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def start_shell(command: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """`command` through `sh`, as a user types it, in a session of its own (stopped with
    `os.killpg`), output merged and piped. `env` must come from `process_env` (whose clock check
    is the guard): the README's commands, run as written."""
    return await asyncio.create_subprocess_shell(
        command, cwd=REPO, env=env, start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def start_worker_process(
    config: Path, redis_url: str, emulator: ServesAnEmulator, api_key: str
) -> asyncio.subprocess.Process:
    """`python -m worker run --config <config>` against `redis_url` and the emulator, on its clock."""
    return await start_process(
        emulator, "-m", "worker", "run", "--config", str(config), REDIS_URL=redis_url, TRADIER_API_KEY=api_key
    )


async def stop_worker_process(process: asyncio.subprocess.Process) -> str:
    """Stop a worker with SIGINT; it must exit cleanly. Returns what it logged."""
    process.send_signal(signal.SIGINT)
    reading = asyncio.ensure_future(process.communicate())
    try:
        # Shielded: a timeout must not cancel the reading, or what it logged so far is lost.
        _, err = await asyncio.wait_for(asyncio.shield(reading), timeout=20)
    except TimeoutError:
        process.kill()  # what it logged says where it hung
        _, err = await reading
        logged = err.decode()
        raise AssertionError(f"the worker did not exit within 20 s of SIGINT; it logged:\n{logged}") from None
    assert process.returncode == 0, err.decode()
    return err.decode()


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until `condition` holds; fails saying `what` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not condition():
        assert loop.time() - started < timeout_s, f"{what} did not happen within {timeout_s} s"
        await asyncio.sleep(0.05)
    return loop.time() - started
