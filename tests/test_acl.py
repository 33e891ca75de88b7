"""The Redis users that docker-compose.yml ships (deploy/redis-users.acl), applied to a real
redis-server: the reader works through its user (hits and misses) and cannot write data; the
worker runs through its own."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import redis.asyncio
from redis.exceptions import NoPermissionError, ResponseError

from devtools.redis_server import RedisServer
from reader import NotCached, Quote, Reader, keys
from reader.ondemand import FetchRequest
from reader.telemetry import DatasetPlan, ProviderPlan, PublishedPlan
from tests.conftest import StartWorker
from tests.support import FakeClock, until
from worker.ratelimit import RateGate
from worker.status import live_workers, snapshot

ACL_FILE = Path(__file__).resolve().parent.parent / "deploy" / "redis-users.acl"
PASSWORDS = {"worker": "worker-test-password", "reader": "reader-test-password"}


def _users() -> dict[str, list[str]]:
    """The shipped rules of each user, as deploy/redis-entrypoint.sh reads them."""
    users = {}
    for line in ACL_FILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, name, *rules = shlex.split(line)
            assert word == "user", line
            users[name] = rules
    return users


def _url(base: str, user: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORDS[user]}@{parts.hostname}:{parts.port}"))


@pytest.fixture
def acl_urls(redis_server: RedisServer, redis_url: str) -> Iterator[dict[str, str]]:
    """The worker and reader users, created on the session's server (whose default user stays on,
    for the other tests) and removed after the test; their URLs by name."""
    admin = redis.Redis.from_url(redis_url)
    major = int(str(admin.info("server")["redis_version"]).split(".")[0])
    if major < 7:
        admin.close()
        pytest.skip("read-only key permissions (%R~) need Redis 7; this redis-server is older")
    users = _users()
    for name in ("worker", "reader"):
        admin.execute_command("ACL", "SETUSER", name, "reset", *users[name], f">{PASSWORDS[name]}")
    yield {name: _url(redis_url, name) for name in ("worker", "reader")}
    admin.execute_command("ACL", "DELUSER", "worker", "reader")
    admin.close()


def test_the_shipped_acl_turns_anonymous_access_off() -> None:
    assert _users()["default"] == ["off"]
    assert set(_users()) == {"default", "worker", "reader"}


async def test_the_reader_user_reads_hits_and_gets_misses_fetched(
    acl_urls: dict[str, str], redis_url: str, clock: FakeClock, start_worker: StartWorker
) -> None:
    """Hits (GET, MGET, the chains script) and misses, one and many (enqueue script,
    subscription), all work through the reader's user, against a worker running as the worker's
    user."""
    cached = Quote(
        source="tradier", fetched_at=clock(), fresh_until=clock() + timedelta(minutes=1), symbol="SPY"
    )
    admin = redis.Redis.from_url(redis_url)
    admin.set(keys.quote("SPY"), cached.model_dump_json())
    admin.close()
    async with (
        start_worker(url=acl_urls["worker"]),
        Reader(acl_urls["reader"], clock=clock, wait_s=5) as reader,
    ):
        assert await reader.quote("SPY") == cached
        assert (await reader.quotes(["SPY"]))["SPY"] == cached
        with pytest.raises(NotCached, match="keeps no chains"):
            await reader.chain("SPY", wait_s=0)  # the script runs under the reader's user
        fetched = await reader.quote("AAPL")  # a miss: enqueued by the reader, run by the worker
        # Misses in bulk: one enqueue script for both, fetched together (the worker's claim scripts)
        many = await reader.quotes(["MSFT", "NVDA"])
    assert fetched.symbol == "AAPL"
    assert fetched.fetched_at == clock()
    assert {s: getattr(q, "symbol", q) for s, q in many.items()} == {"MSFT": "MSFT", "NVDA": "NVDA"}


def test_the_reader_user_cannot_write_data_or_run_other_jobs(acl_urls: dict[str, str]) -> None:
    """Redis itself refuses every write outside an on-demand fetch's queue keys."""
    client = redis.Redis.from_url(acl_urls["reader"])
    assert client.get(keys.quote("AAPL")) is None  # it may read
    with pytest.raises(NoPermissionError):
        client.set(keys.quote("AAPL"), "{}")
    with pytest.raises(NoPermissionError):
        client.delete(keys.quote("AAPL"))
    with pytest.raises(NoPermissionError):
        client.set(keys.unknown("quotes", "AAPL"), "{}")  # nor forge the negative cache
    with pytest.raises(NoPermissionError):
        client.set("arq:job:" + keys.refresh_job_id("quotes", "1", "b"), "{}")  # nor a refresh job
    with pytest.raises(NoPermissionError):
        client.publish(keys.FETCHED, "{}")  # nor announce outcomes
    with pytest.raises(NoPermissionError):
        client.set(keys.QUEUE, "junk")  # nor overwrite the queue (ZADD is all it may do there)
    with pytest.raises(NoPermissionError):
        client.flushall()
    with pytest.raises(NoPermissionError):
        client.set(keys.rate_budget("tradier"), "0")  # nor spend or refill the fleet's rate budget
    with pytest.raises(NoPermissionError):
        client.set(keys.rate_pause("tradier"), "x", px=60_000)  # nor pause the workers
    sha = client.script_load("return redis.call('SET', ARGV[1], '{}')")
    with pytest.raises(ResponseError, match="can't access"):  # nor write through a script
        client.evalsha(sha, 0, keys.quote("AAPL"))
    request = FetchRequest("quotes", "AAPL")
    assert client.set("arq:job:" + request.job_id, "{}", px=1000)  # what an on-demand fetch needs
    client.close()


