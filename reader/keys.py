"""The Redis key layout shared by the worker (writes) and the reader (reads).

Every key starts with `PREFIX`; bump its version when a stored format changes incompatibly, so
old and new processes never read each other's values. Symbols passed here are already
normalised by `reader.symbols.normalize_symbol`.
"""

from __future__ import annotations

from datetime import date

PREFIX = "mc:v1:"

# arq's queue for the worker's jobs: scheduled refreshes, and on-demand fetches (readers enqueue).
QUEUE = PREFIX + "queue"

# Pub/sub channel: the worker announces each on-demand fetch it finished (`reader.ondemand.Outcome`).
FETCHED = PREFIX + "fetched"

# Pub/sub channel: the worker announces every write of data keys, as it commits (refreshes and
# on-demand fetches alike): one message per write, a JSON array of the keys it stored (those a
# newer item already held are left out). What subscribers (the MCP server's resource
# subscriptions) learn that a newer value is there from.
STORED = PREFIX + "stored"

# arq's health check key, set by every running worker every `worker.settings.HEALTH_EVERY_S` (with a
# TTL a second longer): while it is absent, no worker is alive to run what a reader enqueues.
WORKER_HEALTH = PREFIX + "worker:health"

# Every worker process that wrote its own health key (`worker(worker_id)`) lately: a sorted set of
# worker id -> epoch seconds of its last write. A member whose key has expired is not alive.
WORKERS = PREFIX + "workers"


def worker(worker_id: str) -> str:
    """One worker process's own health key: a JSON `reader.models.WorkerHealth` (who it is, what it
    runs now), rewritten every health interval with a TTL of three; deleted when it stops cleanly."""
    return f"{WORKERS}:{worker_id}"


# The worker's calendar adjustments (a JSON `reader.models.PublishedCalendar`), which readers apply
# to the installed exchange calendar so that every market status agrees with the worker's schedule.
CALENDAR = PREFIX + "calendar"


# The schedule the fleet runs (a JSON `reader.telemetry.PublishedPlan`), published with the calendar.
PLAN = PREFIX + "plan"


def last_refresh(dataset: str) -> str:
    """The last refresh job of `dataset` that ended (any worker): a JSON `reader.telemetry.RefreshRecord`."""
    return f"{PREFIX}stats:refresh:{dataset}"


def upstream_day(provider: str, day: date) -> str:
    """One upstream's calls on one exchange-local day, counted by every worker: a hash whose fields
    are `reader.telemetry.UPSTREAM_DAY_FIELDS` (calls, status:<code>, fault:<kind>, waits, wait_s,
    minute:<HH:MM>), expiring 8 days after it was last written."""
    return f"{PREFIX}stats:upstream:{provider}:{day.isoformat()}"


def quote(symbol: str) -> str:
    """Latest quote of one symbol: a JSON `reader.models.Quote`."""
    return f"{PREFIX}quote:{symbol}"


def expirations(symbol: str) -> str:
    """Every listed expiration of an underlying: a JSON `reader.models.Expirations`."""
    return f"{PREFIX}expirations:{symbol}"


def chain(symbol: str, expiration: date) -> str:
    """One option chain (underlying, expiration): a JSON `reader.models.OptionChain`."""
    return f"{PREFIX}chain:{symbol}:{expiration.isoformat()}"


def chain_prefix(symbol: str) -> str:
    """`chain(symbol, d)` is this plus `d.isoformat()` (for server-side scripts)."""
    return f"{PREFIX}chain:{symbol}:"


def chain_index(symbol: str) -> str:
    """Which chains of an underlying are kept: a JSON `reader.models.ChainIndex`."""
    return f"{PREFIX}chains:{symbol}"


def history(symbol: str, interval: str) -> str:
    """Price bars of one symbol at one interval ("1d", "5m"...): a JSON `reader.models.PriceHistory`."""
    return f"{PREFIX}history:{symbol}:{interval}"


def indicators(symbol: str) -> str:
    """Latest technical indicators of one symbol: a JSON `reader.models.Indicators`."""
    return f"{PREFIX}indicators:{symbol}"


REFRESH_JOBS = PREFIX + "refresh:"
"""Every refresh job id (`refresh_job_id`, and its retries') starts with this."""


def refresh_job_id(dataset: str, slot: str, batch: str) -> str:
    """arq job id of one batch of a dataset for one slot (a refresh time, or a catch-up): the same
    on every worker, so a batch runs once per slot however many workers tick."""
    return f"{REFRESH_JOBS}{dataset}:{slot}:{batch}"


