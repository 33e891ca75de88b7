"""Benchmark: 1, 2 and 3 worker processes against one upstream allowance.

Each run starts a fresh emulator (Tradier's fixed one-minute window of `--rate-per-min`, 429 past
it; `--latency-ms` per answer) and N `python -m worker run` processes on one Redis, with the
watchlist of `--symbols` symbols: quotes every 15 s and chains of 3 expirations every 60 s in every
phase, a plan that needs more than the allowance (the planner stretches the chains). Once every
quote is cached, it reads every quote once a second for `--seconds`, then reads the emulator's
counters. Per run it prints:
- upstream calls a minute and the share of the allowance they are (the fleet shares it: more
  workers must not spend more, nor draw a 429);
- chain calls a minute (refresh throughput of the dataset that the allowance limits);
- the age of the quotes read: p50 and oldest (their cadence is 15 s);
- answers 429.
The 1-worker run, measured in the same invocation, is the baseline the others are compared with:
more workers add redundancy, not allowance, so their throughput should match it.

    python bench/scale.py [--workers 1,2,3] [--seconds 60] [--symbols 100] [--rate-per-min 120]
                          [--latency-ms 40] [--url redis://...] [--figures-json PATH]

Without --url it starts a private redis-server on a free port (and stops it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _figures
from bench._figures import Figure, Target
from bench._process import start_python
from devtools.budget_case import budget_case_config
from devtools.redis_server import RedisServer, free_port
from reader import Quote, keys

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-not-a-secret"


@dataclass
class Result:
    workers: int
    seconds: float
    calls: int
    chain_calls: int
    throttled: int
    ages_s: list[float]


def _counts(emulator_url: str) -> tuple[int, int, int]:
    """(calls answered, chain calls answered, answers 429) so far."""
    with urllib.request.urlopen(f"{emulator_url}/_emulator/stats", timeout=5) as answer:  # noqa: S310 - local
        calls = json.load(answer)["calls"]
    total = sum(n for by_status in calls.values() for n in by_status.values())
    chains = sum(calls.get("/v1/markets/options/chains", {}).values())
    throttled = sum(by_status.get("429", 0) for by_status in calls.values())
    return total, chains, throttled


def _ages_s(client: redis.Redis, symbols: list[str]) -> list[float]:
    now = datetime.now(UTC)
    return [
        float("inf") if raw is None else (now - Quote.model_validate_json(raw).fetched_at).total_seconds()
        for raw in client.mget([keys.quote(s) for s in symbols])
    ]


def run(url: str, workers: int, args: argparse.Namespace) -> Result:
    symbols = ["".join(p) for p in itertools.product("ABCDEFGHIJKLMNOP", repeat=2)][: args.symbols]
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    limits = ["--latency-ms", str(args.latency_ms), "--rate-per-min", str(args.rate_per_min)]
    emulator = start_python(["-m", "emulator", "--port", str(port), *limits], {})
    processes: list[subprocess.Popen[bytes]] = []
    client = redis.Redis.from_url(url)
    client.flushall()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(budget_case_config(args.rate_per_min, symbols))
        env = {"REDIS_URL": url, "TRADIER_BASE_URL": emulator_url, "TRADIER_API_KEY": API_KEY}
        try:
            command = ["-m", "worker", "run", "--config", str(config), "--log-level", "WARNING"]
            processes = [start_python(command, env) for _ in range(workers)]
            deadline = time.monotonic() + 60
            while max(_ages_s(client, symbols)) == float("inf"):
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the quotes were not all cached within 60 s")
                time.sleep(0.2)
            calls_before, chains_before, _ = _counts(emulator_url)
            started = time.monotonic()
            ages: list[float] = []
            while time.monotonic() - started < args.seconds:
                ages += _ages_s(client, symbols)
                time.sleep(1.0)
            seconds = time.monotonic() - started
            calls, chains, throttled = _counts(emulator_url)
        finally:
            for process in [*processes, emulator]:
                process.send_signal(signal.SIGINT)
            for process in [*processes, emulator]:
                process.wait(timeout=30)
            client.close()
    return Result(workers, seconds, calls - calls_before, chains - chains_before, throttled, ages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", default="1,2,3", help="worker counts to run, comma-separated (first: baseline)"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run")
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument(
        "--rate-per-min", type=int, default=120, help="the emulator's allowance, and the config's"
    )
    parser.add_argument("--latency-ms", type=float, default=40.0, help="the emulator's added latency")
    parser.add_argument("--url", help="an existing Redis, which is flushed (default: start a private one)")
    parser.add_argument("--figures-json", type=Path, help="also write the headline figures here (JSON)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",") if n.strip()]
    server = None if args.url else RedisServer().start()
    try:
        results = [run(args.url or server.url, n, args) for n in counts]  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()

    base = results[0]
    print(
        f"{args.symbols} symbols, quotes every 15 s, chains of 3 expirations every 60 s; one allowance of "
        f"{args.rate_per_min}/min; {args.seconds:g} s measured per run; baseline: {base.workers} worker(s)"
    )
    header = (
        f"{'workers':>7} {'calls/min':>10} {'allowance':>10} {'chains/min':>11} {'vs base':>8} "
        f"{'quote age p50 s':>16} {'oldest s':>9} {'429s':>5}"
    )
    print(header)
    for r in results:
        per_min = r.calls * 60 / r.seconds
        chains_per_min = r.chain_calls * 60 / r.seconds
        base_chains = base.chain_calls * 60 / base.seconds
        versus = f"{chains_per_min / base_chains:.2f}" if base_chains else "-"  # no chain in a short run
        print(
            f"{r.workers:>7} {per_min:>10.1f} {per_min / args.rate_per_min:>9.0%} {chains_per_min:>11.1f} "
            f"{versus:>8} "
            f"{statistics.median(r.ages_s):>16.1f} {max(r.ages_s):>9.1f} {r.throttled:>5}"
        )
    if args.figures_json:
        _figures.write(args.figures_json, figures(results, args.rate_per_min))
    return 0


def figures(results: list[Result], rate_per_min: int) -> list[Figure]:
    """Chain calls a minute of each fleet beside the first run's (the baseline); the calls a minute
    of the largest fleet beside the allowance; the answers 429 of every run (target: none)."""
    base, largest = results[0], results[-1]
    found = [
        Figure(
            f"chain calls/min, {r.workers} workers",
            round(r.chain_calls * 60 / r.seconds, 1),
            "calls/min",
            round(base.chain_calls * 60 / base.seconds, 1),
            f"{base.workers} worker{'s' if base.workers > 1 else ''}",
        )
        for r in results[1:]
    ]
    found.append(
        Figure(
            f"upstream calls/min, {largest.workers} workers",
            round(largest.calls * 60 / largest.seconds, 1),
            "calls/min",
            rate_per_min,
            "the allowance",
        )
    )
    counts = ",".join(str(r.workers) for r in results)
    found.append(
        Figure(
            f"answers 429, runs of {counts} workers",
            sum(r.throttled for r in results),
            "",
            target=Target(0, of="value"),
        )
    )
    return found


if __name__ == "__main__":
    sys.exit(main())
