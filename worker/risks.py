"""Settings that are legal but probably not meant: the worker runs with them and says so."""

from __future__ import annotations

from urllib.parse import urlsplit

from reader.redis_url import redact_url
from worker.admission import BACKGROUND_PER_UPSTREAM
from worker.allowance import stretch_warning
from worker.config import Config, ProviderConfig
from worker.plan import plan_allowance, scheduled_plans
from worker.ratelimit import steady_rate_per_min

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MIN_JOBS_FOR_PRIORITY = 3
"""Job slots a process needs to keep one for on-demand fetches and one for quotes (`worker.admission`)."""
TRADIER_DOCUMENTED_RATE = {"api.tradier.com": 120, "sandbox.tradier.com": 60}


def config_warnings(config: Config) -> list[str]:
    """Settings that are legal but probably not meant; the worker runs with them and says so."""
    warnings: list[str] = []
    for name in ("tradier", "polygon"):
        provider: ProviderConfig = getattr(config.providers, name)
        parts = urlsplit(provider.base_url)
        if parts.scheme == "http" and parts.hostname not in LOCAL_HOSTS:
            warnings.append(
                f"providers.{name}.base_url = {redact_url(provider.base_url)!r} is plain http to another "
                "host: the key would cross the network unencrypted; use https:// unless it is the emulator"
            )
    tradier = config.providers.tradier
    documented = TRADIER_DOCUMENTED_RATE.get(urlsplit(tradier.base_url).hostname or "")
    if documented is not None and tradier.rate_per_min > documented:
        warnings.append(
            f"providers.tradier.rate_per_min = {tradier.rate_per_min} is above the {documented}/min Tradier "
            "documents for market data there; the worker will wait on its rate headers instead"
        )
    if config.worker.max_jobs < MIN_JOBS_FOR_PRIORITY:
        warnings.append(
            f"worker.max_jobs = {config.worker.max_jobs} is under {MIN_JOBS_FOR_PRIORITY}: a process cannot "
            "keep a job slot for on-demand fetches and one for quotes, so they may wait for a background "
            f"refresh to end; use {MIN_JOBS_FOR_PRIORITY} or more"
        )
    tick_s = config.worker.tick_s
    for plan in scheduled_plans(config).values():
        for phase, seconds in plan.configured.seconds.items():
            if seconds < tick_s:
                warnings.append(
                    f"datasets.{plan.name} cadence_s.{phase} = {seconds:g} is shorter than worker.tick_s = "
                    f"{tick_s}: refreshes are enqueued once per tick, so some are skipped"
                )
    if 60 % tick_s:
        warnings.append(
            f"worker.tick_s = {tick_s} does not divide 60: ticks run at seconds "
            f"{', '.join(map(str, range(0, 60, tick_s)))} of each minute, unevenly"
        )
    allowance = plan_allowance(config)
    for share in allowance.shares.values():
        stretched = stretch_warning(allowance, share)
        if stretched is not None:
            warnings.append(stretched)
    warnings += _jobs_past_their_timeout(config)
    return warnings


def _jobs_past_their_timeout(config: Config) -> list[str]:
    """Background datasets whose one job of `symbols_per_job` symbols makes more calls than the
    allowance lets through within `worker.job_timeout_s` (two such jobs share it at once): their
    requests would be refused for waiting too long, and the job cut off by its timeout."""
    warnings: list[str] = []
    symbols = len(config.watchlist)
    per_job = min(config.worker.symbols_per_job, symbols)
    for plan in scheduled_plans(config).values():
        if plan.name == "quotes" or plan.upstream is None or not plan.calls:
            continue
        steady = steady_rate_per_min(getattr(config.providers, plan.upstream).rate_per_min)
        calls = plan.calls / symbols * per_job
        seconds = calls * 60 / (steady / BACKGROUND_PER_UPSTREAM)
        if seconds > config.worker.job_timeout_s:
            fitting = int(per_job * config.worker.job_timeout_s / seconds)
            fix = (
                f"lower worker.symbols_per_job to {fitting} or raise job_timeout_s"
                if fitting >= 1
                else f"raise job_timeout_s to at least {seconds / per_job:.0f} and symbols_per_job to 1"
            )
            warnings.append(
                f"one {plan.name} job of worker.symbols_per_job = {per_job} symbols makes about {calls:.0f} "
                f"calls, about {seconds:.0f} s at {plan.upstream}'s {steady:.3g} calls/min (shared by "
                f"{BACKGROUND_PER_UPSTREAM} jobs at once), past worker.job_timeout_s = "
                f"{config.worker.job_timeout_s:g}: {fix}"
            )
    return warnings
