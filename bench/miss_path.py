"""Benchmark: latency of a cache miss through `Reader.quote`, against the upstream's own latency.

A miss enqueues an on-demand fetch, a real worker process (`python -m worker run`) fetches the
quote from the emulator (started with `--latency-ms`), stores it and announces it; the reader
wakes on the announcement and reads the key. The baseline, measured in the same run against the
same emulator, is one direct HTTP call to its quotes endpoint: what any fetch costs at least.
Each miss asks for a symbol nobody has asked for before. Prints p50/p99 of both and the miss's
overhead; the target is a miss p50 within the configured latency + 30 ms.

Then misses in bulk: one `Reader.quotes` call of N symbols nobody has asked for, for each N of
--bulk, with the upstream calls it cost (the emulator counts them) next to one call per symbol,
and its time (mostly the emulator making up N new symbols). The quote fetches pending together
are fetched in one call per `batch_size` (100).

    python bench/miss_path.py [--misses 100] [--latency-ms 150] [--bulk 1,10,50,250]
                              [--url redis://...] [--check] [--figures-json PATH]

Without --url it starts a private redis-server on a free port (and stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _figures
from bench._figures import Figure, Target
from bench._process import start_python
from devtools.redis_server import RedisServer, free_port
from reader import Reader, keys

REPO = Path(__file__).resolve().parent.parent

TARGET_OVERHEAD_MS = 30.0
API_KEY = "bench-key-not-a-secret"

# SPY at start (so the worker is known to be up); nothing else on a schedule the run could hit.
CONFIG = """\
watchlist: [SPY]
datasets:
  quotes: {cadence_s: {closed: 604800}, close_refresh: false}
  expirations: {enabled: false}
  chains: {enabled: false}
  history: {enabled: false}
  indicators: {enabled: false}
providers:
  tradier: {rate_per_min: 100000, max_concurrency: 8}
