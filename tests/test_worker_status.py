"""`python -m worker status`: every live worker process has a health key of its own, listed with
what it runs now; a killed one drops out when its key expires, one that stops cleanly at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis

from emulator.state import Fault
from reader import keys
from tests.support import FakeClock, RunningEmulator, create_job_pool, make_config, until
from worker.__main__ import main
from worker.config import Secrets
from worker.daemon import MarketWorker
from worker.presence import Presence, running_job
from worker.settings import worker_options
from worker.status import duration, live_workers, report

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
    n: int, redis_url: str, emulator: RunningEmulator, secrets: Secrets, clock: FakeClock
) -> AsyncIterator[list[tuple[MarketWorker, asyncio.Task[None]]]]:
    """`n` in-process workers of one job slot each, health every `HEALTH_EVERY_S`; on exit each is
    stopped as `python -m worker run` stops (its `close`)."""
    config = make_config(
        ["AAPL", "MSFT", "SPY"], redis_url=redis_url, tradier_url=emulator.url, worker={"max_jobs": 1}
    )
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

    assert await asyncio.to_thread(main, ["status"]) == 1
    assert capsys.readouterr().out.strip() == "no worker is running (no worker health key in Redis)"


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
