"""Benchmark: latency of cache hits through the reader, against the floor under them and against
what most users would cache with instead.

- `Reader.quote` against a raw redis-py `GET` of the key plus `Quote.model_validate_json` of the
  same bytes (what any reader must do anyway, on an identical client; target: a p50 ratio of at
  most 1.3), and against a requests-cache hit (SQLite backend) of the same payload plus the same
  validation: the payload is served once by a local HTTP server, then every call is a cache hit.
- `Reader.quotes` of `--batch` (100) cached symbols against a raw `MGET` of their keys plus
  `Quote.model_validate_json` of each (target: a p50 ratio of at most 1.2).
All run in one process against the same redis-server, interleaved (hits in rounds of 50, batches
call by call) so that drift and the machine's other load hit them alike. Prints p50/p99 of each
and the ratios.

    python bench/reader_hit.py [--iterations 20000] [--requests-cache-iterations 2000]
                               [--batch 100] [--batch-iterations 1000] [--url redis://...]
                               [--check] [--figures-json PATH]

Without --url it starts a private redis-server on a free port (and stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis.asyncio
import requests_cache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _figures
from bench._figures import Figure, Target
from devtools.redis_server import RedisServer
from emulator.market import Market
from reader import Quote, Reader, keys

TARGET_RATIO = 1.3
TARGET_BATCH_RATIO = 1.2
ROUND = 50
BATCH_ROUND = 1  # call by call: in rounds of 10 the ratio read 0.05-0.1 higher on a busy machine
BATCH_WARM_UP = 20


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


class _Payload(BaseHTTPRequestHandler):
    """Answers every GET with the server's `payload` (a quote's JSON), as an upstream would."""

    def do_GET(self) -> None:
        body: bytes = self.server.payload  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class PayloadServer:
    """`payload` served on 127.0.0.1 by a thread, while the block runs; `url` is where."""

    def __init__(self, payload: bytes) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Payload)
        self._server.payload = payload  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/markets/quotes?symbols=AAPL"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PayloadServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@dataclass
class Samples:
    """Seconds per call of each path."""

    raw: list[float]
    reader: list[float]
    requests_cache: list[float]
    batch_raw: list[float]
    batch_reader: list[float]
    batch: int


def requests_cache_hits(payload: bytes, count: int, cache_dir: Path) -> list[float]:
    """Seconds per `CachedSession.get` (SQLite backend) of `payload` plus `Quote.model_validate_json`
    of its body; the first call, which fills the cache, is not counted; every other must be a hit."""
    samples = []
    perf = time.perf_counter
    with (
        PayloadServer(payload) as server,
        requests_cache.CachedSession(
            str(cache_dir / "http_cache"), backend="sqlite", expire_after=-1
        ) as session,
    ):
        first = session.get(server.url, timeout=5)
        first.raise_for_status()
        for _ in range(min(count, ROUND * 4)):  # warm up, as the others
            session.get(server.url, timeout=5)
        misses = 0
        for _ in range(count):
            started = perf()
            response = session.get(server.url, timeout=5)
            Quote.model_validate_json(response.content)
            samples.append(perf() - started)
            misses += not response.from_cache
    if misses:
        raise SystemExit(f"bench: {misses} of {count} requests-cache calls were not cache hits")
    return samples


async def measure(
    url: str, iterations: int, requests_cache_iterations: int, batch: int, batch_iterations: int
) -> Samples:
    quote = _sample_quote()
    key = keys.quote("AAPL")
    payload = quote.model_dump_json(exclude_none=True).encode()
    raw_client = redis.asyncio.Redis.from_url(url)
    await raw_client.set(key, payload)
    symbols = [f"B{i:03d}" for i in range(batch)]
    batch_keys = [keys.quote(s) for s in symbols]
    await raw_client.mset(
        {
            k: quote.model_copy(update={"symbol": s}).model_dump_json(exclude_none=True)
            for s, k in zip(symbols, batch_keys, strict=True)
        }
    )
    raw_s: list[float] = []
    reader_s: list[float] = []
    batch_raw_s: list[float] = []
    batch_reader_s: list[float] = []
    perf = time.perf_counter
    async with Reader(url) as reader:
        for _ in range(ROUND * 4):  # warm both connections and caches
            Quote.model_validate_json(await raw_client.get(key))
            await reader.quote("AAPL")
        for _ in range(max(iterations // ROUND, 1)):
            for _ in range(ROUND):
                started = perf()
                Quote.model_validate_json(await raw_client.get(key))
                raw_s.append(perf() - started)
            for _ in range(ROUND):
                started = perf()
                await reader.quote("AAPL")
                reader_s.append(perf() - started)
        for _ in range(BATCH_WARM_UP):
            [Quote.model_validate_json(raw) for raw in await raw_client.mget(batch_keys)]
            await reader.quotes(symbols)
        for _ in range(max(batch_iterations // BATCH_ROUND, 1)):
            for _ in range(BATCH_ROUND):
                started = perf()
                [Quote.model_validate_json(raw) for raw in await raw_client.mget(batch_keys)]
                batch_raw_s.append(perf() - started)
            for _ in range(BATCH_ROUND):
                started = perf()
                found = await reader.quotes(symbols)
                batch_reader_s.append(perf() - started)
        if sum(isinstance(q, Quote) for q in found.values()) != batch:
            raise SystemExit(f"bench: quotes() did not find the {batch} quotes stored: {found}")
    await raw_client.aclose()
    with tempfile.TemporaryDirectory() as cache_dir:
        cached_s = requests_cache_hits(payload, requests_cache_iterations, Path(cache_dir))
    return Samples(raw_s, reader_s, cached_s, batch_raw_s, batch_reader_s, batch)


def figures(samples: Samples) -> list[Figure]:
    """The headline figures: p50 of each path, in microseconds, beside its baseline."""
    us = {
        name: _percentile(getattr(samples, name), 50) * 1e6
        for name in ("raw", "reader", "requests_cache", "batch_raw", "batch_reader")
    }
    return [
        Figure(
            "reader hit p50: Reader.quote",
            us["reader"],
            "us",
            us["raw"],
            "raw GET + validation",
            Target(TARGET_RATIO),
        ),
        Figure(
            "reader hit p50: Reader.quote",
            us["reader"],
            "us",
            us["requests_cache"],
            "requests-cache SQLite hit + validation",
        ),
        Figure(
            f"batch read p50: quotes() of {samples.batch} cached",
            us["batch_reader"],
            "us",
            us["batch_raw"],
            f"raw MGET + validation of {samples.batch}",
            Target(TARGET_BATCH_RATIO),
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000, help="Reader.quote calls (and raw GETs)")
    parser.add_argument(
        "--requests-cache-iterations", type=int, default=2_000, help="requests-cache hits (slower)"
    )
    parser.add_argument("--batch", type=int, default=100, help="symbols of one quotes() call")
    parser.add_argument("--batch-iterations", type=int, default=1_000, help="quotes() calls (and MGETs)")
    parser.add_argument("--url", help="an existing Redis (default: start a private one)")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if a p50 ratio misses its target ({TARGET_RATIO}, batch {TARGET_BATCH_RATIO})",
    )
    parser.add_argument("--figures-json", type=Path, help="also write the headline figures here (JSON)")
    args = parser.parse_args(argv)

    server = None if args.url else RedisServer().start()
    try:
        samples = asyncio.run(
            measure(
                args.url or server.url,  # type: ignore[union-attr]
                args.iterations,
                args.requests_cache_iterations,
                args.batch,
                args.batch_iterations,
            )
        )
    finally:
        if server is not None:
            server.stop()

    print(
        f"reader hit, {len(samples.reader)} calls each ({len(samples.requests_cache)} requests-cache hits), "
        f"interleaved in rounds of {ROUND}"
    )
    print(f"{'':44} {'p50 us':>9} {'p99 us':>9}")
    paths = (
        ("raw GET + model_validate_json", samples.raw),
        ("Reader.quote", samples.reader),
        ("requests-cache SQLite hit + validate", samples.requests_cache),
    )
    for name, taken in paths:
        print(f"{name:44} {_percentile(taken, 50) * 1e6:9.1f} {_percentile(taken, 99) * 1e6:9.1f}")
    ratio_p50, ratio_p99 = (_percentile(samples.reader, q) / _percentile(samples.raw, q) for q in (50, 99))
    verdict = "ok" if ratio_p50 <= TARGET_RATIO else "OVER TARGET"
    print(
        f"{'ratio Reader / raw':44} {ratio_p50:9.2f} {ratio_p99:9.2f}   "
        f"target p50 <= {TARGET_RATIO}: {verdict}"
    )
    cached_p50, cached_p99 = (
        _percentile(samples.reader, q) / _percentile(samples.requests_cache, q) for q in (50, 99)
    )
    print(f"{'ratio Reader / requests-cache':44} {cached_p50:9.2f} {cached_p99:9.2f}")
    n = samples.batch
    print(
        f"batch read, quotes() of {n} cached symbols, {len(samples.batch_reader)} calls each, "
        "interleaved call by call"
    )
    print(f"{'':44} {'p50 us':>9} {'p99 us':>9}")
    for name, taken in (
        (f"raw MGET + model_validate_json of {n}", samples.batch_raw),
        (f"Reader.quotes ({n})", samples.batch_reader),
    ):
        print(f"{name:44} {_percentile(taken, 50) * 1e6:9.1f} {_percentile(taken, 99) * 1e6:9.1f}")
    batch_p50, batch_p99 = (
        _percentile(samples.batch_reader, q) / _percentile(samples.batch_raw, q) for q in (50, 99)
    )
    batch_verdict = "ok" if batch_p50 <= TARGET_BATCH_RATIO else "OVER TARGET"
    print(
        f"{'ratio Reader.quotes / raw':44} {batch_p50:9.2f} {batch_p99:9.2f}   "
        f"target p50 <= {TARGET_BATCH_RATIO}: {batch_verdict}"
    )
    if args.figures_json:
        _figures.write(args.figures_json, figures(samples))
    over = ratio_p50 > TARGET_RATIO or batch_p50 > TARGET_BATCH_RATIO
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
