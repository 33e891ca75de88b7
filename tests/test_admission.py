"""Job slots by priority: which queued jobs a worker starts first, and how many of each kind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from arq.constants import in_progress_key_prefix

from reader import keys
from tests.support import make_config
from worker.admission import Admission, classify
from worker.priority import dataset_ranks
from worker.risks import config_warnings

RANKS = dataset_ranks()
UPSTREAMS: dict[str, str | None] = {
    "quotes": "tradier",
    "expirations": "tradier",
    "chains": "tradier",
    "history": "tradier",
    "intraday": "tradier",
    "indicators": "polygon",
}


def refresh(dataset: str, batch: int) -> str:
    return keys.refresh_job_id(dataset, "1764601200", f"b{batch}")


def fetch(symbol: str) -> str:
    return keys.fetch_job_id("quotes", symbol, "")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    r = redis.asyncio.Redis.from_url(redis_url)
    yield r
    await r.aclose()


async def test_queued_jobs_start_by_rank_then_in_queue_order(client: redis.asyncio.Redis) -> None:
    """On-demand fetches first, then quotes, then background datasets in the config's order."""
    admission = Admission(client, 10, lease_ms=5000, per_upstream=10)
    queued = [
        refresh("history", 1),
        refresh("chains", 1),
        fetch("ORCL"),
        refresh("quotes", 1),
        refresh("chains", 2),
    ]
    chosen = await admission.choose(queued, [], RANKS, UPSTREAMS)
    assert chosen == [
        fetch("ORCL"),
        refresh("quotes", 1),
        refresh("chains", 1),
        refresh("chains", 2),
        refresh("history", 1),
    ]
    reordered = dataset_ranks(["history", "chains"])
    chosen = await Admission(client, 10, lease_ms=5000, per_upstream=10).choose(
        queued, [], reordered, UPSTREAMS
    )
    assert chosen[2:] == [refresh("history", 1), refresh("chains", 1), refresh("chains", 2)]


async def test_background_jobs_never_take_the_slots_kept_for_on_demand_fetches_and_quotes(
    client: redis.asyncio.Redis,
) -> None:
    """With 4 slots, background refreshes take at most 2: a fetch and a quote refresh still start."""
    admission = Admission(client, 4, lease_ms=5000, per_upstream=10)
    backlog = [refresh("chains", i) for i in range(6)]
    started = await admission.choose(backlog, [], RANKS, UPSTREAMS)
    assert started == backlog[:2]
    # The next poll: the background backlog is still queued ahead of a quote refresh and a fetch.
    chosen = await admission.choose(
        [*backlog[2:], refresh("quotes", 1), fetch("ORCL")], started, RANKS, UPSTREAMS
    )
    assert chosen == [fetch("ORCL"), refresh("quotes", 1)]
    # A quote refresh never takes the last slot: it is an on-demand fetch's.
    chosen = await admission.choose(
        [refresh("quotes", 2)], [*started, refresh("quotes", 1)], RANKS, UPSTREAMS
    )
    assert chosen == []
    assert await admission.choose([fetch("KO")], [*started, refresh("quotes", 1)], RANKS, UPSTREAMS) == [
        fetch("KO")
    ]


async def test_two_background_jobs_per_upstream_run_at_once_across_the_fleet(redis_url: str) -> None:
    """Two processes share one upstream's cap; another upstream has its own; a lapsed lease frees a slot."""
    first_client = redis.asyncio.Redis.from_url(redis_url)
    second_client = redis.asyncio.Redis.from_url(redis_url)
    try:
        first = Admission(first_client, 10, lease_ms=300)
        second = Admission(second_client, 10, lease_ms=300)
        assert await first.choose([refresh("chains", 1)], [], RANKS, UPSTREAMS) == [refresh("chains", 1)]
        queued = [refresh("chains", 2), refresh("history", 1), refresh("indicators", 1)]
        chosen = await second.choose(queued, [], RANKS, UPSTREAMS)
        assert chosen == [refresh("chains", 2), refresh("indicators", 1)]  # tradier full; polygon free
        assert await first.choose([refresh("history", 1)], [refresh("chains", 1)], RANKS, UPSTREAMS) == []
        # The first process keeps renewing its lease; the second's job is gone (killed) and not renewed.
        for _ in range(4):
            await first.renew([refresh("chains", 1)])
            await asyncio.sleep(0.1)
        assert await first.choose([refresh("history", 1)], [refresh("chains", 1)], RANKS, UPSTREAMS) == [
            refresh("history", 1)
        ]
        # A job that ended gives its slot back at the next renewal.
        await first.renew([])
        assert await first_client.zrange(keys.background_jobs("tradier"), 0, -1) == []
    finally:
        await first_client.aclose()
        await second_client.aclose()


