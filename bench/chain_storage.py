"""Benchmark: how compactly a chain and a quote are stored, and how fast `Reader.chain` reads a chain back.

A 200-contract chain with greeks and a quote are fetched from the emulator through the real
Tradier client and stored by the real `Store`. Printed:
- bytes per contract in Redis (`MEMORY USAGE` of the key / contracts), next to the baseline of
  the same chain stored as one JSON object per contract (field names repeated); target < 400;
- bytes per quote in Redis, next to the upstream's own answer for that quote stored as it came
  (what a cache of the HTTP answers would keep);
- p50/p99 of `Reader.chain(symbol, expiration)` against a raw `GET` of the same key (the floor
  of any read), interleaved in rounds in one process so that drift hits both alike.

    python bench/chain_storage.py [--iterations 2000] [--url redis://...] [--check] [--figures-json PATH]

Without --url it starts a private redis-server on a free port (and stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import redis.asyncio
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _figures
from bench._figures import Figure, Target
from devtools.redis_server import RedisServer
from emulator.app import create_app
from emulator.state import EmulatorOptions
from reader import OptionChain, Quote, Reader, keys
from worker.providers.tradier import TradierProvider
from worker.ratelimit import RateGate
from worker.store import Store

TARGET_BYTES_PER_CONTRACT = 400
CONTRACTS = 200
ROUND = 25
AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET
SYMBOL = "SPY"


def _percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


async def fetch_items() -> tuple[OptionChain, Quote, bytes]:
    """The first expiration of SYMBOL with at least CONTRACTS contracts, cut to exactly CONTRACTS;
    the quote of SYMBOL, and the upstream's answer it was made from."""
    server = TestServer(create_app(EmulatorOptions(seed=7), clock=lambda: AT), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            provider = TradierProvider(
                session,
                base_url=str(server.make_url("")).rstrip("/"),
                api_key="bench",
                gate=RateGate("tradier", 10_000, 4, clock=lambda: AT),
                batch_size=100,
                timeout_s=10,
                clock=lambda: AT,
            )
            quotes = await provider.fetch_quotes([SYMBOL], freshness=lambda at: at + timedelta(days=1))
            assert quotes.quotes, f"the emulator has no quote of {SYMBOL}"
            url = f"{str(server.make_url('')).rstrip('/')}/v1/markets/quotes"
            headers = {"Authorization": "Bearer bench", "Accept": "application/json"}
            async with session.get(url, params={"symbols": SYMBOL}, headers=headers) as answer:
                answer.raise_for_status()
                quote_answer = await answer.read()
            listed = await provider.fetch_expirations(SYMBOL, freshness=lambda at: at + timedelta(days=1))
            assert listed is not None, "the emulator lists no expirations"
            for expiration in listed.dates:
                chain = await provider.fetch_chain(
                    SYMBOL, expiration, freshness=lambda at: at + timedelta(days=1)
                )
                if chain is not None and len(chain.contracts) >= CONTRACTS:
                    middle = (len(chain.contracts) - CONTRACTS) // 2 // 2 * 2  # keep call/put pairs
                    cut = chain.model_copy(update={"contracts": chain.contracts[middle : middle + CONTRACTS]})
                    return cut, quotes.quotes[0], quote_answer
    finally:
        await server.close()
    raise SystemExit(f"no {SYMBOL} expiration has {CONTRACTS} contracts in the emulator")


@dataclass
class Figures:
    contracts: int
    stored_bytes: int
    baseline_bytes: int
    quote_bytes: int
    quote_answer_bytes: int
    raw_s: list[float]
    reader_s: list[float]


async def measure(url: str, iterations: int) -> Figures:
    chain, quote, quote_answer = await fetch_items()
    client = redis.asyncio.Redis.from_url(url)
    store = Store(client, keep_stale_s=3600, clock=lambda: AT)
    await store.put_quotes([quote])
    quote_bytes = await client.memory_usage(keys.quote(SYMBOL), samples=0)
    await client.set("bench:quote-answer", quote_answer)
    quote_answer_bytes = await client.memory_usage("bench:quote-answer", samples=0)
    await client.delete(keys.quote(SYMBOL), "bench:quote-answer")
    key = keys.chain(SYMBOL, chain.expiration)
    await store.put([(key, chain)])
    stored_bytes = await client.memory_usage(key, samples=0)
    baseline_key = key + ":bench-objects"
    objects = chain.as_json()  # the same chain with one JSON object per contract
    await client.set(baseline_key, json.dumps(objects, separators=(",", ":")))
    baseline_bytes = await client.memory_usage(baseline_key, samples=0)
    await client.delete(baseline_key)

    raw_s: list[float] = []
    reader_s: list[float] = []
    perf = time.perf_counter
    expiration: date = chain.expiration
    async with Reader(url, clock=lambda: AT) as reader:
        for _ in range(ROUND * 2):  # warm both connections
            await client.get(key)
            await reader.chain(SYMBOL, expiration)
        for _ in range(max(iterations // ROUND, 1)):
            for _ in range(ROUND):
                started = perf()
                await client.get(key)
                raw_s.append(perf() - started)
            for _ in range(ROUND):
                started = perf()
                await reader.chain(SYMBOL, expiration)
                reader_s.append(perf() - started)
    await client.delete(key)
    await client.aclose()
    return Figures(
        len(chain.contracts), stored_bytes, baseline_bytes, quote_bytes, quote_answer_bytes, raw_s, reader_s
    )


def figures(measured: Figures) -> list[Figure]:
    """Bytes per contract and per quote beside their baselines; the p50 of `Reader.chain`."""
    per = measured.contracts
    return [
        Figure(
            f"bytes per contract ({per}-contract chain)",
            measured.stored_bytes / per,
            "B",
            measured.baseline_bytes / per,
            "one JSON object per contract",
            Target(TARGET_BYTES_PER_CONTRACT, of="value", op="<"),
        ),
        Figure(
            "bytes per quote", measured.quote_bytes, "B", measured.quote_answer_bytes, "the upstream's answer"
        ),
        Figure(
            f"chain read p50: Reader.chain ({per} contracts)",
            _percentile(measured.reader_s, 50) * 1e6,
            "us",
            _percentile(measured.raw_s, 50) * 1e6,
            "raw GET",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2_000)
    parser.add_argument("--url", help="an existing Redis (default: start a private one)")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 at {TARGET_BYTES_PER_CONTRACT} bytes per contract or more",
    )
    parser.add_argument("--figures-json", type=Path, help="also write the headline figures here (JSON)")
    args = parser.parse_args(argv)
    server = None if args.url else RedisServer().start()
    try:
        measured = asyncio.run(measure(args.url or server.url, args.iterations))  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()

    contracts = measured.contracts
    stored = measured.stored_bytes / contracts
    baseline = measured.baseline_bytes / contracts
    verdict = "ok" if stored < TARGET_BYTES_PER_CONTRACT else "OVER TARGET"
    print(f"chain storage, {SYMBOL}, {contracts} contracts with greeks")
    print(f"{'bytes per contract (MEMORY USAGE)':44} {'stored':>9} {'baseline':>9}")
    print(f"{'  rows (stored) vs one object per contract':44} {stored:9.1f} {baseline:9.1f}")
    print(f"{'  saving':44} {1 - stored / baseline:9.0%}")
    print(f"{'  target':44} {'< ' + str(TARGET_BYTES_PER_CONTRACT):>9}   {verdict}")
    quote_bytes, answer_bytes = measured.quote_bytes, measured.quote_answer_bytes
    print(f"{'bytes per quote: stored vs the upstream answer':44} {quote_bytes:9d} {answer_bytes:9d}")
    raw_s, reader_s = measured.raw_s, measured.reader_s
    print(f"read, {len(reader_s)} calls each, interleaved in rounds of {ROUND}")
    print(f"{'':44} {'p50 us':>9} {'p99 us':>9}")
    rows = [("raw GET", raw_s), (f"Reader.chain ({contracts} contracts, parsed)", reader_s)]
    for name, samples in rows:
        print(f"{name:44} {_percentile(samples, 50) * 1e6:9.1f} {_percentile(samples, 99) * 1e6:9.1f}")
    print(
        f"{'ratio Reader.chain / raw GET':44} {_percentile(reader_s, 50) / _percentile(raw_s, 50):9.2f} "
        f"{_percentile(reader_s, 99) / _percentile(raw_s, 99):9.2f}"
    )
    if args.figures_json:
        _figures.write(args.figures_json, figures(measured))
    return 1 if args.check and stored >= TARGET_BYTES_PER_CONTRACT else 0


if __name__ == "__main__":
    sys.exit(main())
