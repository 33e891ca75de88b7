"""`python -m worker status`: every live worker process has a health key of its own, listed with
what it runs now; a killed one drops out when its key expires, one that stops cleanly at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from emulator.state import Fault
from reader import Quote, keys
from reader.telemetry import RefreshRecord, WorkerHealth
from tests.support import QUOTES_ONLY, FakeClock, RunningEmulator, create_job_pool, make_config, until
from worker import jobs
from worker.__main__ import main
from worker.config import Config, Secrets
from worker.daemon import MarketWorker
from worker.health import UpstreamHealth
from worker.presence import Presence, running_job
from worker.published import refresh_record
from worker.refresh import RefreshReport
from worker.settings import worker_options
from worker.snapshot import (
    DatasetStatus,
    MarketNow,
    ProviderStatus,
    QueuePriority,
    QueueStatus,
    Snapshot,
    WorkerView,
)
from worker.status import as_text, duration, live_workers, report
from worker.survey import job_priority

QUOTES = "/v1/markets/quotes"
HEALTH_EVERY_S = 0.3
"""Short, so that a killed worker's key (TTL three intervals) expires within a second."""


def _live(redis_url: str) -> dict[str, tuple[tuple[str, int], ...]]:
    """Live worker ids -> (function, symbols) of the jobs each runs, as Redis says."""
    client = redis.Redis.from_url(redis_url)
    try:
        return {w.worker_id: tuple((j.function, j.symbols) for j in w.jobs) for w in live_workers(client)}
    finally:
        client.close()


@contextlib.asynccontextmanager
async def _workers(
    n: int,
    redis_url: str,
    emulator: RunningEmulator,
    secrets: Secrets,
    clock: FakeClock,
    *,
    config: Config | None = None,
) -> AsyncIterator[list[tuple[MarketWorker, asyncio.Task[None]]]]:
    """`n` in-process workers of one job slot each (of `config`, default `_config`), health every
    `HEALTH_EVERY_S`; on exit each is stopped as `python -m worker run` stops (its `close`)."""
    config = config or _config(redis_url, emulator)
    options = worker_options(config, secrets, clock=clock, scheduled=False)
    workers = [
        MarketWorker(
            **{
                **options,
                "handle_signals": False,
                "poll_delay": 0.01,
                "health_check_interval": HEALTH_EVERY_S,
            }
        )
        for _ in range(n)
    ]
    running = [(worker, asyncio.get_running_loop().create_task(worker.main())) for worker in workers]
    try:
        yield running
    finally:
        emulator.state.clear_faults()  # the held requests end
        for worker, task in running:
            task.cancel()
            for job in worker.tasks.values():
                job.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await worker.close()