async def test_the_worker_user_spends_the_rate_budget_and_the_reader_user_cannot(
    acl_urls: dict[str, str], clock: FakeClock
) -> None:
    """A gate on the worker's ACL user runs the budget script; on the reader's, Redis refuses it."""
    worker = redis.asyncio.Redis.from_url(acl_urls["worker"])
    reader = redis.asyncio.Redis.from_url(acl_urls["reader"])
    for client in (worker, reader):
        gate = RateGate("tradier", 600, 4, clock=clock, sleep=clock.sleep, redis_client=client)
        if client is reader:
            with pytest.raises(NoPermissionError, match="no permissions to access one of the keys"):
                async with gate.slot():
                    pass
        else:
            async with gate.slot():
                pass
    assert await worker.exists(keys.rate_budget("tradier")) == 1
    await worker.aclose()
    await reader.aclose()


def test_the_worker_user_cannot_flush_or_touch_other_keys(acl_urls: dict[str, str]) -> None:
    client = redis.Redis.from_url(acl_urls["worker"])
    assert client.set(keys.quote("AAPL"), "{}")
    with pytest.raises(NoPermissionError):
        client.flushall()
    with pytest.raises(NoPermissionError):
        client.set("another-app:key", "1")
    client.close()


async def test_the_reader_user_lists_the_live_workers_but_cannot_forge_one(
    acl_urls: dict[str, str], start_worker: StartWorker
) -> None:
    """`python -m worker status` works under the reader's user; a worker's health key and the list
    of workers are the worker's to write."""
    client = redis.Redis.from_url(acl_urls["reader"])
    try:
        async with start_worker(url=acl_urls["worker"]) as worker:
            worker_id = worker.presence.worker_id
            await until(
                lambda: [w.worker_id for w in live_workers(client)] == [worker_id], 5, "the worker listed"
            )
            with pytest.raises(NoPermissionError):
                client.set(keys.worker("forged-1-abcd"), "{}")
            with pytest.raises(NoPermissionError):
                client.zadd(keys.WORKERS, {"forged-1-abcd": 1})
            with pytest.raises(NoPermissionError):
                client.delete(keys.worker(worker_id))
        assert live_workers(client) == []  # deleted by the worker's own user when it stopped
    finally:
        client.close()


def test_the_reader_user_runs_the_whole_status(
    acl_urls: dict[str, str], redis_url: str, clock: FakeClock
) -> None:
    """Every section of `python -m worker status` reads through the reader's user: the plan, the
    items' envelopes (a script of GETs), a chain index, the day counters and incident (HGETALL),
    the queue with its scores (ZRANGE), the last refresh."""
    plan = PublishedPlan(
        published_at=clock(),
        timezone="America/New_York",
        priority=(),
        keep_stale_s=3600,
        watchlist=("SPY",),
        datasets={
            "quotes": DatasetPlan(provider="tradier", rank=1, configured_cadence_s={"regular": 15}),
            "chains": DatasetPlan(provider="tradier", rank=3),
        },
        providers={"tradier": ProviderPlan(rate_per_min=120, planned_per_min=114.1)},
    )
    cached = Quote(
        source="tradier", fetched_at=clock(), fresh_until=clock() + timedelta(minutes=1), symbol="SPY"
    )
    admin = redis.Redis.from_url(redis_url)
    admin.set(keys.PLAN, plan.model_dump_json())
    admin.set(keys.quote("SPY"), cached.model_dump_json())
    admin.hset(keys.upstream_day("tradier", clock().date()), mapping={"calls": 3})
    admin.zadd(keys.QUEUE, {keys.fetch_job_id("quotes", "SPY", ""): clock().timestamp() * 1000 - 5000})
    admin.close()
    document = snapshot(acl_urls["reader"], clock=clock)
    assert (document.datasets["quotes"].fresh, document.datasets["chains"].missing) == (1, 1)
    assert document.providers["tradier"].calls == 3
    assert document.queue is not None
    assert (document.queue.on_demand_waiting, document.queue.oldest_age_s) == (1, 5.0)


def test_the_acl_names_the_key_layout_of_reader_keys() -> None:
    """The ACL repeats the key layout by hand: its key patterns and pub/sub channels are those of
    `reader.keys` (and arq's job key prefix), so a renamed key or a new channel fails here first."""
    from arq.constants import job_key_prefix

    rules = _users()
    assert f"~{keys.PREFIX}*" in rules["worker"]
    assert f"&{keys.PREFIX}*" in rules["worker"]
    reader = " ".join(rules["reader"])
    assert f"%R~{keys.PREFIX}*" in reader
    channels = {rule[1:] for rule in rules["reader"] if rule.startswith("&")}
    assert channels == {keys.FETCHED, keys.STORED}  # the fetch and the store announcements
    assert f"(~{job_key_prefix}{keys.FETCH_JOBS}* +exists +set)" in reader
    assert f"(~{keys.QUEUE} +zadd)" in reader