def test_a_job_id_says_its_rank() -> None:
    """Refreshes rank by dataset (retries too), fetches first, the tick and unknown ids before all."""
    assert classify(refresh("chains", 1) + ":retry:1", RANKS).rank == RANKS["chains"]
    assert classify(fetch("AAPL"), RANKS).rank == 0
    assert classify("cron:tick:1764601200123", RANKS).rank < 0


async def test_one_job_slot_runs_every_kind_and_check_config_says_none_is_kept(
    client: redis.asyncio.Redis,
) -> None:
    """With max_jobs 1 or 2 each kind may still take a slot (none would run otherwise); a warning says so."""
    assert await Admission(client, 1, lease_ms=5000).choose([refresh("quotes", 1)], [], RANKS, UPSTREAMS) == [
        refresh("quotes", 1)
    ]
    assert await Admission(client, 1, lease_ms=5000).choose([refresh("chains", 1)], [], RANKS, UPSTREAMS) == [
        refresh("chains", 1)
    ]
    two = Admission(client, 2, lease_ms=5000, per_upstream=10)
    assert await two.choose([refresh("chains", 1), refresh("chains", 2)], [], RANKS, UPSTREAMS) == [
        refresh("chains", 1)
    ]
    config = make_config(
        ["AAPL"], redis_url="redis://127.0.0.1:1/0", tradier_url="http://127.0.0.1:1", worker={"max_jobs": 1}
    )
    warnings = config_warnings(config)
    assert any("worker.max_jobs = 1 is under 3" in warning for warning in warnings), warnings


async def test_a_job_running_elsewhere_takes_no_slot_here(client: redis.asyncio.Redis) -> None:
    """arq keeps a running job in its queue: another worker passes over it to the next one."""
    await client.set(in_progress_key_prefix + refresh("quotes", 1), 1)
    chosen = await Admission(client, 1, lease_ms=5000).choose(
        [refresh("quotes", 1), refresh("quotes", 2)], [], RANKS, UPSTREAMS
    )
    assert chosen == [refresh("quotes", 2)]


async def test_a_job_two_processes_chose_keeps_the_lease_of_the_one_running_it(redis_url: str) -> None:
    """A and B both choose chains 1; arq starts it on A only. B giving back its choice leaves A's
    lease, and a lease Redis lost (a restart) is put back by the next renewal: the cap holds."""
    a_client = redis.asyncio.Redis.from_url(redis_url)
    b_client = redis.asyncio.Redis.from_url(redis_url)
    try:
        a, b = Admission(a_client, 10, lease_ms=5000), Admission(b_client, 10, lease_ms=5000)
        assert await a.choose([refresh("chains", 1)], [], RANKS, UPSTREAMS) == [refresh("chains", 1)]
        assert await b.choose([refresh("chains", 1)], [], RANKS, UPSTREAMS) == [refresh("chains", 1)]
        await b.renew([])  # arq found it started on A
        await a.renew([refresh("chains", 1)])
        assert await a.choose(
            [refresh("chains", 2), refresh("chains", 3)], [refresh("chains", 1)], RANKS, UPSTREAMS
        ) == [refresh("chains", 2)]
        await a_client.delete(keys.background_jobs("tradier"))  # Redis restarted
        await a.renew([refresh("chains", 1), refresh("chains", 2)])
        running = [refresh("chains", 1), refresh("chains", 2)]
        assert await b.choose([refresh("chains", 3)], [], RANKS, UPSTREAMS) == []
        assert len(running) == await a_client.zcard(keys.background_jobs("tradier"))
    finally:
        await a_client.aclose()
        await b_client.aclose()
