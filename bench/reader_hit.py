"""Benchmark: latency of a cache hit through `Reader.quote`, against the floor under it.

The baseline is what any reader must do anyway: redis-py `GET` of the key plus
`Quote.model_validate_json` of the same bytes, on an identical client. Both run in the same
process against the same redis-server, interleaved in rounds so that drift hits both alike.
Prints p50/p99 of each and their ratio; the target is a ratio of at most 1.3.

    python bench/reader_hit.py [--iterations 20000] [--url redis://...] [--check]

Without --url it starts a private redis-server on a free port (and stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.redis_server import RedisServer
from emulator.market import Market
from reader import Quote, Reader, keys

TARGET_RATIO = 1.3
ROUND = 50


def _sample_quote() -> Quote:
    at = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    state = Market(seed=1).quote("AAPL", at)
    assert state is not None
    return Quote(
        symbol="AAPL",
        source="tradier",
        fetched_at=at,
        fresh_until=at + timedelta(days=3650),
        description=state.listing.description,
        exch=state.listing.exch,
        type=state.listing.type,
        last=state.last,
        change=state.change,
        change_percentage=state.change_percentage,
        volume=state.volume,
        average_volume=state.listing.average_volume,
        last_volume=state.last_volume,
        trade_date=state.trade_time,
        open=state.open,
        high=state.high,
        low=state.low,
        prevclose=state.prevclose,
        week_52_high=state.week_52_high,
        week_52_low=state.week_52_low,
        bid=state.bid,
        bidsize=state.bidsize,
        bidexch="Q",
        bid_date=state.quote_time,
        ask=state.ask,
        asksize=state.asksize,
        askexch="P",
        ask_date=state.quote_time,
        root_symbols="AAPL",
    )


def _percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


async def measure(url: str, iterations: int) -> tuple[list[float], list[float]]:
    quote = _sample_quote()
    key = keys.quote("AAPL")
    raw_client = redis.asyncio.Redis.from_url(url)
    await raw_client.set(key, quote.model_dump_json(exclude_none=True))
    raw_s: list[float] = []
    reader_s: list[float] = []
    perf = time.perf_counter
    async with Reader(url) as reader:
        for _ in range(ROUND * 4):  # warm both connections and caches
            Quote.model_validate_json(await raw_client.get(key))  # type: ignore[arg-type]
            await reader.quote("AAPL")
        for _ in range(max(iterations // ROUND, 1)):
            for _ in range(ROUND):
                started = perf()
                Quote.model_validate_json(await raw_client.get(key))  # type: ignore[arg-type]
                raw_s.append(perf() - started)
            for _ in range(ROUND):
                started = perf()
                await reader.quote("AAPL")
                reader_s.append(perf() - started)
    await raw_client.aclose()
    return raw_s, reader_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--url", help="an existing Redis (default: start a private one)")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if the p50 ratio exceeds {TARGET_RATIO}"
    )
    args = parser.parse_args(argv)

    server = None if args.url else RedisServer().start()
    try:
        raw_s, reader_s = asyncio.run(measure(args.url or server.url, args.iterations))  # type: ignore[union-attr]
    finally:
        if server is not None:
            server.stop()

    rows = []
    for name, samples in (("raw GET + model_validate_json", raw_s), ("Reader.quote", reader_s)):
        rows.append((name, _percentile(samples, 50) * 1e6, _percentile(samples, 99) * 1e6))
    print(f"reader hit, {len(reader_s)} calls each, interleaved in rounds of {ROUND}")
    print(f"{'':32} {'p50 us':>9} {'p99 us':>9}")
    for name, p50, p99 in rows:
        print(f"{name:32} {p50:9.1f} {p99:9.1f}")
    ratio_p50 = rows[1][1] / rows[0][1]
    ratio_p99 = rows[1][2] / rows[0][2]
    verdict = "ok" if ratio_p50 <= TARGET_RATIO else "OVER TARGET"
    print(
        f"{'ratio Reader / raw':32} {ratio_p50:9.2f} {ratio_p99:9.2f}"
        f"   target p50 <= {TARGET_RATIO}: {verdict}"
    )
    return 1 if args.check and ratio_p50 > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
