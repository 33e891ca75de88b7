"""The allowance planner: which datasets keep their cadence under an upstream's rate_per_min, how far
the others are stretched, and that check-config, the scheduler and fresh_until follow it."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from reader import keys
from reader.calendar import EXCHANGE_TZ
from reader.telemetry import ProviderPlan, PublishedPlan
from tests.support import FakeClock, create_job_pool
from worker.__main__ import main
from worker.allowance import PHASES, verdict
from worker.config import Config, Secrets, parse_config
from worker.plan import dataset_plans, plan_allowance
from worker.ratelimit import steady_rate_per_min
from worker.risks import config_warnings
from worker.runtime import Runtime
from worker.scheduler import Scheduler

SYMBOLS = [f"S{i:03d}" for i in range(100)]
ISSUE_CASE = (
    f"watchlist: [{', '.join(SYMBOLS)}]\n"
    "providers: {tradier: {rate_per_min: 120}}\n"
    "datasets:\n"
    "  quotes: {cadence_s: {regular: 15}}\n"
    "  chains: {expirations: 3, cadence_s: {regular: 60}}\n"
)
"""The issue's case: 100 symbols, quotes every 15 s, chains of 3 expirations every 60 s, 120/min
(intraday bars keep their default, every 300 s from 04:00 to 20:00 ET)."""


def _config(text: str = ISSUE_CASE, **sections: Any) -> Config:
    config = parse_config(text, env={})
    return config.model_copy(update=sections) if sections else config


def _issue_chains_s() -> float:
    """What the formula gives chains in the issue's case: quotes keep 4 calls/min; chains (300/min)
    and intraday bars (20/min) share what is left, stretched by one factor (175 s at 120/min, whose
    steady rate is 114.1/min)."""
    left = steady_rate_per_min(120) - 100 / 100 * 60 / 15
    return math.ceil(60 * (300 + 20) / left)


def test_the_issues_case_keeps_quotes_and_stretches_chains() -> None:
    """100 symbols at 120/min: quotes keep 15 s; chains every 175 s; the held total fits the steady rate."""
    allowance = plan_allowance(_config())
    holds = allowance.holds
    assert holds["quotes"].held.seconds == {"regular": 15.0}
    assert not holds["quotes"].stretched
    assert _issue_chains_s() == 175
    assert holds["chains"].held.seconds == {"regular": _issue_chains_s()}
    assert holds["chains"].configured.seconds == {"regular": 60.0}
    assert holds["chains"].needed_per_min["regular"] == 300
    assert holds["chains"].stretch["regular"] == pytest.approx(320 / (steady_rate_per_min(120) - 4))
    # Intraday bars come after chains: stretched by the same factor in regular hours, kept outside.
    assert holds["intraday"].held.seconds["regular"] == math.ceil(300 * holds["chains"].stretch["regular"])
    assert (holds["intraday"].held.seconds["pre"], holds["intraday"].held.seconds["post"]) == (300, 300)
    # Once a day and the closing refresh cost nothing worth stretching.
    assert holds["expirations"].held == holds["expirations"].configured
    assert holds["history"].held == holds["history"].configured
    tradier = allowance.shares["tradier"]
    assert tradier.needed_per_min["regular"] == pytest.approx(324)
    for phase in PHASES:
        assert tradier.held_per_min[phase] <= steady_rate_per_min(120)
    assert tradier.held_per_min["regular"] > 0.95 * steady_rate_per_min(
        120
    )  # stretched no further than needed


def test_a_plan_that_fits_keeps_every_cadence() -> None:
    """Ten symbols need 4 + 30 + 2 calls/min of 120: every dataset keeps its configured cadence."""
    config = _config(ISSUE_CASE.replace(", ".join(SYMBOLS), ", ".join(SYMBOLS[:10])))
    plans = dataset_plans(config)
    assert all(plan.cadence == plan.configured for plan in plans.values())
    assert not plan_allowance(config).stretched
    assert not any("calls/min" in warning for warning in config_warnings(config))


def test_the_priority_list_decides_which_dataset_is_stretched() -> None:
    """With intraday bars before chains in `priority`, they keep 300 s and chains alone are stretched."""
    config = _config(priority=["intraday", "chains"])
    holds = plan_allowance(config).holds
    assert holds["intraday"].held.seconds == holds["intraday"].configured.seconds
    left = steady_rate_per_min(120) - 4 - 20
    assert holds["chains"].held.seconds == {"regular": math.ceil(60 * 300 / left)}  # 188 s at 120/min


def test_quotes_alone_over_the_allowance_are_stretched_and_said_so() -> None:
    """Batches of 10 symbols every 15 s (40 calls/min) at 20/min: even quotes are stretched, the
    least they can be (they keep 90% of the rate), the others share the rest; with the fix."""
    text = ISSUE_CASE.replace("rate_per_min: 120", "rate_per_min: 20, batch_size: 10")
    config = _config(text)
    allowance = plan_allowance(config)
    quotes = allowance.holds["quotes"]
    steady = steady_rate_per_min(20)
    assert quotes.held.seconds == {"regular": math.ceil(15 * 40 / (0.9 * steady))}
    assert allowance.holds["chains"].held.seconds == {"regular": math.ceil(60 * (300 + 20) / (0.1 * steady))}
    assert allowance.shares["tradier"].quotes_stretched
    # Quotes over the allowance by a hair (4 of 3.93/min at 5/min) are stretched by a hair, not x77.
    small = plan_allowance(_config(ISSUE_CASE.replace("rate_per_min: 120", "rate_per_min: 5")))
    assert small.holds["quotes"].held.seconds == {
        "regular": math.ceil(15 * 4 / (0.9 * steady_rate_per_min(5)))
    }
    (warning,) = [w for w in config_warnings(config) if w.startswith("the datasets served by")]
    assert "even the quotes are refreshed less often than their cadence_s" in warning
    assert "raise rate_per_min to" in warning
    assert "cannot hold even the quotes every 15 s in regular (40 calls/min)" in verdict(
        quotes, allowance.shares["tradier"]
    )


def test_two_upstreams_share_their_own_allowances() -> None:
    """Polygon's bars over its 5/min are stretched; Tradier's chains, within 120/min, keep 60 s."""
    text = (
        f"watchlist: [{', '.join(SYMBOLS[:10])}]\n"
        "providers: {tradier: {rate_per_min: 120}, polygon: {rate_per_min: 5}}\n"
        "datasets:\n"
        "  chains: {expirations: 3, cadence_s: {regular: 60}}\n"
        "  history: {provider: polygon, intraday: {bar: 5m, cadence_s: {regular: 60}}}\n"
    )
    holds = plan_allowance(_config(text)).holds
    assert holds["chains"].held == holds["chains"].configured
    assert holds["intraday"].upstream == "polygon"
    assert holds["intraday"].held.seconds == {"regular": math.ceil(60 * 10 / steady_rate_per_min(5))}


def test_check_config_prints_the_cadence_each_dataset_can_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Acceptance 4: the issue's case prints quotes kept at 15 s and chains held at 175 s, with the fix."""
    path = tmp_path / "config.yaml"
    path.write_text(ISSUE_CASE)
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.out.splitlines()[1:]}
    assert rows["dataset"].split()[:6] == [
        "dataset",
        "provider",
        "configured",
        "held",
        "calls/min",
        "verdict",
    ]
    assert rows["quotes"].split()[:6] == ["quotes", "tradier", "regular", "15s;", "closing", "refresh"]
    assert rows["quotes"].split()[-4:] == ["same", "4.0", "(regular)", "kept"]
    chains_s = _issue_chains_s()
    factor = 320 / (steady_rate_per_min(120) - 4)
    held_calls = 300 * 60 / chains_s
    assert re.search(
        rf"^chains +tradier +regular 60s; closing refresh +regular {chains_s:g}s +300 -> {held_calls:.0f} "
        rf"\(regular\) +stretched x{factor:.2f}: tradier's allowance",
        rows["chains"],
    ), rows["chains"]
    needed = 300 + 4  # chains and what ranks before them, per minute
    fix = next(a for a in range(120, 1000) if steady_rate_per_min(a) >= needed)
    assert f"providers.tradier.rate_per_min >= {fix}" in rows["chains"]
    assert rows["expirations"].split()[-1] == "kept"
    assert rows["tradier:"].startswith("tradier: allowance 120/min")
    assert "the plan needs 324 calls/min" in rows["tradier:"]
    assert f"chains every {chains_s:g} s instead of 60 s in regular" in out.err


