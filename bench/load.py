"""Benchmark: reads under write load, and proof that no read mixes two writes.

A real worker (`python -m worker run`) refreshes a watchlist of 500 symbols from the emulator as
fast as it can: quotes of all 500 (5 batches of 100) and the chains of the next 3 expirations of
30 of them, every cadence 1 s (the shortest there is), the worker's Tradier rate equal to the
emulator's allowance (`--rate-per-min`), so only the machine holds it back (and a batch waits for
its previous job to end). Daily bars and their indicators are fetched once, in the first pass,
which the bench waits for (the expirations of the symbols without chains, which their chains jobs
look up once, trickle in later). Then 4 reader processes read, one call at a time each, in turn:
`Reader.quote` of a random symbol, `Reader.chain` (the nearest) and `Reader.bundle` (the quote,
every chain from today on, the indicators) of a random optionable one, and `Reader.quotes` of 20
symbols of one quote batch. They read for 30 s with the worker refreshing; the baseline is the
same reads by the same processes for 6 s with the worker paused (SIGSTOP), interleaved in 5
rounds so that drift hits both alike. Prints reads/s, p50/p99 and errors of each call (errors
must be 0: an exception, or a part of an answer that is an error), what the worker stored
meanwhile, and the torn-read check.

No torn read: what the worker writes together, a reader sees together.
- A quote batch is one upstream answer, stamped with one `fetched_at`, stored by one script call:
  the quotes of one batch in a `Reader.quotes` answer must all carry the same stamp.
- A symbol's chains are fetched one expiration at a time (each with its own `fetched_at`) and
  stored together, with their index, by one script call; the jobs of a batch never overlap, so
  every chain of a write was fetched after every chain of the write before. Each bundle gives a
  set of (expiration, fetched_at); over all bundles of a symbol, two different sets must share no
  chain, and their spans of `fetched_at` must not interleave. A bundle that mixed two writes
  breaks both rules against the bundles that read either write whole (each write is read by
  dozens); of two sets in conflict, the one fetched over the longer span is the torn one.
(`Reader.quote` and `Reader.chain` answer one stored value each, written whole.) Both checks fail
when the store writes a batch key by key instead of in one script call.

The emulator, the worker and the readers run on one clock, shifted to a regular session
(Tuesday 2026-11-24 10:00 ET), so the figures do not depend on when the bench runs.

    python bench/load.py [--seconds 30] [--paused-seconds 6] [--rounds 5] [--readers 4]
                         [--symbols 500] [--optionable 30] [--url redis://...] [--logs DIR]
                         [--figures-json PATH]

Without --url it starts a private redis-server on a free port (and stops it). Exits 1 on any
error or torn read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _figures
from bench._figures import Figure, Target
from bench._process import start_logged
from devtools.redis_server import RedisServer, free_port, port_open
from emulator.market import WELL_KNOWN
from reader import Reader, keys
from reader.clock import ShiftedClock
from reader.errors import ReaderError
from reader.models import stamp
from worker.schedule import batches

REPO = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 ET: the session is open
API_KEY = "bench-key-not-a-secret"
RATE_PER_MIN = 60_000  # the emulator's allowance and the worker's rate: more than 2 cores can serve
QUOTE_BATCH = 100
QUOTES_PER_READ = 20
CHAIN_EXPIRATIONS = 3
CLOCK_TOLERANCE_S = 1.0
WARM_UP_TIMEOUT_S = 90.0
BARRIER_TIMEOUT_S = 120.0

OPS = ("quote", "chain", "bundle", "quotes")
LABELS = {
    "quote": "Reader.quote",
    "chain": "Reader.chain (nearest)",
    "bundle": "Reader.bundle (options, technical)",
    "quotes": f"Reader.quotes ({QUOTES_PER_READ} of one batch)",
}
EVERY_SECOND = {"pre": 1, "regular": 1, "post": 1, "closed": 1}


def watchlist(count: int) -> list[str]:
    """The well-known tickers, then made-up ones (the emulator lists any well-formed ticker)."""
    return [*WELL_KNOWN, *(f"L{i:03d}" for i in range(count))][:count]


def worker_config(symbols: list[str], optionable: list[str]) -> dict[str, Any]:
    """Quotes of every symbol and chains of the `optionable` ones as often as the worker can; daily
    bars and indicators once. The emulator computes each chain's Greeks the first time (~40 ms a
    chain) and each daily bar from its walk second by second (~1 ms a day): chains of 30 symbols
    and 10 days of bars keep the first pass under 20 s (hence the short indicator windows)."""
    return {
        "watchlist": symbols,
        "providers": {
            "tradier": {"rate_per_min": RATE_PER_MIN, "batch_size": QUOTE_BATCH, "max_concurrency": 8}
        },
        "datasets": {
            "quotes": {"cadence_s": EVERY_SECOND},
            "expirations": {"cadence_s": {"pre": 86_400}, "close_refresh": False},
            "chains": {
                "cadence_s": EVERY_SECOND,
                "expirations": 0,
                "groups": [{"symbols": optionable, "expirations": CHAIN_EXPIRATIONS, "max_days": 60}],
            },
            "history": {"daily": {"cadence_s": {}, "lookback_days": 10}, "intraday": None},
            "indicators": {"source": "computed", "sma": [5], "ema": [3], "rsi": [5], "macd": [2, 4, 2]},
        },
        # No read finds a stale item, so no on-demand fetch joins the load (or writes out of turn).
        "cache": {"fresh_slack_s": 3600},
        # Bars first: two background jobs of an upstream run at once (`worker.admission`), and the
        # chains, due every second, would otherwise hold both slots for good, the bars never fetched.
        "priority": ["history", "indicators", "chains", "expirations", "intraday"],
        "worker": {"tick_s": 1, "max_jobs": 10, "shutdown_grace_s": 2},
    }


# --- the reader processes --------------------------------------------------------------------

ChainSet = tuple[tuple[str, str], ...]
"""The chains of one bundle: (expiration, `fetched_at` stamp) of each, nearest first."""


@dataclass
class Tally:
    """What one process saw of one kind of call, or of torn quote batches, in one phase."""

    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    stale: int = 0
    examples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.examples) < 3:
            self.examples.append(what)

    def add(self, other: Tally) -> None:
        self.latencies_s += other.latencies_s
        self.errors += other.errors
        self.stale += other.stale
        self.examples = (self.examples + other.examples)[:3]


@dataclass
class PhaseResult:
    """What the reader processes saw in one phase (each sends its own; the parent adds them up)."""

    elapsed_s: float = 0.0
    tallies: dict[str, Tally] = field(default_factory=lambda: {op: Tally() for op in OPS})
    chain_sets: dict[str, Counter[ChainSet]] = field(default_factory=dict)
    torn_quotes: Tally = field(default_factory=Tally)

    def add(self, other: PhaseResult) -> None:
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        for op, tally in other.tallies.items():
            self.tallies[op].add(tally)
        for symbol, sets in other.chain_sets.items():
            self.chain_sets.setdefault(symbol, Counter()).update(sets)
        self.torn_quotes.add(other.torn_quotes)

    def total(self) -> Tally:
        every = Tally()
        for tally in self.tallies.values():
            every.add(tally)
        return every


Segment = tuple[str, float]
"""A stretch of reading: "refreshing" or "paused" (the worker), and for how many seconds."""


@dataclass(frozen=True)
class ReadPlan:
    """What each reader process reads, from where, on which clock, and in which segments."""

    url: str
    offset_s: float
    symbols: list[str]
    optionable: list[str]
    segments: tuple[Segment, ...]


def _reader_process(number: int, plan: ReadPlan, barrier: Any, out: Any) -> None:
    asyncio.run(_read(number, plan, barrier, out))


async def _read(number: int, plan: ReadPlan, barrier: Any, out: Any) -> None:
    """Wait for the cache to be filled, warm up, then read through each segment, in step with the
    other processes and the parent (which pauses or resumes the worker between two barriers), and
    send what was seen, by the worker's state."""
    rng = random.Random(number)  # noqa: S311 - picks symbols to read
    symbols, optionable = plan.symbols, plan.optionable
    quote_batches = batches(symbols, QUOTE_BATCH)
    results = {state: PhaseResult() for state, _ in plan.segments}
    # wait_s=0: a miss (there should be none) is an error at once, not a wait for an on-demand fetch.
    async with Reader(plan.url, clock=ShiftedClock(plan.offset_s), wait_s=0) as reader:
        calls = {
            "quote": lambda: reader.quote(rng.choice(symbols)),
            "chain": lambda: reader.chain(rng.choice(optionable)),
            "bundle": lambda: reader.bundle(rng.choice(optionable), options=True, technical=True),
            "quotes": lambda: reader.quotes(rng.sample(rng.choice(quote_batches), QUOTES_PER_READ)),
        }
        barrier.wait(BARRIER_TIMEOUT_S)  # the cache is filled
        for op in OPS * 20:  # connect, load the script, warm the caches: not measured
            with suppress(Exception):  # counted when measured
                await calls[op]()
        for state, seconds in plan.segments:
            barrier.wait(BARRIER_TIMEOUT_S)  # everyone is done with the previous segment
            barrier.wait(BARRIER_TIMEOUT_S)  # the worker is running or paused
            await _read_for(seconds, calls, results[state])
        barrier.wait(BARRIER_TIMEOUT_S)
    out.put(results)


