"""Benchmark: the worker's resident memory after 500 and after 5,000 refresh cycles.

A refresh cycle is one scheduled refresh job of quotes for the watchlist (`--symbols` symbols in
one batch; 10 by default, so that 5,000 cycles take about a minute: what is measured is memory
per cycle), run by a real worker process (`python -m worker run`, the daemon as deployed)
against the emulator (no added latency, an allowance far above what the run spends). The bench
enqueues the jobs as the tick does (`refresh_quotes` under the schedule's job id, a new slot
each), keeping `--in-flight` of them queued or running, and reads each job's result. After each
count of `--cycles` it lets the jobs in flight end and reads the worker's RSS
(`/proc/<pid>/status`, VmRSS; the median of 5 readings 0.1 s apart). The worker ticks meanwhile
as always (it enqueues nothing: the quotes' cadence is a week).

Printed: the RSS at each count and the growth per cycle between the first and the last; the
upstream calls per refresh (the emulator counts them) beside one call per symbol; the time a
cycle takes. Exits 1 if the RSS after the last count exceeds the RSS after the first by more
than `--max-growth` (10 %): the worker would leak memory over days of refreshes.

The emulator and the worker run on one clock, shifted to a regular session (Tuesday 2026-11-24
10:00 ET), so the figures do not depend on when the bench runs.

    python bench/worker_rss.py [--cycles 500,5000] [--symbols 10] [--in-flight 8]
                               [--max-growth 0.10] [--url redis://...] [--logs DIR]
                               [--figures-json PATH]

Without --url it starts a private redis-server on a free port (and stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import result_key_prefix
from arq.jobs import deserialize_result

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _figures
from bench._figures import Figure, Target
from bench._process import start_logged
from devtools.redis_server import RedisServer, free_port, port_open
from reader import jobs as job_contract
from reader import keys
from reader.clock import ShiftedClock
from worker.schedule import batch_id

REPO = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET: the session is open
API_KEY = "bench-key-not-a-secret"
RATE_PER_MIN = 1_000_000
JOB_TIMEOUT_S = 60.0
RESULT_POLL_S = 0.005
MAX_GROWTH = 0.10


def worker_config(symbols: list[str]) -> dict[str, Any]:
    """Quotes only, every symbol in one batch; the schedule enqueues nothing during the run. Metrics
    on (a free port), as compose runs the worker: their series and queue sampling are measured too."""
    week = 7 * 86_400
    return {
        "watchlist": symbols,
        "providers": {"tradier": {"rate_per_min": RATE_PER_MIN, "batch_size": max(len(symbols), 1)}},
        "datasets": {
            "quotes": {"cadence_s": {"pre": week, "regular": week, "post": week, "closed": week}},
            "expirations": {"enabled": False},
            "chains": {"enabled": False},
            "history": {"enabled": False},
            "indicators": {"enabled": False},
        },
        "worker": {"tick_s": 1, "shutdown_grace_s": 2},
        "metrics": {"port": 0},
    }


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` now (Linux: VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"bench: /proc/{pid}/status has no VmRSS line (not Linux?)")


def settled_rss_bytes(pid: int) -> int:
    """The median of 5 readings of `rss_bytes`, 0.1 s apart."""
    readings = []
    for _ in range(5):
        readings.append(rss_bytes(pid))
        time.sleep(0.1)
    return int(statistics.median(readings))


def _quote_calls(emulator_url: str) -> int:
    """Quotes calls the emulator has answered so far."""
    with urllib.request.urlopen(f"{emulator_url}/_emulator/stats", timeout=5) as answer:  # noqa: S310 - local
        calls = json.load(answer)["calls"]
    return sum(calls.get("/v1/markets/quotes", {}).values())


def cpu_s(pid: int) -> float:
    """CPU seconds process `pid` has used so far, user and system (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Checkpoint:
    cycles: int
    rss_bytes: int
    elapsed_s: float  # since the first cycle was enqueued
    cpu_s: dict[str, float]  # CPU seconds used so far by the worker and the emulator


class Cycles:
    """Runs refresh cycles through the worker's queue, `in_flight` at a time: enqueues them as the
    tick does and reads their results (one MGET of the result keys every `RESULT_POLL_S`)."""

    def __init__(self, pool: ArqRedis, symbols: list[str], in_flight: int) -> None:
        self._pool = pool
        self._symbols = sorted(symbols)
        self._batch = batch_id(self._symbols)
        self._in_flight = in_flight
        self._pending: dict[str, float] = {}  # job id -> when it was enqueued (monotonic)
        self.started = 0
        self.done = 0
        self.failed: list[str] = []

    async def run(self, count: int) -> None:
        """Run `count` more cycles, and wait until every one has ended."""
        target = self.started + count
        while self.done < target:
            while len(self._pending) < self._in_flight and self.started < target:
                await self._enqueue()
            await asyncio.sleep(RESULT_POLL_S)
            ids = list(self._pending)
            for job_id, raw in zip(
                ids, await self._pool.mget([result_key_prefix + i for i in ids]), strict=True
            ):
                if raw is None:
                    if time.monotonic() - self._pending[job_id] > JOB_TIMEOUT_S:
                        raise SystemExit(f"bench: job {job_id} has no result after {JOB_TIMEOUT_S:g} s")
                    continue
                del self._pending[job_id]
                self.done += 1
                result = deserialize_result(raw, deserializer=job_contract.loads)
                if not result.success or result.result.get("failed"):
                    self.failed.append(f"{job_id}: {result.result}")

    async def _enqueue(self) -> None:
        job_id = keys.refresh_job_id("quotes", f"rss{self.started:06d}", self._batch)
        job = await self._pool.enqueue_job(
            job_contract.refresh_job("quotes"), self._symbols, _job_id=job_id, _queue_name=keys.QUEUE
        )
        if job is None:
            raise SystemExit(f"bench: arq refused job id {job_id} (already used)")
        self._pending[job_id] = time.monotonic()
        self.started += 1


@dataclass
class Measured:
    symbols: int
    checkpoints: list[Checkpoint]
    upstream_calls: int
    failed: list[str]


async def _drive(
    redis_url: str, pids: dict[str, int], symbols: list[str], counts: list[int], in_flight: int
) -> Measured:
    pool = await create_pool(
        RedisSettings.from_dsn(redis_url),
        default_queue_name=keys.QUEUE,
        job_serializer=job_contract.dumps,
        job_deserializer=job_contract.loads,
    )
    try:
        cycles = Cycles(pool, symbols, in_flight)
        checkpoints = []
        started = time.monotonic()
        for count in counts:
            await cycles.run(count - cycles.done)
            elapsed_s = time.monotonic() - started
            used = {name: cpu_s(pid) for name, pid in pids.items()}
            rss = await asyncio.to_thread(settled_rss_bytes, pids["worker"])
            checkpoints.append(Checkpoint(count, rss, elapsed_s, used))
            print(f"  after {count:>6,} cycles: RSS {checkpoints[-1].rss_bytes / 2**20:6.1f} MiB", flush=True)
        return Measured(len(symbols), checkpoints, 0, cycles.failed)
    finally:
        await pool.aclose()


def _wait_for(condition: Any, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text().splitlines()[-10:])
            raise SystemExit(f"bench: {what} did not happen within {timeout_s:g} s; {log.name} ends:\n{tail}")
        time.sleep(0.05)


def measure(url: str, symbols: list[str], counts: list[int], in_flight: int, logs: Path) -> Measured:
    """Start the emulator and the worker, wait for its start-up refresh, then run the cycles."""
    clock = ShiftedClock.starting_at(AT)
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    (logs / "config.yaml").write_text(json.dumps(worker_config(symbols)))  # JSON is YAML
    with ExitStack() as stack:
        emulator_args = ["-m", "emulator", "--port", str(port), "--rate-per-min", str(RATE_PER_MIN)]
        emulator = start_logged(stack, emulator_args, clock.env(), logs / "emulator.log")
        _wait_for(lambda: port_open(port), 10, "the emulator's start", logs / "emulator.log")
        client = stack.enter_context(redis.Redis.from_url(url))
        client.flushall()
        env = {"REDIS_URL": url, "TRADIER_BASE_URL": emulator_url, "TRADIER_API_KEY": API_KEY, **clock.env()}
        run = ["-m", "worker", "run", "--config", str(logs / "config.yaml"), "--log-level", "WARNING"]
        worker = start_logged(stack, run, env, logs / "worker.log")
        every = [keys.quote(s) for s in symbols]
        _wait_for(
            lambda: (
                (worker.poll() is None and client.exists(*every) == len(every)) or worker.poll() is not None
            ),
            60,
            "the worker's start-up refresh",
            logs / "worker.log",
        )
        if worker.poll() is not None:
            tail = "\n".join((logs / "worker.log").read_text().splitlines()[-10:])
            raise SystemExit(f"bench: the worker exited ({worker.returncode}); worker.log ends:\n{tail}")
        calls_before = _quote_calls(emulator_url)
        pids = {"worker": worker.pid, "emulator": emulator.pid}
        measured = asyncio.run(_drive(url, pids, symbols, counts, in_flight))
        measured.upstream_calls = _quote_calls(emulator_url) - calls_before
    return measured


def figures(measured: Measured) -> list[Figure]:
    """RSS after the last count beside the RSS after the first (target: at most `MAX_GROWTH` more);
    upstream calls per refresh beside one call per symbol."""
    first, last = measured.checkpoints[0], measured.checkpoints[-1]
    return [
        Figure(
            f"worker RSS after {last.cycles:,} refresh cycles",
            round(last.rss_bytes / 2**20, 1),
            "MiB",
            round(first.rss_bytes / 2**20, 1),
            f"after {first.cycles:,} cycles",
            Target(1 + MAX_GROWTH),
        ),
        Figure(
            f"upstream calls per quotes refresh ({measured.symbols} symbols)",
            round(measured.upstream_calls / last.cycles, 2),
            "calls",
            measured.symbols,
            "one call per symbol",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cycles",
        default="500,5000",
        help="counts of refresh cycles after which RSS is read, comma-separated",
    )
    parser.add_argument("--symbols", type=int, default=10, help="watchlist size (one batch)")
    parser.add_argument("--in-flight", type=int, default=8, help="refresh jobs queued or running at once")
    parser.add_argument(
        "--max-growth",
        type=float,
        default=MAX_GROWTH,
        help="exit 1 if RSS grows by more than this share from the first count to the last",
    )
    parser.add_argument("--url", help="an existing Redis, which is flushed (default: start a private one)")
    parser.add_argument(
        "--logs", type=Path, help="keep the worker's config and log, and the emulator's, here"
    )
    parser.add_argument("--figures-json", type=Path, help="also write the headline figures here (JSON)")
    args = parser.parse_args(argv)
    counts = sorted({int(n) for n in args.cycles.split(",") if n.strip()})
    if len(counts) < 2 or counts[0] <= 0:
        parser.error(f"--cycles {args.cycles!r}: expected at least two counts above 0, e.g. 500,5000")
    symbols = [f"R{i:03d}" for i in range(args.symbols)]
    print(
        f"worker RSS: refresh cycles of quotes for {args.symbols} symbols, {args.in_flight} in flight, "
        "emulator without latency"
    )
    with ExitStack() as stack:
        url = args.url or stack.enter_context(RedisServer()).url
        logs = args.logs or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        logs.mkdir(parents=True, exist_ok=True)
        measured = measure(url, symbols, counts, args.in_flight, logs)

    first, last = measured.checkpoints[0], measured.checkpoints[-1]
    growth = last.rss_bytes / first.rss_bytes - 1
    per_cycle = (last.rss_bytes - first.rss_bytes) / (last.cycles - first.cycles)
    cycle_ms = (last.elapsed_s - first.elapsed_s) / (last.cycles - first.cycles) * 1000
    cpu_ms = {
        name: (last.cpu_s[name] - first.cpu_s[name]) / (last.cycles - first.cycles) * 1000
        for name in last.cpu_s
    }
    print(f"{'cycles':>8} {'RSS MiB':>9}")
    for checkpoint in measured.checkpoints:
        print(f"{checkpoint.cycles:>8,} {checkpoint.rss_bytes / 2**20:>9.1f}")
    verdict = "ok" if growth <= args.max_growth else "OVER TARGET"
    print(
        f"growth from {first.cycles:,} to {last.cycles:,} cycles: {growth:+.1%} "
        f"({per_cycle:+.0f} bytes a cycle); target at most {args.max_growth:+.0%}: {verdict}"
    )
    print(
        f"upstream calls per refresh: {measured.upstream_calls / last.cycles:.2f} for {args.symbols} "
        f"symbols (one per symbol: {args.symbols}); {cycle_ms:.1f} ms a cycle "
        f"(CPU: {', '.join(f'{name} {ms:.1f} ms' for name, ms in cpu_ms.items())}); "
        f"failed refreshes: {len(measured.failed)}"
    )
    for failure in measured.failed[:3]:
        print(f"  e.g. {failure}")
    if args.figures_json:
        _figures.write(args.figures_json, figures(measured))
    return 0 if growth <= args.max_growth and not measured.failed else 1


if __name__ == "__main__":
    sys.exit(main())