worker: {tick_s: 1, shutdown_grace_s: 2}
"""


def _percentile(samples: list[float], pct: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(pct) - 1]


def _wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} did not happen within {timeout_s:g} s")
        time.sleep(0.05)


async def _direct_calls(base_url: str, count: int) -> list[float]:
    """Seconds per direct quotes call to the emulator (the floor under any fetch)."""
    samples = []
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(count):
            started = time.perf_counter()
            async with session.get(f"{base_url}/v1/markets/quotes", params={"symbols": f"DIR{i}"}) as r:
                await r.read()
            samples.append(time.perf_counter() - started)
    return samples


async def _misses(url: str, count: int) -> list[float]:
    """Seconds per `Reader.quote` of a symbol not cached yet."""
    samples = []
    async with Reader(url, wait_s=10) as reader:
        await reader.quotes(["SPY"])  # connect first: the pool is not what is measured
        for i in range(count):
            started = time.perf_counter()
            await reader.quote(f"MISS{i}")
            samples.append(time.perf_counter() - started)
    return samples


async def _quote_calls(base_url: str) -> int:
    """Quotes calls the emulator has served so far."""
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/_emulator/stats") as r:
        stats = await r.json()
    return sum(stats["calls"].get("/v1/markets/quotes", {}).values())


async def _bulk_misses(url: str, base_url: str, sizes: list[int]) -> list[tuple[int, int, float, int]]:
    """For each size N: (N, upstream calls, seconds, quotes returned) of one `Reader.quotes` of N
    symbols not cached yet."""
    rows = []
    async with Reader(url, wait_s=10) as reader:
        await reader.quotes(["SPY"])  # connect first
        for n in sizes:
            symbols = [f"B{n}X{i}" for i in range(n)]
            before = await _quote_calls(base_url)
            started = time.perf_counter()
            found = await reader.quotes(symbols)
            elapsed = time.perf_counter() - started
            got = sum(1 for q in found.values() if not isinstance(q, Exception))
            rows.append((n, await _quote_calls(base_url) - before, elapsed, got))
    return rows


Measured = tuple[list[float], list[float], list[tuple[int, int, float, int]]]


def measure(url: str, misses: int, latency_ms: float, bulk: list[int]) -> Measured:
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    emulator = start_python(
        ["-m", "emulator", "--port", str(port), "--latency-ms", str(latency_ms), "--rate-per-min", "100000"],
        {},
    )
    worker = None
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG)
        try:
            client = redis.Redis.from_url(url)
            client.flushall()
            env = {"REDIS_URL": url, "TRADIER_BASE_URL": emulator_url, "TRADIER_API_KEY": API_KEY}
            worker = start_python(
                ["-m", "worker", "run", "--config", str(config), "--log-level", "WARNING"], env
            )
            _wait_for(lambda: client.exists(keys.quote("SPY")), 30, "the worker's first refresh")
            client.close()
            direct = asyncio.run(_direct_calls(emulator_url, misses))
            miss = asyncio.run(_misses(url, misses))
            bulk_rows = asyncio.run(_bulk_misses(url, emulator_url, bulk))
        finally:
            for process in (worker, emulator):
                if process is not None:
                    process.send_signal(signal.SIGINT)
                    process.wait(timeout=20)
    return direct, miss, bulk_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--misses", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=150.0, help="the emulator's added latency")
    parser.add_argument(
        "--bulk", default="1,10,50,250", help="sizes of the quotes() misses in bulk, comma-separated"
    )
    parser.add_argument("--url", help="an existing Redis, which is flushed (default: start a private one)")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if the miss p50 exceeds latency + {TARGET_OVERHEAD_MS:g} ms",
    )
    parser.add_argument("--figures-json", type=Path, help="also write the headline figures here (JSON)")
    args = parser.parse_args(argv)
    bulk = [int(n) for n in args.bulk.split(",") if n.strip()]
    server = None if args.url else RedisServer().start()
    try:
        direct, miss, bulk_rows = measure(args.url or server.url, args.misses, args.latency_ms, bulk)  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()

    target_ms = args.latency_ms + TARGET_OVERHEAD_MS
    miss_p50_ms = _percentile(miss, 50) * 1000
    print(f"miss path, {len(miss)} misses of distinct symbols; emulator latency {args.latency_ms:g} ms")
    print(f"{'':44} {'p50 ms':>9} {'p99 ms':>9}")
    for name, samples in (
        ("direct upstream call (baseline)", direct),
        ("Reader.quote miss (fetch on demand)", miss),
    ):
        print(f"{name:44} {_percentile(samples, 50) * 1000:9.1f} {_percentile(samples, 99) * 1000:9.1f}")
    overhead = (_percentile(miss, 50) - _percentile(direct, 50)) * 1000
    print(f"{'miss overhead over the direct call':44} {overhead:9.1f}")
    verdict = "ok" if miss_p50_ms <= target_ms else "OVER TARGET"
    print(f"{'target: miss p50 <= latency + 30 ms':44} {target_ms:9.1f}   {verdict}")
    print()
    print("misses in bulk: one Reader.quotes call of N symbols not cached")
    print(f"{'N symbols':>10} {'calls':>7} {'1 per symbol':>13} {'ms':>9} {'quotes':>7}")
    for n, calls, elapsed, got in bulk_rows:
        print(f"{n:>10} {calls:>7} {n:>13} {elapsed * 1000:>9.1f} {got:>7}")
    if args.figures_json:
        _figures.write(args.figures_json, figures(direct, miss, bulk_rows, target_ms))
    return 1 if args.check and miss_p50_ms > target_ms else 0


def figures(
    direct: list[float], miss: list[float], bulk_rows: list[tuple[int, int, float, int]], target_ms: float
) -> list[Figure]:
    """The miss p50 beside the direct call's, against latency + 30 ms; the upstream calls of the
    largest quotes() miss beside one call per symbol."""
    found = [
        Figure(
            "miss p50: Reader.quote, fetched on demand",
            _percentile(miss, 50) * 1000,
            "ms",
            _percentile(direct, 50) * 1000,
            "direct upstream call",
            Target(target_ms, of="value"),
        )
    ]
    if bulk_rows:
        n, calls, _, _ = max(bulk_rows)
        found.append(
            Figure(f"upstream calls of one quotes() miss of {n}", calls, "calls", n, "one call per symbol")
        )
    return found


if __name__ == "__main__":
    sys.exit(main())
