"""`python -m worker status`: the live worker processes and what each runs now, read from Redis alone.

Each worker writes its own health key (`worker.presence`); this lists those that have not expired,
as a table or (`--json`) as `{"workers": [WorkerHealth fields + up_s + beat_age_s, ...]}`. It
needs only read access (the reader's Redis user may run it). With `--self`, only the workers of
this host: the compose healthcheck of each worker container.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import cast

import redis
from pydantic import ValidationError

from reader import keys
from reader.clock import Clock, utc_now
from reader.redis_url import DEFAULT_REDIS_URL
from reader.telemetry import WorkerHealth
from worker.config import CONFIG_ENV, load_config, resolve_config_path

EXIT_NONE = 1
"""No worker is running (or Redis cannot be read)."""

COLUMNS = ("WORKER", "HOST", "PID", "UP", "BEAT", "DONE", "FAILED", "RETRIED", "RUNNING")


def live_workers(client: redis.Redis) -> list[WorkerHealth]:
    """The workers whose health key has not expired, by host then pid. A key that does not parse
    (a newer worker's format) is skipped. Raises redis-py's errors if Redis cannot be read."""
    ids = [member.decode() for member in cast(list[bytes], client.zrange(keys.WORKERS, 0, -1))]
    if not ids:
        return []
    workers = []
    for raw in cast(list[bytes | None], client.mget([keys.worker(worker_id) for worker_id in ids])):
        if raw is None:
            continue  # expired: the process died without deleting it
        try:
            workers.append(WorkerHealth.model_validate_json(raw))
        except ValidationError:
            continue
    return sorted(workers, key=lambda worker: (worker.host, worker.pid, worker.worker_id))


def duration(seconds: float) -> str:
    """`seconds` for people: "9s", "3m05s", "2h03m", "4d02h" (negative counts as 0)."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _running(worker: WorkerHealth, now: datetime) -> str:
    jobs = [
        f"{job.function}:{job.symbols} {duration((now - job.started_at).total_seconds())}"
        for job in worker.jobs
    ]
    return ", ".join(jobs) or "-"


def table(workers: list[WorkerHealth], now: datetime) -> str:
    """Aligned columns, one line per worker, then a total; "no worker is running" if none.
    RUNNING lists each job as "<function>:<symbols> <age>"."""
    if not workers:
        return "no worker is running (no worker health key in Redis)"
    rows = [COLUMNS] + [
        (
            worker.worker_id,
            worker.host,
            str(worker.pid),
            duration((now - worker.started_at).total_seconds()),
            duration((now - worker.beat_at).total_seconds()) + " ago",
            str(worker.jobs_complete),
            str(worker.jobs_failed),
            str(worker.jobs_retried),
            _running(worker, now),
        )
        for worker in workers
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    running = sum(len(worker.jobs) for worker in workers)
    lines.append(f"{_count(len(workers), 'worker')} running, {_count(running, 'job')}")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def as_json(workers: list[WorkerHealth], now: datetime) -> str:
    """`{"workers": [...]}`: each worker's health key, plus `up_s` and `beat_age_s` as of `now`."""
    return json.dumps(
        {
            "workers": [
                {
                    **worker.model_dump(mode="json"),
                    "up_s": round((now - worker.started_at).total_seconds(), 3),
                    "beat_age_s": round((now - worker.beat_at).total_seconds(), 3),
                }
                for worker in workers
            ]
        },
        indent=2,
    )


def redis_url(config: str | None) -> str:
    """`REDIS_URL`, else the config file's `redis_url` (`--config`, `MARKETCACHE_CONFIG`, else
    ./config.yaml), else the local default when no config file was named and ./config.yaml is
    absent. Raises `worker.errors.ConfigError` for a named file that cannot be read or is invalid."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    path = resolve_config_path(config)
    if config is None and not os.environ.get(CONFIG_ENV) and not Path(path).exists():
        return DEFAULT_REDIS_URL
    return load_config(path).redis_url


def report(
    url: str, *, as_json_: bool = False, this_host: bool = False, clock: Clock = utc_now
) -> tuple[str, int]:
    """What `python -m worker status` prints about the Redis at `url` (the workers of this host
    only, with `this_host`), and its exit code: 0 if a worker is running, `EXIT_NONE` if none.
    Raises redis-py's errors (or `OSError`) if Redis cannot be read."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        workers = live_workers(client)
    finally:
        client.close()
    if this_host:
        host = socket.gethostname()
        workers = [worker for worker in workers if worker.host == host]
    now = clock()
    if as_json_:
        text = as_json(workers, now)
    elif this_host and not workers:
        text = f"no worker is running on this host ({socket.gethostname()})"
    else:
        text = table(workers, now)
    return text, 0 if workers else EXIT_NONE