@pytest.fixture
async def issue_runtime(redis_url: str, clock: FakeClock, secrets: Secrets) -> AsyncIterator[Runtime]:
    """A runtime of the issue's case at Tuesday 10:00 ET (no upstream call is made)."""
    config = _config(redis_url=redis_url)
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Runtime.open(config, secrets, client, clock=clock) as runtime:
        yield runtime
    await client.aclose()


def _et(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 24, hour, minute, second, tzinfo=EXCHANGE_TZ)


async def test_fresh_until_follows_the_held_cadence(issue_runtime: Runtime, clock: FakeClock) -> None:
    """A chain fetched at 10:00:00 is fresh until the next held refresh (175 s grid from 09:30), not 10:01."""
    step = _issue_chains_s()
    next_held = _et(9, 30) + timedelta(seconds=step * math.floor(1800 / step + 1))
    slack = timedelta(seconds=issue_runtime.config.cache.fresh_slack_s)
    assert issue_runtime.fresh_until("chains", clock.now) == next_held + slack
    assert issue_runtime.fresh_until("quotes", clock.now) == _et(10, 0, 15) + slack


async def test_the_scheduler_enqueues_chains_on_the_held_cadence(
    issue_runtime: Runtime, clock: FakeClock, redis_url: str
) -> None:
    """After the start-up catch-up at 10:00:00, chains are due at 10:02:05 (the held grid of 175 s
    from 09:30), not at 10:01:00."""
    step = _issue_chains_s()
    due = _et(9, 30) + timedelta(seconds=step * math.floor(1800 / step + 1))
    assert due == _et(10, 2, 5)
    pool = await create_job_pool(redis_url)
    scheduler = Scheduler(issue_runtime, pool)
    try:
        await scheduler.tick()  # the catch-up: everything is missing
        acted: dict[str, int] = {}
        for at in (_et(10, 1, 0), _et(10, 2, 0), _et(10, 2, 10), _et(10, 3, 0)):
            clock.now = at
            report = await scheduler.tick()
            acted[f"{at:%H:%M:%S}"] = report.enqueued["chains"] + report.skipped["chains"]
    finally:
        await pool.aclose()
    assert acted == {"10:01:00": 0, "10:02:00": 0, "10:02:10": 10, "10:03:00": 0}


