"""Settings that are legal but probably not meant: the worker runs with them and says so."""

from __future__ import annotations

from urllib.parse import urlsplit

from reader.redis_url import redact_url
from worker.allowance import stretch_warning
from worker.config import Config, ProviderConfig
from worker.plan import plan_allowance, scheduled_plans

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
    return warnings