async def test_status_lists_each_live_worker_with_its_jobs_and_drops_a_killed_one(
    redis_url: str,
    emulator: RunningEmulator,
    secrets: Secrets,
    clock: FakeClock,
    monkeypatch_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two workers, each holding a quotes batch at the upstream: the table and --json list both with
    their jobs; one killed drops out within its key's TTL; a clean stop deletes the key at once."""
    emulator.state.arm(Fault(path=QUOTES, kind="hang", times=None))
    pool = await create_job_pool(redis_url)
    async with _workers(2, redis_url, emulator, secrets, clock) as running:
        (first, first_task), (second, _) = running
        ids = {first.presence.worker_id, second.presence.worker_id}
        await until(lambda: set(_live(redis_url)) == ids, 5, "both health keys")
        # One slot each: the first batch goes to one worker, the second to the other.
        await pool.enqueue_job(
            "refresh_quotes", ["AAPL", "MSFT"], _job_id=keys.refresh_job_id("quotes", "1", "a")
        )
        await until(
            lambda: (("refresh_quotes", 2),) in _live(redis_url).values(), 5, "the first batch listed"
        )
        await pool.enqueue_job("refresh_quotes", ["SPY"], _job_id=keys.refresh_job_id("quotes", "1", "b"))
        await until(
            lambda: (("refresh_quotes", 1),) in _live(redis_url).values(), 5, "the second batch listed"
        )
        clock.advance(65)

        text, code = report(redis_url, clock=clock)
        assert code == 0
        lines = text.splitlines()
        lines = lines[lines.index("Workers") + 1 :]
        assert lines[0].split() == [
            "WORKER",
            "HOST",
            "PID",
            "UP",
            "BEAT",
            "DONE",
            "FAILED",
            "RETRIED",
            "RUNNING",
        ]
        rows = {line.split()[0]: line.split() for line in lines[1:3]}
        assert set(rows) == ids
        assert {row[3] for row in rows.values()} == {"1m05s"}  # up for, as of the clock
        assert {" ".join(row[-2:]) for row in rows.values()} == {
            "refresh_quotes:2 1m05s",
            "refresh_quotes:1 1m05s",
        }
        assert lines[3] == "2 workers running, 2 jobs"

        monkeypatch_env.setenv("REDIS_URL", redis_url)
        assert await asyncio.to_thread(main, ["status", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)["workers"]
        assert {w["worker_id"] for w in listed} == ids
        assert sorted((w["jobs"][0]["dataset"], w["jobs"][0]["symbols"]) for w in listed) == [
            ("quotes", 1),
            ("quotes", 2),
        ]
        assert all(w["jobs"][0]["job_id"].startswith("mc:v1:refresh:quotes:1:") for w in listed)

        # Killed: its loop and jobs stop where they are, nothing deletes its key.
        first_task.cancel()
        for job in first.tasks.values():
            job.cancel()
        gone_s = await until(
            lambda: set(_live(redis_url)) == {second.presence.worker_id}, 5, "the killed worker dropped"
        )
        assert gone_s < 3 * HEALTH_EVERY_S + 0.5
        await second.close()  # a clean stop: its key goes at once
        assert _live(redis_url) == {}
    await pool.aclose()

    # No worker: the rest is told all the same (what the fleet left behind), and the exit code is 1.
    assert await asyncio.to_thread(main, ["status"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "no worker is running (no worker health key in Redis)"
    assert out[0].startswith("market XNYS: ")


def test_status_without_config_or_redis_url_reads_the_local_default(
    tmp_path: Path, monkeypatch_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No config file and no REDIS_URL: status tries redis://localhost:6379/0 and says it cannot."""
    monkeypatch_env.chdir(tmp_path)
    monkeypatch_env.setattr("worker.status.DEFAULT_REDIS_URL", "redis://127.0.0.1:1/0")
    assert main(["status"]) == 1
    assert "cannot read Redis at redis://127.0.0.1:1/0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "text"), [(-3, "0s"), (9.9, "9s"), (185, "3m05s"), (7380, "2h03m"), (352800, "4d02h")]
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_each_worker_process_has_an_id_of_its_own() -> None:
    """Two workers on one host (a reused pid, two containers with pid 1) still differ by the suffix."""
    first, second = (Presence(FakeClock(), 10, host="c0ffee") for _ in range(2))
    assert first.worker_id.startswith(f"c0ffee-{os.getpid()}-")
    assert first.worker_id != second.worker_id
    assert first.key == f"mc:v1:workers:{first.worker_id}"
    assert first.ttl_s == 30


@pytest.mark.parametrize(
    ("function", "args", "dataset", "symbols"),
    [
        ("refresh_quotes", [["AAPL", "MSFT"], 0, None], "quotes", 2),
        ("refresh_chains", [["SPY"]], "chains", 1),
        ("fetch", ["history", "AAPL", "1d"], "history", 1),
        ("tick", [], None, 0),
        ("refresh_nonsense", [["AAPL"]], None, 0),
    ],
)
def test_a_running_job_says_its_dataset_and_symbols(
    function: str, args: list[Any], dataset: str | None, symbols: int
) -> None:
    job = running_job("job-1", function, args, FakeClock()())
    assert (job.function, job.dataset, job.symbols) == (function, dataset, symbols)


async def test_status_tells_the_cache_the_upstreams_the_queue_and_the_workers_from_redis_alone(
    redis_url: str,
    emulator: RunningEmulator,
    secrets: Secrets,
    clock: FakeClock,
    monkeypatch_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 14, acceptance 1: a known state (AAPL refreshed by the real job, MSFT stale, SPY
    missing, a timeout and a 429 counted today, an incident open, an on-demand fetch waiting, a
    retry deferred, two workers each holding a batch) gives the expected `status --json`
    document, with times from the injected clock; the tables tell the same facts."""
    config = _config(redis_url, emulator)
    pool = await create_job_pool(redis_url)
    ctx: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
    await jobs.startup(ctx)
    try:
        await ctx["scheduler"]._publish_schedule(clock())  # as at start: calendar and plan
        published_at = clock()
        clock.advance(20)
        summary = await jobs.refresh_job_function("quotes")({**ctx, "job_id": "manual-1"}, ["AAPL"])
        assert summary["stored"] == 1
    finally:
        await jobs.shutdown(ctx)
    refreshed_at = clock()
    admin = redis.Redis.from_url(redis_url)
    stale = Quote(
        source="tradier",
        fetched_at=clock() - timedelta(minutes=10),
        fresh_until=clock() - timedelta(minutes=9),
        symbol="MSFT",
    )
    admin.set(keys.quote("MSFT"), stale.model_dump_json())
    # The day counters the workers add to (written here per `reader.telemetry.UPSTREAM_DAY_FIELDS`).
    admin.hset(
        keys.upstream_day("tradier", date(2026, 11, 24)),
        mapping={
            "calls": 14, "status:200": 12, "status:429": 1, "fault:timeout": 1, "waits": 2,
            "wait_s": 1.25, "minute:10:00": 6, "minute:09:59": 99,
        },
    )  # fmt: skip
    admin.hset(
        keys.upstream_incident("tradier"),
        mapping={"started_at": "2026-11-24T15:00:30+00:00", "kind": "timeout", "error": "read timed out"},
    )

    emulator.state.arm(Fault(path=QUOTES, kind="hang", times=None))
    async with _workers(2, redis_url, emulator, secrets, clock, config=config) as running:
        (first, _), (second, _) = running
        ids = {first.presence.worker_id, second.presence.worker_id}
        await until(lambda: set(_live(redis_url)) == ids, 5, "both health keys")
        for batch, symbols in (("a", ["AAPL", "MSFT"]), ("b", ["SPY"])):
            await pool.enqueue_job(
                "refresh_quotes", symbols, _job_id=keys.refresh_job_id("quotes", "1", batch)
            )
            job = ("refresh_quotes", len(symbols))
            await until(lambda j=job: any(j in held for held in _live(redis_url).values()), 5, "batch")
        fetch_id = keys.fetch_job_id("history", "AAPL", "1d")
        retry_id = keys.refresh_retry_job_id(keys.refresh_job_id("quotes", "0", "c"), 1)
        await pool.enqueue_job("fetch", "history", "AAPL", "1d", _job_id=fetch_id)
        await pool.enqueue_job("refresh_quotes", ["QQQ"], 1, _job_id=retry_id)
        # When each was due, by the clock of this test (arq scores them by the system's).
        admin.zadd(keys.QUEUE, {fetch_id: _ms(clock() - timedelta(seconds=20))}, xx=True)
        admin.zadd(keys.QUEUE, {retry_id: _ms(clock() + timedelta(seconds=90))}, xx=True)
        clock.advance(45)  # 10:01:05 ET: the last complete minute is 10:00
        await until(
            lambda: all(w.beat_at == clock() for w in _healths(redis_url)), 5, "a beat at the new time"
        )

        monkeypatch_env.setenv("REDIS_URL", redis_url)
        assert await asyncio.to_thread(main, ["status", "--json"]) == 0  # the command, on today's clock
        assert set(json.loads(capsys.readouterr().out)) == {
            "at", "market", "plan_published_at", "datasets", "providers", "queue", "workers"
        }  # fmt: skip
        printed, code = report(redis_url, as_json_=True, clock=clock)  # what it prints, on the test's
        document = json.loads(printed)
        text, _ = report(redis_url, clock=clock)
        healths = {w.worker_id: w for w in _healths(redis_url)}
    await pool.aclose()
    admin.close()

    now = clock()
    assert code == 0
    assert document == {
        "at": _iso(now),
        "market": {
            "exchange": "XNYS",
            "calendar": "worker",
            "phase": "regular",
            "next_phase": "post",
            "next_change_at": "2026-11-24T21:00:00Z",
            "extra_closed": ["2026-11-27"],
        },
        "plan_published_at": _iso(published_at),
        "datasets": {
            "quotes": {
                "provider": "tradier",
                "rank": 1,
                "items": 3,
                "fresh": 1,
                "stale": 1,
                "missing": 1,
                "oldest_age_s": 645.0,  # MSFT, fetched 10 minutes before the AAPL refresh
                "configured_cadence_s": 300.0,
                "held_cadence_s": 300.0,
                "last_refresh": {
                    "dataset": "quotes",
                    "job_id": "manual-1",
                    "started_at": _iso(refreshed_at),
                    "finished_at": _iso(refreshed_at),
                    "duration_s": 0.0,
                    "symbols": 1,
                    "stored": 1,
                    "failed": 0,
                    "outcome": "ok",
                },
                "last_refresh_age_s": 45.0,
            }
        },
        "providers": {
            "tradier": {
                "rate_per_min": 600,
                "calls": 14,
                "statuses": {"200": 12, "429": 1},
                "errors": {"timeout": 1},
                "throttled": 1,
                "calls_last_minute": 6,
                "last_minute": "10:00",
                "allowance_used": 0.01,
                "circuit": "closed",
                "waits": 2,
                "wait_s": 1.25,
                "incident": {
                    "started_at": "2026-11-24T15:00:30Z",
                    "kind": "timeout",
                    "error": "read timed out",
                },
            }
        },
        "queue": {
            "waiting": 1,
            "running": 2,
            "deferred": 1,
            "on_demand_waiting": 1,
            "oldest_age_s": 65.0,
            "by_priority": [
                {"rank": 0, "name": "on-demand", "waiting": 1, "running": 0, "deferred": 0},
                {"rank": 1, "name": "quotes", "waiting": 0, "running": 2, "deferred": 1},
            ],
        },
        "workers": [
            {**healths[worker_id].model_dump(mode="json"), "up_s": 45.0, "beat_age_s": 0.0}
            for worker_id in sorted(ids, key=lambda i: (healths[i].host, healths[i].pid, i))
        ],
    }
    assert {w["circuits"]["tradier"] for w in document["workers"]} == {"closed"}
    assert sorted(j["symbols"] for w in document["workers"] for j in w["jobs"]) == [1, 2]

    lines = text.splitlines()
    assert lines[0] == (
        "market XNYS: regular until Tue 2026-11-24 16:00 EST (in 5h58m), then post; "
        "the worker's calendar, extra closures 2026-11-27"
    )
    assert _row(lines, "quotes") == [
        "quotes", "tradier", "1", "1", "1", "10m45s", "300s", "ok", "45s", "ago", "0.0s"
    ]  # fmt: skip
    assert _row(lines, "tradier") == [
        "tradier", "14", "timeout", "1", "1", "6/600", "at", "10:00", "(1%)", "closed", "2", "waits,",
        "1.2s", "in", "all"
    ]  # fmt: skip
    assert "incident at tradier for 35s: timeout: read timed out" in lines
    assert "Queue: 1 waiting (1 on-demand), oldest waiting 1m05s, 2 running, 1 deferred" in lines
    assert _row(lines, "on-demand") == ["on-demand", "0", "1", "0", "0"]
    assert _row(lines, "quotes", after="PRIORITY") == ["quotes", "1", "0", "2", "1"]
    for worker_id in ids:
        assert _row(lines, worker_id)[3:5] == ["45s", "0s"]
    assert lines[-1] == "2 workers running, 2 jobs"


def _config(redis_url: str, emulator: RunningEmulator) -> Config:
    return make_config(
        ["AAPL", "MSFT", "SPY"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        worker={"max_jobs": 1},
        schedule={"extra_closed": ["2026-11-27"]},
        datasets={**QUOTES_ONLY, "quotes": {"cadence_s": {"regular": 300}}},
    )


def _healths(redis_url: str) -> list[WorkerHealth]:
    client = redis.Redis.from_url(redis_url)
    try:
        return live_workers(client)
    finally:
        client.close()


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _row(lines: list[str], first: str, *, after: str | None = None) -> list[str]:
    """The columns of the first line starting with `first` (after the line starting with `after`)."""
    start = next(i for i, line in enumerate(lines) if line.startswith(after)) if after else 0
    return next(line.split() for line in lines[start:] if line.split()[:1] == [first])


@pytest.mark.parametrize(
    ("stored", "no_data", "failed", "outcome"),
    [
        (("AAPL",), (), (), "ok"),
        ((), ("VIX",), (), "ok"),
        (("AAPL",), (), ("MSFT",), "partial"),
        ((), (), ("AAPL", "MSFT"), "failed"),
    ],
)
def test_a_refresh_record_says_ok_partial_or_failed(
    stored: tuple[str, ...], no_data: tuple[str, ...], failed: tuple[str, ...], outcome: str
) -> None:
    """ok: nothing failed; failed: nothing stored; partial: between; a job that raised is failed."""
    report_ = RefreshReport(
        "quotes", requested=stored + no_data + failed, stored=stored, no_data=no_data, failed=failed
    )
    started = FakeClock()()
    record = refresh_record("quotes", "job-1", 2, report_, started, started + timedelta(seconds=1.5))
    assert (record.outcome, record.stored, record.failed, record.duration_s) == (
        outcome,
        len(stored),
        len(failed),
        1.5,
    )
    assert refresh_record("quotes", "job-1", 2, None, started, started).outcome == "failed"


async def test_a_refresh_job_whose_record_cannot_be_written_still_ends_well(
    redis_url: str, emulator: RunningEmulator, secrets: Secrets, clock: FakeClock
) -> None:
    """Redis refusing the record (and the retry bookkeeping) at the end of a job does not fail it."""
    config = _config(redis_url, emulator)
    pool = await create_job_pool(redis_url)
    ctx: dict[str, Any] = {"redis": pool, "config": config, "secrets": secrets, "clock": clock}
    await jobs.startup(ctx)
    away = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        summary = await jobs.refresh_job_function("quotes")({**ctx, "redis": away, "job_id": "j"}, ["SPY"])
    finally:
        await jobs.shutdown(ctx)
        await away.aclose()
        await pool.aclose()
    assert (summary["stored"], summary["failed"]) == (1, 0)
    assert redis.Redis.from_url(redis_url).get(keys.last_refresh("quotes")) is None


def test_each_worker_tells_the_state_of_its_breakers(clock: FakeClock) -> None:
    """`circuits` of a worker's health key: closed, open after enough failures, half_open while probing."""
    calm, failing = UpstreamHealth("tradier", clock=clock), UpstreamHealth("polygon", failures=1, clock=clock)
    presence = Presence(clock, 10, host="h")
    failing.breaker.failed(probe=False)
    assert presence.health({}, {"tradier": calm, "polygon": failing}).circuits == {
        "polygon": "open",
        "tradier": "closed",
    }
    clock.advance(failing.breaker.open_s)
    assert failing.breaker.check("/v2/aggs") is True  # the probe
    assert presence.health({}, {"polygon": failing}).circuits == {"polygon": "half_open"}


def test_the_tables_are_coloured_and_framed_on_a_terminal_only(clock: FakeClock) -> None:
    """On a terminal: colour and a rule under each table's head; piped: plain lines, no escape code."""
    document = Snapshot(
        at=clock(),
        market=MarketNow(
            exchange="XNYS",
            calendar="installed",
            phase="regular",
            next_phase="post",
            next_change_at=clock() + timedelta(hours=6),
        ),
        queue=QueueStatus(
            waiting=1,
            running=0,
            deferred=0,
            on_demand_waiting=1,
            oldest_age_s=3.0,
            by_priority=(QueuePriority(rank=0, name="on-demand", waiting=1, running=0, deferred=0),),
        ),
    )
    plain = as_text(document)
    assert "\x1b[" not in plain
    assert plain.splitlines()[-1] == "no worker is running (no worker health key in Redis)"
    assert "no plan published: no worker has started against this Redis yet" in plain
    coloured = as_text(document, terminal=True, width=100)
    assert "\x1b[1;32mregular\x1b[0m" in coloured  # the phase, bold green
    assert "─────" in coloured  # the rule under the queue table's head


def test_status_cut_short_by_its_reader_ends_quietly_with_0(
    redis_url: str, monkeypatch_env: pytest.MonkeyPatch
) -> None:
    """`status | head -1`: the reader goes away, status ends with 0 and no BrokenPipeError at exit."""
    monkeypatch_env.setenv("REDIS_URL", redis_url)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader that went away: a write now fails with EPIPE
    with os.fdopen(write_end, "w") as stdout:
        monkeypatch_env.setattr("sys.stdout", stdout)
        assert main(["status", "--json"]) == 0
        stdout.write("x" * 100_000)
        stdout.flush()  # what Python does at exit: stdout now goes to devnull


def _wide_snapshot(at: datetime) -> Snapshot:
    """Every dataset with its provider, each upstream, the tick in the queue and two workers of a
    long host name: the names an operator needs to read whole on any terminal."""
    providers = {"quotes": "tradier", "expirations": "tradier", "chains": "tradier", "intraday": "polygon"}
    datasets = {
        name: DatasetStatus(
            provider=providers.get(name),
            rank=rank,
            items=500,
            fresh=480,
            stale=15,
            missing=5,
            oldest_age_s=1234.0,
            configured_cadence_s=300.0,
            held_cadence_s=600.0,
            last_refresh=RefreshRecord(
                dataset=name,
                job_id="j",
                started_at=at - timedelta(seconds=110),
                finished_at=at - timedelta(seconds=103),
                duration_s=7.2,
                symbols=100,
                stored=99,
                failed=1,
                outcome="partial",
            ),
            last_refresh_age_s=103.0,
        )
        for rank, name in enumerate(
            ("quotes", "expirations", "chains", "intraday", "history", "indicators"), start=1
        )
    }
    upstream = {
        "rate_per_min": 600,
        "calls": 123456,
        "statuses": {200: 123000, 429: 12},
        "errors": {"timeout": 3, "connection": 1},
        "throttled": 12,
        "calls_last_minute": 0,
        "last_minute": "10:41",
        "allowance_used": 0.0,
        "circuit": "half_open",
        "waits": 90,
        "wait_s": 1043.5,
    }
    health = {
        "host": "vm-6731-builder-east",
        "started_at": at - timedelta(hours=3),
        "beat_at": at,
        "health_every_s": 10.0,
        "ttl_s": 30.0,
        "jobs_complete": 12345,
        "jobs_failed": 12,
        "jobs_retried": 3,
    }
    return Snapshot(
        at=at,
        market=MarketNow(
            exchange="XNYS",
            calendar="worker",
            phase="regular",
            next_phase="post",
            next_change_at=at + timedelta(hours=6),
        ),
        plan_published_at=at,
        datasets=datasets,
        providers={name: ProviderStatus(**upstream) for name in ("tradier", "polygon")},
        queue=QueueStatus(
            waiting=1,
            running=0,
            deferred=0,
            on_demand_waiting=0,
            oldest_age_s=3.0,
            by_priority=(QueuePriority(rank=7, name="indicators", waiting=1, running=0, deferred=0),),
        ),
        workers=tuple(
            WorkerView(
                **health,
                worker_id=f"vm-6731-builder-east-{pid}-{tag}",
                pid=pid,
                up_s=10800.0,
                beat_age_s=0.0,
            )
            for pid, tag in ((412345, "9f3a"), (412346, "c0de"))
        ),
    )


@pytest.mark.parametrize("width", [80, 40])
def test_names_and_ids_are_never_cut_on_a_narrow_terminal(clock: FakeClock, width: int) -> None:
    """At 80 and 40 columns each dataset, provider, priority and worker id is printed whole, on one
    line; the columns that did not fit are left out and named, not cut to `q…`."""
    document = _wide_snapshot(clock())
    lines = as_text(document, terminal=True, width=width).splitlines()
    plain = [_strip_ansi(line) for line in lines]
    for dataset, status in document.datasets.items():
        assert _row(plain, dataset)[:2] == [dataset, status.provider or "computed"]
    assert _row(plain, "tradier", after="Providers")[0] == "tradier"
    assert _row(plain, "polygon", after="Providers")[0] == "polygon"
    assert _row(plain, "indicators", after="PRIORITY")[0] == "indicators"
    for worker in document.workers:
        assert _row(plain, worker.worker_id)[0] == worker.worker_id
    assert not [line for line in plain if "…" in line]
    assert all(len(line) <= width for line in plain if not line.startswith("market "))
    if width == 80:
        assert _row(plain, "quotes")[-3:] == ["partial", "1m43s", "ago"]  # the last refresh on one line
    else:
        assert any(line.startswith("left out at 40 columns: ") for line in plain)


def _strip_ansi(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", line).strip()


def test_the_providers_table_says_which_minute_and_that_waits_add_up(clock: FakeClock) -> None:
    """The allowance is of the last whole minute, named; the waits' seconds are said to be a sum."""
    text = as_text(_wide_snapshot(clock()))
    lines = text.splitlines()
    assert "LAST WHOLE MINUTE" in text
    assert "RATE WAITS" in text
    assert _row(lines, "tradier", after="Providers")[-8:] == [
        "0/600", "at", "10:41", "(0%)", "half_open", "90", "waits,", "1043.5s", "in", "all"
    ][-8:]  # fmt: skip


def test_the_workers_own_tick_job_is_counted_as_tick_not_other() -> None:
    """arq queues the tick as "tick:<ms>": the queue shows it as `tick`, after every dataset."""
    ranks = {"quotes": 1, "chains": 2}
    assert job_priority("tick:1764500000000", ranks) == (3, "tick")
    assert job_priority("something-else", ranks) == (4, "other")
    assert job_priority(keys.refresh_job_id("chains", "1", "a"), ranks) == (2, "chains")