def test_a_reload_recomputes_the_held_cadence_and_logs_what_it_stretches(
    issue_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Started stretched, one line names it; a reload with 400/min keeps every cadence again."""
    caplog.set_level(logging.WARNING, logger="worker.runtime")
    issue_runtime.reconfigure(issue_runtime.config)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plan.stretched")]
    assert f"chains=regular:60s->{_issue_chains_s():g}s" in line
    providers = issue_runtime.config.providers.model_copy(
        update={"tradier": issue_runtime.config.providers.tradier.model_copy(update={"rate_per_min": 400})}
    )
    issue_runtime.reconfigure(issue_runtime.config.model_copy(update={"providers": providers}))
    assert issue_runtime.plans["chains"].cadence.seconds == {"regular": 60.0}
    assert issue_runtime.scheduled["chains"].cadence.seconds == {"regular": 60.0}


async def test_a_batch_queued_by_the_catch_up_waits_its_turn_for_three_held_intervals(
    issue_runtime: Runtime, clock: FakeClock, redis_url: str
) -> None:
    """Chains enqueued at 10:00:00 are dropped unstarted only after 3 held intervals past the next
    refresh time (10:02:05 + 3 x 175 s), not a minute later: batches queued behind the others keep
    their place while the allowance works through them."""
    pool = await create_job_pool(redis_url)
    try:
        await Scheduler(issue_runtime, pool).tick()  # the catch-up: everything is missing
        job_ids = [key async for key in pool.scan_iter("arq:job:mc:v1:refresh:chains:*")]
        ttls_s = [await pool.ttl(key) for key in job_ids]
    finally:
        await pool.aclose()
    assert len(job_ids) == 10
    expected_s = (_et(10, 2, 5) - _et(10, 0)).total_seconds() + 3 * _issue_chains_s()
    # arq adds a second of its own; the test's own time passes too.
    assert all(expected_s - 5 <= ttl <= expected_s + 5 for ttl in ttls_s), (ttls_s, expected_s)


def test_a_job_too_long_for_its_timeout_under_a_small_allowance_is_warned_about() -> None:
    """10 symbols of 3-expiration chains at 5/min: one job of 10 symbols would take 15 minutes of
    the allowance, past job_timeout_s; the warning gives the symbols_per_job that fits."""
    text = (
        f"watchlist: [{', '.join(SYMBOLS[:10])}]\n"
        "providers: {tradier: {rate_per_min: 5}}\n"
        "datasets:\n"
        "  quotes: {cadence_s: {regular: 60}}\n"
        "  chains: {expirations: 3, cadence_s: {regular: 600}}\n"
        "  history: {enabled: false}\n"
        "  indicators: {enabled: false}\n"
    )
    (warning,) = [w for w in config_warnings(_config(text)) if w.startswith("one chains job")]
    assert "makes about 30 calls" in warning
    assert "past worker.job_timeout_s = 120: lower worker.symbols_per_job to 1" in warning
    assert not [w for w in config_warnings(_config()) if w.startswith("one ")]  # 120/min: fits


async def test_the_published_plan_tells_status_each_held_cadence_without_the_config(
    issue_runtime: Runtime, clock: FakeClock, redis_url: str
) -> None:
    """With the calendar, the scheduler publishes the plan (`keys.PLAN`): each enabled dataset's
    upstream (none for computed indicators), rank, configured and held cadences and bar length,
    and the allowance of each upstream it calls."""
    pool = await create_job_pool(redis_url)
    try:
        await Scheduler(issue_runtime, pool)._publish_schedule(clock())
        plan = PublishedPlan.model_validate_json(await pool.get(keys.PLAN) or b"")
    finally:
        await pool.aclose()
    assert (plan.published_at, plan.timezone, plan.keep_stale_s) == (clock(), "America/New_York", 604_800)
    assert plan.watchlist == tuple(SYMBOLS)
    assert list(plan.datasets) == ["quotes", "expirations", "chains", "history", "intraday", "indicators"]
    chains = plan.datasets["chains"]
    assert (chains.provider, chains.rank, chains.symbols) == ("tradier", 3, 100)
    assert chains.configured_cadence_s == {"regular": 60}
    assert chains.held_cadence_s == {"regular": _issue_chains_s()}
    assert plan.datasets["quotes"].held_cadence_s == {"regular": 15}
    assert (plan.datasets["history"].interval, plan.datasets["intraday"].interval) == ("1d", "5m")
    assert plan.datasets["indicators"].provider is None
    assert plan.providers == {
        "tradier": ProviderPlan(rate_per_min=120, planned_per_min=round(steady_rate_per_min(120), 3))
    }