async def _read_for(
    seconds: float, calls: dict[str, Callable[[], Awaitable[Any]]], result: PhaseResult
) -> None:
    """Call each kind of read in turn, one at a time, for `seconds`; add what was seen to `result`."""
    perf = time.perf_counter
    started = perf()
    deadline = started + seconds
    turn = 0
    while perf() < deadline:
        op = OPS[turn % len(OPS)]
        turn += 1
        tally = result.tallies[op]
        before = perf()
        try:
            answer = await calls[op]()
        except Exception as e:  # noqa: BLE001 - every failure counts, whatever its kind
            tally.latencies_s.append(perf() - before)
            tally.error(f"{type(e).__name__}: {e}")
            continue
        tally.latencies_s.append(perf() - before)
        _check(op, answer, tally, result)
    result.elapsed_s += perf() - started


def _check(op: str, answer: Any, tally: Tally, result: PhaseResult) -> None:
    """Count the error parts and stale items of `answer`; note what the torn-read check needs."""
    if op == "bundle":
        chains = answer.chains if isinstance(answer.chains, tuple) else (answer.chains,)
        parts = [answer.quote, answer.indicators, *chains]
    elif op == "quotes":
        parts = list(answer.values())
    else:
        parts = [answer]
    for part in parts:
        if isinstance(part, ReaderError) or part is None:
            tally.error(f"{op}: {type(part).__name__}: {part}")
        elif part.stale:
            tally.stale += 1
    if op == "bundle" and isinstance(answer.chains, tuple):
        chain_set = tuple((c.expiration.isoformat(), stamp(c.fetched_at)) for c in answer.chains)
        result.chain_sets.setdefault(answer.symbol, Counter())[chain_set] += 1
    elif op == "quotes":
        stamps = sorted({stamp(q.fetched_at) for q in parts if not isinstance(q, ReaderError)})
        if len(stamps) > 1:  # one batch: one upstream answer, one write, one stamp
            result.torn_quotes.error(f"quotes of one batch fetched at {', '.join(stamps)}")


