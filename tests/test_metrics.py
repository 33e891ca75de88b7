"""Prometheus metrics of a running worker (`worker.metrics`), scraped over HTTP in the middle of
its refreshes (issue 14, acceptance 2)."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reader import Reader, keys
from reader.jobs import refresh_job
from tests.conftest import StartWorker
from tests.support import FakeClock, RunningEmulator, create_job_pool
from tests.test_upstream_day import TUESDAY, _day, _emulator, _refresh
from worker.errors import ConfigError
from worker.metrics import MetricsServer, endpoint_template, refresh_slot

QUOTES = "/v1/markets/quotes"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(port: int) -> Samples:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def _enqueue(redis_url: str, dataset: str, job_id: str, symbols: list[str]) -> Any:
    pool = await create_job_pool(redis_url)
    job = await pool.enqueue_job(refresh_job(dataset), symbols, _job_id=job_id, _queue_name=keys.QUEUE)
    assert job is not None
    return pool, job


async def test_a_scrape_during_a_refresh_finds_every_family_with_its_labels_and_values(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, start_worker: StartWorker
) -> None:
    """On-demand fetch, a quotes refresh that waits out a 429's window, one answered 503 (the
    breaker opens), then two Polygon history refreshes hanging on the upstream and a third queued
    behind them: a scrape now shows the upstream calls as the emulator counted them, the rate wait,
    each refresh's outcome and duration, the lag of what was stored, the circuit states, the queue
    depth and the on-demand fetch; the day counters in Redis agree."""
    symbols = ["AAPL", "MSFT", "SPY"]
    sections: dict[str, Any] = {
        "retry": {"enabled": False},
        "worker": {"max_jobs": 4},
        "metrics": {"port": 0},
        "providers": {
            "tradier": {
                "base_url": emulator.url,
                "rate_per_min": 600,
                "batch_size": 100,
                "breaker_failures": 1,
            },
            "polygon": {"base_url": emulator.url, "rate_per_min": 600, "timeout_s": 30},
        },
        "datasets": {
            "expirations": {"enabled": False},
            "chains": {"enabled": False},
            "history": {"provider": "polygon", "intraday": None, "daily": {"lookback_days": 10}},
            "indicators": {"enabled": False},
        },
    }
    slot_s = int(clock().timestamp()) - 7  # the quotes refresh comes 7 s after its refresh time
    async with start_worker(symbols, **sections) as worker:
        worker.queue_sample_every_s = 0.02  # type: ignore[attr-defined]
        port: int = worker.ctx["metrics"].port
        before = await _scrape(port)

        async with Reader(redis_url, clock=clock, wait_s=5) as reader:
            assert (await reader.quote("AAPL")).symbol == "AAPL"  # a miss: fetched on demand
        window = {"path": QUOTES, "status": 429, "body": "slow down", "rate_window_s": 2}
        await _emulator(emulator, "POST", "faults", window)
        ok = await _refresh(redis_url, keys.refresh_job_id("quotes", str(slot_s), "b1"), symbols)
        await _emulator(emulator, "POST", "faults", {"path": QUOTES, "status": 503, "body": "busy"})
        failed = await _refresh(redis_url, keys.refresh_job_id("quotes", str(slot_s + 1), "b1"), symbols)
        assert (ok["stored"], failed["failed"]) == (3, 3)

        await _emulator(emulator, "POST", "faults", {"path": "/v2/aggs/*", "kind": "hang", "times": None})
        pools = [
            (await _enqueue(redis_url, "history", keys.refresh_job_id("history", str(slot_s), s), [s]))[0]
            for s in symbols
        ]
        for _ in range(200):  # two run (and hang), the third waits: two per upstream at once
            during = await _scrape(port)
            if _value(during, "marketcache_queue_depth", priority="history") == 1:
                break
        served = (await _emulator(emulator, "GET", "stats"))["calls"]
        await pools[0].zrem(keys.QUEUE, keys.refresh_job_id("history", str(slot_s), symbols[-1]))
        await _emulator(emulator, "DELETE", "faults")  # the hung requests are reset
        for pool in pools:
            await pool.aclose()

    def delta(name: str, **labels: str) -> float:
        return _value(during, name, **labels) - _value(before, name, **labels)

    assert served[QUOTES] == {"200": 2, "429": 1, "503": 1}
    assert "/v2/aggs" not in str(served)  # the history requests are still held
    for status, count in served[QUOTES].items():
        assert (
            delta("marketcache_upstream_requests_total", provider="tradier", endpoint=QUOTES, status=status)
            == count
        )
    assert delta("marketcache_refreshes_total", dataset="quotes", outcome="ok") == 1
    assert delta("marketcache_refreshes_total", dataset="quotes", outcome="failed") == 1
    assert delta("marketcache_refreshes_total", dataset="history", outcome="failed") == 0  # still running
    for outcome in ("ok", "failed"):
        assert delta("marketcache_refresh_duration_seconds_count", dataset="quotes", outcome=outcome) == 1
        assert delta("marketcache_refresh_duration_seconds_sum", dataset="quotes", outcome=outcome) > 0

    waited_s = delta("marketcache_rate_limit_wait_seconds_total", provider="tradier")
    assert delta("marketcache_rate_limit_waits_total", provider="tradier") == 1
    assert 2.25 <= waited_s <= 2.9  # the 2 s window, the reset margin and jitter, on the worker's clock

    states = {
        (provider, state): _value(during, "marketcache_circuit_state", provider=provider, state=state)
        for provider in ("tradier", "polygon")
        for state in ("closed", "open", "half_open")
    }
    assert states == {
        ("tradier", "closed"): 0,
        ("tradier", "open"): 1,
        ("tradier", "half_open"): 0,
        ("polygon", "closed"): 1,
        ("polygon", "open"): 0,
        ("polygon", "half_open"): 0,
    }

    # Stored once, at the worker's clock, which the 429's window moved on: its lag from the slot.
    lag_s = (clock() - datetime.fromtimestamp(slot_s, UTC)).total_seconds()
    assert delta("marketcache_freshness_lag_seconds_count", dataset="quotes") == 1
    assert delta("marketcache_freshness_lag_seconds_sum", dataset="quotes") == pytest.approx(lag_s)
    assert lag_s == pytest.approx(7 + waited_s, abs=0.1)

    assert {
        p: _value(during, "marketcache_queue_depth", priority=p) for p in ("on_demand", "quotes", "history")
    } == {
        "on_demand": 0,
        "quotes": 0,
        "history": 1,
    }
    assert delta("marketcache_on_demand_fetches_total", dataset="quotes", outcome="stored") == 1
    assert delta("marketcache_on_demand_fetch_duration_seconds_count", dataset="quotes") == 1
    assert 0 < delta("marketcache_on_demand_fetch_duration_seconds_sum", dataset="quotes") < 5
    assert _value(during, "process_resident_memory_bytes") > 0

    day = _day(redis_url, "tradier", TUESDAY)  # the day counters count the same requests
    assert (day.calls, day.statuses, day.faults) == (4, {200: 2, 429: 1, 503: 1}, {"server_error": 1})
    assert (day.waits, day.wait_s) == (1, pytest.approx(waited_s))


def test_endpoint_labels_hold_no_symbol_and_outcomes_follow_the_failed_symbols() -> None:
    """Polygon's paths with a ticker or a date become their template; Tradier's stay as they are; a
    job id gives its slot (the refresh's outcome is `worker.published.refresh_outcome`'s, tested there)."""
    assert endpoint_template(QUOTES) == QUOTES
    assert endpoint_template("/v1/indicators/sma/AAPL") == "/v1/indicators/sma/{ticker}"
    assert endpoint_template("/v3/snapshot/options/I%3ASPX/O:SPX261218C05000000") == (
        "/v3/snapshot/options/{underlying}/{contract}"
    )
    assert endpoint_template("/v2/aggs/ticker/BRK.B/range/1/day/2025-01-01/2026-11-24") == (
        "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}"
    )
    assert endpoint_template("/v9/other/NVDA") == "/v9/other/{}"
    first = keys.refresh_job_id("chains", "1764000000", "ab12")
    slot = refresh_slot(keys.refresh_retry_job_id(first, 2), "chains")
    assert slot is not None
    assert slot.timestamp() == 1764000000
    catch_up = refresh_slot(keys.refresh_job_id("chains", "catchup-1764000000500", "ab12"), "chains")
    assert catch_up is not None
    assert catch_up.timestamp() == 1764000000.5
    assert refresh_slot(keys.fetch_job_id("quotes", "SPY", ""), "quotes") is None


def test_a_metrics_address_that_cannot_listen_names_what_to_change() -> None:
    """A host that is not this machine's names metrics.host; a port in use names metrics.port."""
    with pytest.raises(ConfigError, match=r"metrics on 10\.9\.9\.9:0: .*metrics\.host .*must be an address"):
        MetricsServer("10.9.9.9", 0)
    taken = MetricsServer("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{taken.port}: .*choose a free metrics\.port"):
            MetricsServer("127.0.0.1", taken.port)
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{taken.port}/metrics", timeout=5).read().decode()
    finally:
        taken.close()
    assert "marketcache_refreshes_total" in scraped
    assert "_created" not in scraped  # no creation-time series beside each counter