def refresh_job_parts(job_id: str) -> tuple[str, str] | None:
    """(dataset, slot) of a `refresh_job_id` or of a retry of one (`refresh_retry_job_id`); None
    for any other job id. The slot is as written: epoch seconds, or `catchup-<epoch ms>`."""
    if not job_id.startswith(REFRESH_JOBS):
        return None
    dataset, _, rest = job_id[len(REFRESH_JOBS) :].partition(":")
    return dataset, rest.split(":", 1)[0]


def last_slot(dataset: str) -> str:
    """The last refresh time (epoch seconds) whose batches of `dataset` were enqueued."""
    return f"{PREFIX}schedule:{dataset}:last_slot"


def batch_job(dataset: str, batch: str) -> str:
    """The id of the latest job of one batch, to tell whether it is still queued or running."""
    return f"{PREFIX}schedule:{dataset}:batch:{batch}"


def batch_claim(dataset: str, batch: str) -> str:
    """Held by a worker for the moment it checks and enqueues a batch (worker only): two workers
    catching up at once would otherwise both find its last job ended and both enqueue it."""
    return f"{PREFIX}schedule:claim:{dataset}:{batch}"


def catch_up() -> str:
    """Set by a worker that applied a config edit: the next tick, on any worker, catches up."""
    return f"{PREFIX}schedule:catch_up"


def skipped(dataset: str) -> str:
    """How many refreshes of `dataset` were skipped because the previous one of the batch had not ended."""
    return f"{PREFIX}stats:skipped:{dataset}"


FETCH_JOBS = PREFIX + "fetch:"
"""Every on-demand job id starts with this (the only job ids a reader's Redis user may write)."""


def fetch_job_id(dataset: str, symbol: str, option: str) -> str:
    """arq job id of an on-demand fetch: the same in every process, so concurrent misses for the
    same (dataset, symbol, option) make one job."""
    return f"{FETCH_JOBS}{dataset}:{symbol}:{option}"


def fetch_jobs_of(dataset: str) -> str:
    """Every on-demand job id of `dataset` starts with this (a worker takes pending quote fetches
    together by it)."""
    return f"{FETCH_JOBS}{dataset}:"


def unknown(dataset: str, symbol: str, option: str = "") -> str:
    """Negative cache: the upstream has no `dataset` for `symbol` (a JSON `reader.ondemand.Unknown`);
    `option` tells apart what can be absent separately (an intraday bar length)."""
    return f"{PREFIX}unknown:{dataset}:{symbol}:{option}"


def demand(dataset: str, day: date) -> str:
    """How often each symbol of `dataset` was fetched on demand on one exchange day (a sorted set)."""
    return f"{PREFIX}demand:{dataset}:{day.isoformat()}"


def adopted(dataset: str, day: date) -> str:
    """Symbols asked for often enough on one exchange day to join the schedule of `dataset` (a set)."""
    return f"{PREFIX}adopted:{dataset}:{day.isoformat()}"


def kept(dataset: str) -> str:
    """The watchlist's symbols whose `dataset` the worker's schedule refreshes (a set; empty or
    absent when the dataset is not scheduled), as of the config it last started or reloaded."""
    return f"{PREFIX}kept:{dataset}"


def background_jobs(upstream: str) -> str:
    """The background refresh jobs of one upstream running in the fleet (worker only): a sorted set
    of job ids scored by the end of each one's lease, in ms on the Redis server's clock."""
    return f"{PREFIX}running:{upstream}"


def refresh_retry_job_id(first_job_id: str, attempt: int) -> str:
    """arq job id of the `attempt`th retry (1, 2, ...) of the refresh job `first_job_id` (a
    `refresh_job_id`), for the symbols of it that failed with a transient error."""
    return f"{first_job_id}:retry:{attempt}"


def upstream_faults(provider: str) -> str:
    """Faults of one upstream ("tradier", "polygon") seen by the workers: a hash of fault kind
    (`worker.incidents.FaultKind`: "server_error", "timeout", ...) -> count, never reset by them."""
    return f"{PREFIX}upstream:faults:{provider}"


def upstream_incident(provider: str) -> str:
    """The incident in progress at one upstream, if any: a hash of `started_at` (ISO 8601 UTC),
    `kind` and `error` (the first fault's); deleted when the upstream answers well again."""
    return f"{PREFIX}upstream:incident:{provider}"


def rate_budget(provider: str) -> str:
    """The fleet's rate budget of one upstream ("tradier", "polygon"): a float string, the GCRA's
    theoretical arrival time of its next request (seconds since 2025-01-01 by the Redis server's
    clock, throttled-py's format); written by the workers only, expiring when the budget is full."""
    return f"{PREFIX}rate:{provider}"


def rate_pause(provider: str) -> str:
    """Set while one upstream has announced that its window is spent (a 429, or no request left):
    the token of the worker gate that heard it, with a TTL of the time left; every worker waits it out."""
    return f"{PREFIX}rate:{provider}:pause"