# --- the torn-read check on chains -----------------------------------------------------------


@dataclass
class ChainCheck:
    """The chain sets of every bundle, checked against each other per symbol."""

    reads: int = 0
    writes: int = 0
    torn_reads: int = 0
    examples: list[str] = field(default_factory=list)

    def torn(self, what: str) -> None:
        if len(self.examples) < 3:
            self.examples.append(what)


def check_chain_sets(observed: dict[str, Counter[ChainSet]]) -> ChainCheck:
    """Two different chain sets of one symbol must share no chain (every write stamps each of its
    chains anew) and their spans of `fetched_at` must not interleave (the writes of a symbol
    follow one another). Of two sets that break either rule, the one whose chains were fetched
    furthest apart is counted as torn: a write's chains are fetched in one job, a torn read's in two."""
    check = ChainCheck()
    for symbol, sets in observed.items():
        check.reads += sets.total()
        check.writes += len(sets)
        conflicts: set[tuple[ChainSet, ChainSet]] = set()
        owner: dict[tuple[str, str], ChainSet] = {}
        for chain_set in sets:
            for chain in chain_set:
                other = owner.setdefault(chain, chain_set)
                if other != chain_set:
                    conflicts.add((min(other, chain_set), max(other, chain_set)))
        latest: tuple[str, ChainSet] | None = None  # the set that ends last among those seen so far
        for first, last, chain_set in sorted(
            (min(s for _, s in cs), max(s for _, s in cs), cs) for cs in sets
        ):
            if latest is not None and first <= latest[0]:
                conflicts.add((min(latest[1], chain_set), max(latest[1], chain_set)))
            if latest is None or last > latest[0]:
                latest = (last, chain_set)
        torn: set[ChainSet] = set()
        for pair in sorted(conflicts):
            widths = [_width_s(chain_set) for chain_set in pair]
            blamed = [cs for cs, width in zip(pair, widths, strict=True) if width == max(widths)]
            if blamed[0] in torn:
                continue  # one example per torn set
            torn.update(blamed)
            check.torn(
                f"{symbol}: {_show(blamed[0])}, fetched over {max(widths):.3f} s, mixes writes; "
                f"it conflicts with {_show(pair[1] if blamed[0] == pair[0] else pair[0])}"
            )
        check.torn_reads += sum(sets[chain_set] for chain_set in torn)
    return check


