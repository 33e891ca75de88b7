"""The worker's Prometheus metrics: every definition, how each is recorded, and the HTTP server.

Served by `python -m worker run` when `metrics.port` is set (`MARKETCACHE_METRICS_PORT`), on
`metrics.host`, at any path (`/metrics`). Each worker process serves its own: Prometheus sums a
fleet (`sum by (dataset) (rate(marketcache_refreshes_total[5m]))`).

Families (names after Prometheus' conventions: base units, `_total` counters, `_seconds`):

- `marketcache_refreshes_total{dataset,outcome}` and `marketcache_refresh_duration_seconds{dataset,
  outcome}` (histogram): refresh jobs (scheduled and retries) that ended, by
  `reader.telemetry.RefreshOutcome` (ok: every symbol stored or known to have nothing; partial;
  failed: none, or the job raised), and their wall-clock duration, waits at the rate gate included.
- `marketcache_upstream_requests_total{provider,endpoint,status}`: upstream requests, `endpoint`
  the path template (`/v1/indicators/sma/{ticker}`: never a symbol), `status` the HTTP status of
  the answer, or when none came the fault kind (`timeout`, `connection`: sent; `circuit_open`,
  `rate_limited`: not sent, the breaker was open or the rate window would not reopen in time).
- `marketcache_rate_limit_waits_total{provider}` and `marketcache_rate_limit_wait_seconds_total
  {provider}`: requests that waited at the rate gate over 10 ms (the fleet budget, or a window the
  upstream announced spent), and the seconds they waited.
- `marketcache_circuit_state{provider,state}`: 1 for the state of the provider's breaker in this
  process (closed, open, half_open), 0 for the others; read at scrape time.
- `marketcache_freshness_lag_seconds{dataset}` (histogram): how late a refresh job stored its items
  after the refresh time it was due for (the slot in its job id; a retry counts from its first
  job's), observed once per job that stored any. Alert on its high quantiles against the cadence:
  a lag near a whole cadence means items go stale before they are refreshed.
- `marketcache_queue_depth{priority}`: jobs due in the queue that no worker has started, by
  priority: `on_demand`, `quotes`, then each background dataset; sampled at most once a second
  (`QUEUE_SAMPLE_EVERY_S`) by the daemon's poll loop, in one script call.
- `marketcache_on_demand_fetches_total{dataset,outcome}` and
  `marketcache_on_demand_fetch_duration_seconds{dataset}` (histogram): on-demand fetches by their
  published outcome (`reader.ondemand.Status`: stored, fresh, no_data, unknown, failed, ...), and
  the seconds from their enqueue (arq's enqueue time) to their outcome, queue wait included.

Metrics live in prometheus-client's default registry: one worker runs per process, and the default
registry also carries the process' own (`process_resident_memory_bytes`, CPU, open files) and
Python's GC counts, which tell a leak from a load. Counters are per process and start at 0.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIServer

import redis.asyncio
from arq.constants import in_progress_key_prefix
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reader import keys
from reader.jobs import DATASETS
from reader.telemetry import CircuitState, RefreshOutcome
from worker.errors import ConfigError
from worker.logs import fields

log = logging.getLogger(__name__)

# No `*_created` series beside every counter and histogram: a timestamp per label set that doubles
# the series and that Prometheus does not need to compute rates.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

CIRCUIT_STATES: tuple[CircuitState, ...] = ("closed", "open", "half_open")
PRIORITIES = ("on_demand", *DATASETS)
"""The labels of `marketcache_queue_depth`: on-demand fetches, quotes, then each background dataset."""

QUEUE_SAMPLE_EVERY_S = 1.0
"""The daemon samples the queue's depth at most this often (its poll runs 50 times a second)."""

