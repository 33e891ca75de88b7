"""`python -m worker status`: the fleet at a glance, read from Redis alone.

The market phase, each dataset's items (fresh, stale, missing) and last refresh, each upstream's
calls today, the queue and the live workers (`worker.survey` reads them), as tables
(`worker.status_view`) or `--json` (one document: `worker.snapshot.Snapshot`). It needs no config
file and only read access (the reader's Redis user may run it). With `--self`, only the workers
of this host: the compose healthcheck of each worker container (it loads no calendar).

Exit 1 when no worker is running, after printing the rest: the cache, the queue and the upstreams'
day tell how long ago the fleet stopped and what it left behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
from pathlib import Path

import redis
from rich.console import Console

from reader.clock import Clock, utc_now
from reader.redis_url import DEFAULT_REDIS_URL
from worker.config import CONFIG_ENV, load_config, resolve_config_path
from worker.snapshot import Snapshot
from worker.status_view import NO_WORKER, duration, render
from worker.survey import live_workers, take_snapshot, worker_views

__all__ = [
    "EXIT_NONE",
    "NO_WORKER",
    "as_json",
    "as_text",
    "duration",
    "live_workers",
    "redis_url",
    "report",
    "snapshot",
]

EXIT_NONE = 1
"""No worker is running (or Redis cannot be read)."""

PLAIN_WIDTH = 160
"""The width of the tables when the output is not a terminal (piped, a test): stable lines."""


def snapshot(url: str, *, this_host: bool = False, clock: Clock = utc_now) -> Snapshot:
    """The status of the Redis at `url` as of `clock()`; with `this_host`, only this host's
    workers (nothing else). Raises redis-py's errors (or `OSError`) if Redis cannot be read."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        now = clock()
        if not this_host:
            return take_snapshot(client, now)
        host = socket.gethostname()
        workers = [worker for worker in live_workers(client) if worker.host == host]
        return Snapshot(at=now, workers=worker_views(workers, now))
    finally:
        client.close()


def as_text(document: Snapshot, *, terminal: bool = False, width: int | None = None) -> str:
    """`document` as tables: with colour and the terminal's width when `terminal`, else plain
    (no escape codes) at `width` (default `PLAIN_WIDTH`)."""
    console = Console(
        file=io.StringIO(),
        force_terminal=terminal,
        width=width or (shutil.get_terminal_size().columns if terminal else PLAIN_WIDTH),
        color_system="auto" if terminal else None,
        highlight=False,
        soft_wrap=False,
    )
    render(document, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]  # the StringIO given above
    return "\n".join(line.rstrip() for line in text.rstrip("\n").splitlines())


def as_json(document: Snapshot) -> str:
    """`document` as one JSON object (`Snapshot`'s fields; `workers` as before: each health key
    with `up_s` and `beat_age_s`)."""
    return json.dumps(document.model_dump(mode="json"), indent=2)


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
    url: str,
    *,
    as_json_: bool = False,
    this_host: bool = False,
    terminal: bool = False,
    clock: Clock = utc_now,
) -> tuple[str, int]:
    """What `python -m worker status` prints about the Redis at `url` (the workers of this host
    only, with `this_host`; coloured for a `terminal`), and its exit code: 0 if a worker is
    running, `EXIT_NONE` if none. Raises redis-py's errors (or `OSError`) if Redis cannot be read."""
    document = snapshot(url, this_host=this_host, clock=clock)
    if as_json_:
        text = as_json(document)
    elif this_host and not document.workers:
        text = f"no worker is running on this host ({socket.gethostname()})"
    else:
        text = as_text(document, terminal=terminal)
    return text, 0 if document.workers else EXIT_NONE