def _width_s(chain_set: ChainSet) -> float:
    """Seconds between the first and the last fetch of the chains of `chain_set`."""
    times = [datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ") for _, at in chain_set]
    return (max(times) - min(times)).total_seconds()


def _show(chain_set: ChainSet) -> str:
    return "{" + ", ".join(f"{expiration} at {at[11:23]}" for expiration, at in chain_set) + "}"


# --- the processes ---------------------------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own emulator on localhost
        return json.load(response)


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text().splitlines()[-10:])
            raise SystemExit(f"bench: {what} did not happen within {timeout_s:g} s; {log.name} ends:\n{tail}")
        time.sleep(0.1)


def _wait_for_first_pass(
    client: redis.Redis, worker: subprocess.Popen[bytes], symbols: list[str], optionable: list[str], log: Path
) -> float:
    """Seconds until the worker has stored its whole first pass: until then its history jobs hold
    the job slots that the tick needs too (so nothing would be refreshed while the readers read)."""
    wanted = {
        "quotes": [keys.quote(s) for s in symbols],
        "indicators": [keys.indicators(s) for s in symbols],
        "chains": [keys.chain_index(s) for s in optionable],
    }
    started = time.monotonic()
    while True:
        found = {name: client.exists(*names) for name, names in wanted.items()}
        if all(found[name] == len(names) for name, names in wanted.items()):
            return time.monotonic() - started
        if worker.poll() is not None or time.monotonic() - started > WARM_UP_TIMEOUT_S:
            counts = ", ".join(
                f"{name} of {found[name]}/{len(names)} symbols" for name, names in wanted.items()
            )
            tail = "\n".join(log.read_text().splitlines()[-10:])
            state = "exited" if worker.poll() is not None else f"is not done after {WARM_UP_TIMEOUT_S:g} s"
            raise SystemExit(f"bench: the worker's first pass {state}: {counts}; {log.name} ends:\n{tail}")
        time.sleep(0.1)