REFRESHES = Counter(
    "marketcache_refreshes",
    "Refresh jobs (scheduled and retries) that ended, by dataset and outcome (ok, partial, failed).",
    ["dataset", "outcome"],
)
REFRESH_DURATION = Histogram(
    "marketcache_refresh_duration_seconds",
    "Wall-clock seconds of each refresh job, waits at the rate gate included.",
    ["dataset", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
UPSTREAM_REQUESTS = Counter(
    "marketcache_upstream_requests",
    "Upstream requests by provider, endpoint (path template) and status (HTTP status, else the "
    "fault kind: timeout, connection, circuit_open, rate_limited).",
    ["provider", "endpoint", "status"],
)
RATE_LIMIT_WAITS = Counter(
    "marketcache_rate_limit_waits",
    "Upstream requests that waited at the rate gate over 10 ms.",
    ["provider"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "marketcache_rate_limit_wait_seconds",
    "Seconds upstream requests waited at the rate gate (those over 10 ms).",
    ["provider"],
)
FRESHNESS_LAG = Histogram(
    "marketcache_freshness_lag_seconds",
    "How late a refresh job stored its items after the refresh time it was due for.",
    ["dataset"],
    buckets=(1, 2.5, 5, 10, 15, 30, 60, 120, 300, 900, 3600),
)
QUEUE_DEPTH = Gauge(
    "marketcache_queue_depth",
    "Jobs due in the queue and not started, by priority (on_demand, quotes, each background dataset).",
    ["priority"],
)
ON_DEMAND_FETCHES = Counter(
    "marketcache_on_demand_fetches",
    "On-demand fetches by dataset and published outcome.",
    ["dataset", "outcome"],
)
ON_DEMAND_DURATION = Histogram(
    "marketcache_on_demand_fetch_duration_seconds",
    "Seconds from an on-demand fetch's enqueue to its outcome (queue wait included).",
    ["dataset"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


def refresh_ended(dataset: str, outcome: RefreshOutcome, duration_s: float) -> None:
    REFRESHES.labels(dataset, outcome).inc()
    REFRESH_DURATION.labels(dataset, outcome).observe(max(duration_s, 0.0))


def refresh_slot(job_id: str | None, dataset: str) -> datetime | None:
    """The refresh time a refresh job was due for, from its id (`reader.keys.refresh_job_id`: epoch
    seconds, or `catchup-<epoch ms>`; a retry's id starts with its first job's); None otherwise."""
    refresh = keys.refresh_job_parts(job_id or "")
    if refresh is None or refresh[0] != dataset:
        return None
    slot = refresh[1]
    try:
        if slot.startswith("catchup-"):
            return datetime.fromtimestamp(int(slot.removeprefix("catchup-")) / 1000, tz=UTC)
        return datetime.fromtimestamp(int(slot), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def items_stored(dataset: str, job_id: str | None, stored_at: datetime) -> None:
    """A refresh job stored items at `stored_at` (the worker's clock): observe its lag."""
    slot = refresh_slot(job_id, dataset)
    if slot is not None:
        FRESHNESS_LAG.labels(dataset).observe(max((stored_at - slot).total_seconds(), 0.0))


def on_demand_ended(dataset: str, outcome: str, latency_s: float) -> None:
    ON_DEMAND_FETCHES.labels(dataset, outcome).inc()
    ON_DEMAND_DURATION.labels(dataset).observe(max(latency_s, 0.0))


def upstream_request(provider: str, endpoint: str, status: int | str) -> None:
    UPSTREAM_REQUESTS.labels(provider, endpoint_template(endpoint), str(status)).inc()


def rate_limit_wait(provider: str, wait_s: float) -> None:
    RATE_LIMIT_WAITS.labels(provider).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(provider).inc(wait_s)


_TEMPLATES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/v3/snapshot/options/[^/]+/[^/]+"), "/v3/snapshot/options/{underlying}/{contract}"),
    (re.compile(r"/v3/snapshot/options/[^/]+"), "/v3/snapshot/options/{underlying}"),
    (
        re.compile(r"/v2/aggs/ticker/[^/]+/range/[^/]+/[^/]+/[^/]+/[^/]+"),
        "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}",
    ),
    (re.compile(r"/v1/indicators/([a-z]+)/[^/]+"), r"/v1/indicators/\1/{ticker}"),
)
_WORD_SEGMENT = re.compile(r"[a-z][a-z0-9_-]*")


def endpoint_template(endpoint: str) -> str:
    """An upstream path as a label of few values: Polygon's paths that hold a symbol or a date as
    their template, any other segment that is not a lowercase word as `{}` (symbols are upper case)."""
    for pattern, template in _TEMPLATES:
        if pattern.fullmatch(endpoint):
            return pattern.sub(template, endpoint)
    return "/".join(s if not s or _WORD_SEGMENT.fullmatch(s) else "{}" for s in endpoint.split("/"))


# ARGV: queue, now ms (arq's scores are wall-clock ms), in-progress key prefix, on-demand job id
# prefix, refresh job id prefix. Returns name, count, ... of the due jobs not started.
_QUEUE_DEPTH = """
local counts = {}
local ids = redis.call('ZRANGEBYSCORE', ARGV[1], '-inf', ARGV[2])
for _, id in ipairs(ids) do
  local kind = nil
  if string.sub(id, 1, #ARGV[4]) == ARGV[4] then
    kind = 'on_demand'
  elseif string.sub(id, 1, #ARGV[5]) == ARGV[5] then
    kind = string.match(string.sub(id, #ARGV[5] + 1), '^[^:]+')
  end
  if kind and redis.call('EXISTS', ARGV[3] .. id) == 0 then counts[kind] = (counts[kind] or 0) + 1 end
end
local flat = {}
for kind, n in pairs(counts) do flat[#flat + 1] = kind; flat[#flat + 1] = n end
return flat
"""


async def sample_queue(client: redis.asyncio.Redis) -> dict[str, int]:
    """Count the queue's due jobs that no worker has started, by priority, into
    `marketcache_queue_depth` (one script call); returns the counts. Raises `redis.RedisError`."""
    args = [keys.QUEUE, str(int(time.time() * 1000)), in_progress_key_prefix, keys.FETCH_JOBS]
    flat = await client.eval(_QUEUE_DEPTH, 0, *args, keys.REFRESH_JOBS)  # type: ignore[misc]  # redis-py types it as a union
    pairs = zip(flat[::2], flat[1::2], strict=True)
    found = {(k.decode() if isinstance(k, bytes) else str(k)): int(n) for k, n in pairs}
    depth = {priority: found.get(priority, 0) for priority in PRIORITIES}
    for priority, count in depth.items():
        QUEUE_DEPTH.labels(priority).set(count)
    return depth


CircuitSource = Callable[[], Mapping[str, CircuitState]]
"""The breaker state of each upstream of this process (`worker.presence.circuit_states`), by name."""


class _Circuits(Collector):
    """`marketcache_circuit_state`, read from the live breakers at each scrape."""

    def __init__(self) -> None:
        self.source: CircuitSource | None = None

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "marketcache_circuit_state",
            "1 for the current state of the provider's breaker in this process (closed, open, "
            "half_open), 0 for the others.",
            labels=["provider", "state"],
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        source = self.source
        for provider, current in sorted((source() if source is not None else {}).items()):
            for name in CIRCUIT_STATES:
                family.add_metric([provider, name], 1.0 if name == current else 0.0)
        yield family


_CIRCUITS = _Circuits()
REGISTRY.register(_CIRCUITS)


def watch_circuits(source: CircuitSource) -> None:
    """Read the circuit states from `source` from now on (the worker of this process that started last)."""
    _CIRCUITS.source = source


def unwatch_circuits(source: CircuitSource) -> None:
    """Stop reading `source` (its worker stops), unless another has replaced it."""
    if _CIRCUITS.source is source:
        _CIRCUITS.source = None


def _fix(error: OSError) -> str:
    """What to change when the metrics cannot listen: a host not of this machine, else the port."""
    if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(error, socket.gaierror):
        return (
            "metrics.host (or MARKETCACHE_METRICS_HOST) must be an address of this machine: "
            "127.0.0.1 for this machine only, 0.0.0.0 for every interface"
        )
    return "choose a free metrics.port (or MARKETCACHE_METRICS_PORT), or null to serve none"


class MetricsServer:
    """prometheus-client's HTTP server in a daemon thread, on `host`:`port` (0: a free port, then
    `port` tells which); `close()` stops it."""

    def __init__(self, host: str, port: int) -> None:
        try:
            server, thread = start_http_server(port, addr=host)
        except OSError as e:
            raise ConfigError(
                f"metrics on {host}:{port}: cannot serve them ({e.strerror or e}); {_fix(e)}"
            ) from e
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.host = host
        self.port: int = server.server_port
        log.info("metrics.serving %s", fields(host=host, port=self.port, path="/metrics"))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __repr__(self) -> str:
        return f"<MetricsServer http://{self.host}:{self.port}/metrics>"
