"""arq settings of the worker, built from a `Config`.

`python -m worker run` builds them from --config; `arq worker.settings.WorkerSettings` also works
and reads the config named by `MARKETCACHE_CONFIG` (else ./config.yaml) when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings

from reader import jobs as job_contract
from reader import keys
from reader.clock import Clock, utc_now
from reader.ondemand import FETCH_JOB
from worker import jobs
from worker.config import Config, Secrets, load_config, resolve_config_path
from worker.priority import TICK_JOB

REFRESH_RESULT_KEEP_S = 300
QUEUE_READ_LIMIT = 1000
HEALTH_EVERY_S = 10
"""How often a worker sets its health key: readers that find none say at once that no worker runs."""


def worker_options(
    config: Config,
    secrets: Secrets,
    *,
    clock: Clock = utc_now,
    scheduled: bool = True,
    config_path: Path | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `arq.Worker`; `scheduled=False` leaves out the tick (tests enqueue by hand).
    With `config_path`, edits of that file are applied while the worker runs."""
    tick_s = config.worker.tick_s
    cron_jobs = [
        cron(
            jobs.tick,
            name=TICK_JOB,
            second=set(range(0, 60, tick_s)),
            run_at_startup=True,
            unique=True,
            timeout=max(tick_s * 5, 10),
            keep_result=0,
        )
    ]
    return {
        "functions": [
            func(
                jobs.refresh_job_function(dataset),
                name=job_contract.refresh_job(dataset),
                # Slots are claimed in Redis, so results need not block reruns; kept briefly to inspect.
                keep_result=REFRESH_RESULT_KEEP_S,
                timeout=config.worker.job_timeout_s,
                # A second try: a batch whose worker was killed is retaken by another once its
                # lease lapses (`worker.daemon.LEASE_S`), or one cancelled by a shutdown runs again.
                max_tries=2,
            )
            # Every dataset, enabled or not: a reloaded config may enable one.
            for dataset in job_contract.DATASETS
        ]
        + [
            # Readers wait on the published outcome, not on the result: keeping none lets the next
            # miss enqueue the same job id at once.
            func(
                jobs.fetch,
                name=FETCH_JOB,
                keep_result=0,
                # Short: a reader waits seconds, not minutes.
                timeout=jobs.fetch_timeout_s(config),
                # A second try: a job cancelled by a shutdown, or left behind by a crash, runs again.
                max_tries=2,
            )
        ],
        "cron_jobs": cron_jobs if scheduled else [],
        "redis_settings": RedisSettings.from_dsn(config.redis_url),
        "queue_name": keys.QUEUE,
        "health_check_key": keys.WORKER_HEALTH,
        "on_startup": jobs.startup,
        "on_shutdown": jobs.shutdown,
        "max_jobs": config.worker.max_jobs,
        # arq reads this many ready job ids per poll (default 100): more, so that an on-demand fetch
        # behind a long queue of background refreshes that wait their turn is still seen and started.
        "queue_read_limit": QUEUE_READ_LIMIT,
        "poll_delay": config.worker.poll_delay_s,
        # arq keeps failed jobs' results (an expired job, an unknown function) for this long, which
        # would block their deterministic ids; functions that want results set their own.
        "keep_result": 0,
        # On SIGINT/SIGTERM stop taking jobs and let those in flight finish (then cancel them).
        "job_completion_wait": config.worker.shutdown_grace_s,
        "job_serializer": job_contract.dumps,
        "job_deserializer": job_contract.loads,
        "log_results": False,
        # Readers (`NoWorker`) and `arq --check worker.settings.WorkerSettings` read this key; each
        # worker also writes its own at this interval (`worker.presence`, `python -m worker status`).
        "health_check_interval": HEALTH_EVERY_S,
        "ctx": {"config": config, "secrets": secrets, "clock": clock, "config_path": config_path},
    }


def _settings_class() -> type:
    path = resolve_config_path(None)
    config = load_config(path)
    return type("WorkerSettings", (), worker_options(config, Secrets.from_env(), config_path=path))


def __getattr__(name: str) -> Any:
    if name == "WorkerSettings":
        return _settings_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