def _cpu_s(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds `process` has used so far, user and system (Linux)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _upstream_calls(emulator_url: str) -> Counter[tuple[str, str]]:
    """Calls the emulator has served, by (endpoint, status)."""
    calls = _get_json(f"{emulator_url}/_emulator/stats")["calls"]
    return Counter(
        {(path.rsplit("/", 1)[-1], status): n for path, by in calls.items() for status, n in by.items()}
    )


def _check_emulator_clock(emulator_url: str, clock: ShiftedClock) -> None:
    """The emulator must read the clock that the worker (same offset) and the readers read."""
    answer = _get_json(f"{emulator_url}/_emulator/clock")
    gap_s = abs((datetime.fromisoformat(answer["now"]) - clock()).total_seconds())
    if answer["offset_s"] is None or gap_s > CLOCK_TOLERANCE_S:
        raise SystemExit(f"bench: the emulator reads {answer['now']}, the readers {clock().isoformat()}")


@dataclass
class Figures:
    symbols: int
    optionable: int
    readers: int
    paused: PhaseResult  # the baseline
    load: PhaseResult  # the worker refreshing
    chains: ChainCheck
    upstream: Counter[tuple[str, str]]  # calls during the load, by (endpoint, status)
    cpu_s: dict[str, float]  # CPU seconds of the worker and of the emulator during the load
    failed_refreshes: list[str]  # the worker's log lines
    first_pass_s: float
    rounds: int


def measure(
    url: str,
    symbols: list[str],
    optionable: list[str],
    readers: int,
    segments: tuple[Segment, ...],
    logs: Path,
) -> Figures:
    """Start the emulator and the worker, wait for the first pass, then read through the segments,
    pausing the worker (SIGSTOP) for the "paused" ones."""
    clock = ShiftedClock.starting_at(AT)
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    (logs / "config.yaml").write_text(json.dumps(worker_config(symbols, optionable)))  # JSON is YAML
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(readers + 1), context.Queue()
    plan = ReadPlan(url, clock.offset_s, symbols, optionable, segments)
    with ExitStack() as stack:
        emulator_args = ["-m", "emulator", "--port", str(port), "--rate-per-min", str(RATE_PER_MIN)]
        emulator = start_logged(stack, emulator_args, clock.env(), logs / "emulator.log")
        _wait_for(lambda: port_open(port), 10, "the emulator's start", logs / "emulator.log")
        _check_emulator_clock(emulator_url, clock)
        client = stack.enter_context(redis.Redis.from_url(url))
        client.flushall()
        env = {"REDIS_URL": url, "TRADIER_BASE_URL": emulator_url, "TRADIER_API_KEY": API_KEY, **clock.env()}
        run = ["-m", "worker", "run", "--config", str(logs / "config.yaml"), "--log-level", "INFO"]
        worker = start_logged(stack, run, env, logs / "worker.log")
        children = [
            context.Process(target=_reader_process, args=(n, plan, barrier, out)) for n in range(readers)
        ]
        for child in children:
            child.start()  # they import while the worker fills the cache
            stack.callback(_end, child)
        stack.callback(barrier.abort)  # first, on the way out: frees readers still waiting
        first_pass_s = _wait_for_first_pass(client, worker, symbols, optionable, logs / "worker.log")
        barrier.wait(BARRIER_TIMEOUT_S)  # the readers warm up
        calls_before = _upstream_calls(emulator_url)
        cpu_before = {"worker": _cpu_s(worker), "emulator": _cpu_s(emulator)}
        for state, _ in segments:
            barrier.wait(BARRIER_TIMEOUT_S)
            worker.send_signal(signal.SIGCONT if state == "refreshing" else signal.SIGSTOP)
            barrier.wait(BARRIER_TIMEOUT_S)
        barrier.wait(BARRIER_TIMEOUT_S)
        worker.send_signal(signal.SIGCONT)
        upstream = _upstream_calls(emulator_url) - calls_before
        cpu_s = {
            "worker": _cpu_s(worker) - cpu_before["worker"],
            "emulator": _cpu_s(emulator) - cpu_before["emulator"],
        }
        results = _collect(out, readers)
    failed = [
        line for line in (logs / "worker.log").read_text().splitlines() if "refresh.batch_failed" in line
    ]
    observed: dict[str, Counter[ChainSet]] = {}
    for result in results.values():
        for symbol, sets in result.chain_sets.items():
            observed.setdefault(symbol, Counter()).update(sets)
    return Figures(
        len(symbols),
        len(optionable),
        readers,
        results["paused"],
        results["refreshing"],
        check_chain_sets(observed),
        upstream,
        cpu_s,
        failed,
        first_pass_s,
        len(segments) // 2,
    )


def _collect(out: Any, readers: int) -> dict[str, PhaseResult]:
    every: dict[str, PhaseResult] = {}
    for _ in range(readers):
        for state, result in out.get(timeout=BARRIER_TIMEOUT_S).items():
            every.setdefault(state, PhaseResult()).add(result)
    return every


def _end(child: Any) -> None:
    child.join(timeout=10)
    if child.is_alive():
        child.terminate()
        child.join()


# --- the report ------------------------------------------------------------------------------


def _percentile(samples: list[float], pct: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1]


def _cells(tally: Tally, elapsed_s: float) -> str:
    samples = tally.latencies_s
    return (
        f"{len(samples) / elapsed_s:8.0f} {_percentile(samples, 50) * 1e6:7.0f} "
        f"{_percentile(samples, 99) * 1e6:7.0f} {tally.errors:6d}"
    )


def report(f: Figures) -> int:
    """Print the figures; returns the exit status: 1 on any error or torn read."""
    paused, load = f.paused, f.load
    print(
        f"load: {f.symbols} symbols ({f.optionable} with chains of {CHAIN_EXPIRATIONS} expirations), "
        f"{f.readers} reader processes, {f.rounds} rounds of worker refreshing / paused"
    )
    print(_worker_lines(f))
    header = f"{'reads/s':>8} {'p50 us':>7} {'p99 us':>7} {'errors':>6}"
    print(
        f"{'':38} {f'worker paused ({paused.elapsed_s:.0f} s)':^31}   "
        f"{f'worker refreshing ({load.elapsed_s:.0f} s)':^31}"
    )
    print(f"{'':38} {header}   {header}")
    rows = [(LABELS[op], paused.tallies[op], load.tallies[op]) for op in OPS]
    paused_all, load_all = paused.total(), load.total()
    for name, before, during in [*rows, ("all reads", paused_all, load_all)]:
        print(f"{name:38} {_cells(before, paused.elapsed_s)}   {_cells(during, load.elapsed_s)}")
    rate = (len(load_all.latencies_s) / load.elapsed_s) / (len(paused_all.latencies_s) / paused.elapsed_s)
    p50, p99 = (
        _percentile(load_all.latencies_s, q) / _percentile(paused_all.latencies_s, q) for q in (50, 99)
    )
    print(f"{'refreshing / paused (the baseline)':38} {'':31}   {rate:8.2f} {p50:7.2f} {p99:7.2f}")
    torn_quotes = paused.torn_quotes.errors + load.torn_quotes.errors
    quote_reads = len(paused.tallies["quotes"].latencies_s) + len(load.tallies["quotes"].latencies_s)
    chains = f.chains
    print(
        f"torn reads: {chains.torn_reads} of {chains.reads} bundles (they saw {chains.writes} chain "
        f"writes of {len(load.chain_sets)} symbols), {torn_quotes} of {quote_reads} quote batches"
    )
    print(f"stale items read: {paused_all.stale + load_all.stale}")
    examples = [*chains.examples, *load.torn_quotes.examples, *load_all.examples, *paused_all.examples]
    examples += [f"worker: {line.split(' ', 4)[-1]}" for line in f.failed_refreshes[:2]]
    for example in examples[:6]:
        print(f"  e.g. {example}")
    errors, torn = paused_all.errors + load_all.errors, chains.torn_reads + torn_quotes
    verdict = "ok" if errors == 0 and torn == 0 else "FAILED"
    print(f"errors {errors}, torn reads {torn}: {verdict}")
    return 0 if verdict == "ok" else 1


def figures(f: Figures) -> list[Figure]:
    """Reads/s and p50 of all reads while the worker refreshes, beside the same reads with it
    paused; errors and torn reads (target: none)."""
    paused, load = f.paused.total(), f.load.total()
    torn = f.chains.torn_reads + f.paused.torn_quotes.errors + f.load.torn_quotes.errors
    return [
        Figure(
            "reads/s under refreshes (all reads)",
            round(len(load.latencies_s) / f.load.elapsed_s),
            "reads/s",
            round(len(paused.latencies_s) / f.paused.elapsed_s),
            "the worker paused",
        ),
        Figure(
            "read p50 under refreshes (all reads)",
            _percentile(load.latencies_s, 50) * 1e6,
            "us",
            _percentile(paused.latencies_s, 50) * 1e6,
            "the worker paused",
        ),
        Figure(
            "errors and torn reads under refreshes",
            paused.errors + load.errors + torn,
            "",
            target=Target(0, of="value"),
        ),
    ]


def _worker_lines(f: Figures) -> str:
    """How long the first pass took; how often the worker stored each batch while the readers
    read, and what that cost."""
    seconds = f.load.elapsed_s
    served = Counter({endpoint: n for (endpoint, status), n in f.upstream.items() if status == "200"})
    every_batch = _every(seconds, served["quotes"] / -(-f.symbols // QUOTE_BATCH))
    every_chain = _every(seconds, served["chains"] / (f.optionable * CHAIN_EXPIRATIONS))
    calls: Counter[str] = Counter()
    for (endpoint, _), n in f.upstream.items():
        calls[endpoint] += n
    per_s = ", ".join(f"{endpoint} {n / seconds:.1f}" for endpoint, n in calls.most_common())
    throttled = sum(n for (_, status), n in f.upstream.items() if status == "429")
    cpu = ", ".join(f"{name} {used / seconds:.0%}" for name, used in f.cpu_s.items())
    return (
        f"worker: first pass {f.first_pass_s:.1f} s; then, while the readers read, it stored each quote "
        f"batch every {every_batch}\n  and each symbol's chains every {every_chain}; upstream calls/s: "
        f"{per_s}; 429s: {throttled};\n  failed refreshes: {len(f.failed_refreshes)}; "
        f"CPU used (of one core): {cpu}"
    )


def _every(seconds: float, count: float) -> str:
    return f"{seconds / count:.1f} s" if count else f"> {seconds:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="reading while the worker refreshes")
    parser.add_argument("--paused-seconds", type=float, default=6.0, help="reading with the worker paused")
    parser.add_argument("--rounds", type=int, default=5, help="the reads alternate this many times")
    parser.add_argument("--readers", type=int, default=4, help="reader processes")
    parser.add_argument("--symbols", type=int, default=500, help="watchlist size")
    parser.add_argument(
        "--optionable",
        type=int,
        default=30,
        help=f"symbols with chains ({CHAIN_EXPIRATIONS} expirations each)",
    )
    parser.add_argument("--url", help="an existing Redis, which is flushed (default: start a private one)")
    parser.add_argument(
        "--logs", type=Path, help="keep the worker's config and log, and the emulator's, here"
    )
    parser.add_argument("--figures-json", type=Path, help="also write the headline figures here (JSON)")
    args = parser.parse_args(argv)
    symbols = watchlist(args.symbols)
    optionable = sorted(symbols)[: args.optionable]  # the first batches of each dataset: filled first
    with ExitStack() as stack:
        url = args.url or stack.enter_context(RedisServer()).url
        logs = args.logs or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        logs.mkdir(parents=True, exist_ok=True)
        rounds = max(args.rounds, 1)
        segments = (("refreshing", args.seconds / rounds), ("paused", args.paused_seconds / rounds)) * rounds
        measured = measure(url, symbols, optionable, args.readers, segments, logs)
    status = report(measured)
    if args.figures_json:
        _figures.write(args.figures_json, figures(measured))
    return status


if __name__ == "__main__":
    sys.exit(main())
