"""The README's reader example runs as written; docker-compose.yml is what the README says it is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import yaml

from devtools.redis_server import find_redis_server, free_port
from reader import Quote, keys
from reader.__main__ import _parser as reader_cli_parser
from tests.support import child_env
from worker.__main__ import _parser as worker_cli_parser
from worker.config import load_config

REPO = Path(__file__).resolve().parent.parent


def _readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.DOTALL)


def test_readme_reader_example_runs_against_a_populated_cache(redis_url: str) -> None:
    """The README's example prints the cached quotes and reports the miss, as it claims."""
    example = _readme_python_blocks()[0]
    assert len([line for line in example.splitlines() if line.strip()]) <= 8
    now = datetime.now(UTC)
    client = redis.Redis.from_url(redis_url)
    for symbol, last in (("AAPL", 231.5), ("MSFT", 421.25), ("NVDA", 141.0)):
        quote = Quote(
            symbol=symbol,
            source="tradier",
            fetched_at=now,
            fresh_until=now + timedelta(seconds=60),
            last=last,
            bid=last - 0.01,
            ask=last + 0.01,
        )
        client.set(keys.quote(symbol), quote.model_dump_json(exclude_none=True))
    client.close()
    env = child_env(REDIS_URL=redis_url)
    result = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith("AAPL 231.5 231.49 231.51 ")
    assert first.endswith("s old fresh")
    assert "'MSFT': Quote(" in second
    assert "last=421.25" in second
    assert "'NVDA': Quote(" in second
    # No worker runs here: the miss says so at once instead of "a fetch is queued".
    assert "'ZZZZ': NoWorker(\"no quote cached for 'ZZZZ'" in second


def test_compose_runs_redis_with_aof_and_a_worker_that_waits_for_it() -> None:
    """Redis with AOF and a healthcheck; the worker waits for it healthy; the emulator is demo-only."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    redis_service = services["redis"]
    assert "--appendonly" in redis_service["command"]
    assert redis_service["command"][redis_service["command"].index("--appendonly") + 1] == "yes"
    assert "redis-cli --user worker ping" in redis_service["healthcheck"]["test"][-1]
    assert any(volume.endswith(":/data") for volume in redis_service["volumes"])
    # The shipped users (tests/test_acl.py proves their rules), passwords required from .env.
    assert "./deploy/redis-users.acl:/etc/redis/users.acl:ro" in redis_service["volumes"]
    assert "./deploy/redis-entrypoint.sh:/etc/redis/entrypoint.sh:ro" in redis_service["volumes"]
    assert redis_service["entrypoint"] == ["/bin/sh", "/etc/redis/entrypoint.sh"]
    for name in ("REDIS_WORKER_PASSWORD", "REDIS_READER_PASSWORD"):
        assert redis_service["environment"][name].startswith(f"${{{name}:?")
        assert f"{name}=" in (REPO / ".env.example").read_text()

    worker = services["worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["environment"]["REDIS_URL"] == "redis://worker:${REDIS_WORKER_PASSWORD}@redis:6379/0"
    assert worker["environment"]["TRADIER_API_KEY"] == "${TRADIER_API_KEY:-}"  # from the shell, not a file
    assert worker["command"] == ["python", "-m", "worker", "run"]
    assert (REPO / "Dockerfile").exists()
    assert "profiles" not in worker

    emulator = services["emulator"]
    assert emulator["profiles"] == ["demo"]
    assert emulator["command"][:3] == ["python", "-m", "emulator"]
    assert "redis-data" in compose["volumes"]
    # The mounted config is the repository's config file, at the path the image reads.
    mount = next(v for v in worker["volumes"] if v.startswith("./config.yaml:"))
    assert mount.split(":")[1] == worker["environment"]["MARKETCACHE_CONFIG"]


def test_compose_scales_the_worker_each_container_checking_its_own() -> None:
    """`docker compose up --scale worker=3` works: nothing fixed per container (name, host port, host
    name), and each container's healthcheck is its own worker's health key, not the fleet's; the
    README says how to scale and what to use for Redis high availability."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    assert not {"container_name", "ports", "hostname"} & set(worker)
    check = worker["healthcheck"]["test"]
    assert check == ["CMD", "python", "-m", "worker", "status", "--self"]
    args = worker_cli_parser().parse_args(check[4:])  # a real subcommand and option
    assert (args.command, args.self) == ("status", True)
    assert worker["environment"]["REDIS_URL"]  # what `status` reads, without the config file

    readme = (REPO / "README.md").read_text()
    section = readme.split("### Scaling and high availability", 1)[1].split("\n## ", 1)[0]
    for said in (
        "--scale worker=3",
        "python -m worker status",
        "Sentinel is not supported",
        "AOF",
        "failover",
    ):
        assert said in section, said


def test_dockerfile_installs_the_package_and_runs_the_worker_unprivileged() -> None:
    """The image installs marketcache from pyproject.toml, with every package it lists and the mcp
    extra (the compose `mcp` service's), and does not run as root."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install '.[mcp]'" in dockerfile
    assert "USER nobody" in dockerfile
    assert 'CMD ["python", "-m", "worker", "run"]' in dockerfile
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "mcp" in pyproject["project"]["optional-dependencies"]
    included = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in included]
    copied = re.findall(r"^COPY (\w+) \./(\w+)$", dockerfile, flags=re.MULTILINE)
    assert sorted(copied) == sorted((package, package) for package in packages)


def test_compose_mcp_service_serves_http_as_the_reader_on_loopback_only() -> None:
    """The `mcp` profile's service: `python -m reader mcp --http` on every interface of its container
    from the worker's image, as the reader user (it can write no data), published on the host's
    loopback only (it has no authentication), once Redis is healthy; the README says how to start it."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mcp = compose["services"]["mcp"]
    assert mcp["profiles"] == ["mcp"]
    assert mcp["image"] == compose["services"]["worker"]["image"]
    assert mcp["build"] == "."
    command = mcp["command"]
    assert command[:4] == ["python", "-m", "reader", "mcp"]
    args = reader_cli_parser().parse_args(command[3:])  # a real subcommand and option
    assert (args.command, args.http) == ("mcp", ("0.0.0.0", 8000))  # noqa: S104 - inside its container
    assert mcp["environment"] == {"REDIS_URL": "redis://reader:${REDIS_READER_PASSWORD}@redis:6379/0"}
    assert mcp["ports"] == ["127.0.0.1:8000:8000"]
    assert mcp["depends_on"]["redis"]["condition"] == "service_healthy"
    # The user it logs in as is the ACL's reader: subscribes to the store announcements, writes no data.
    acl = (REPO / "deploy" / "redis-users.acl").read_text()
    reader_rules = next(line for line in acl.splitlines() if line.startswith("user reader "))
    assert "&mc:v1:stored" in reader_rules
    assert "docker compose --profile mcp up -d" in (REPO / "README.md").read_text()


def test_ci_runs_make_test_and_nothing_else() -> None:
    """.ci/run calls `make test`, the README's command, and nothing the README does not."""
    commands = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert commands[-1] == "exec make test"
    assert all(c.startswith(("set ", "cd ", "exec make test")) for c in commands)


def test_the_compose_redis_entrypoint_starts_redis_with_the_shipped_users(tmp_path: Path) -> None:
    """deploy/redis-entrypoint.sh, run with the machine's redis-server: no anonymous access, each
    user logs in with the password from its variable, and a missing password stops the start."""
    binary = find_redis_server(allow_apt=True)
    port = free_port()
    env = {
        "PATH": f"{Path(binary).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "REDIS_ACL_RULES": str(REPO / "deploy" / "redis-users.acl"),
        "REDIS_ACL_FILE": str(tmp_path / "users.acl"),
        "REDIS_WORKER_PASSWORD": "worker-pw",
    }
    missing = subprocess.run(
        ["sh", "deploy/redis-entrypoint.sh"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0
    assert "set REDIS_READER_PASSWORD" in missing.stderr
    env["REDIS_READER_PASSWORD"] = "reader-pw"
    args = ["--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    server = subprocess.Popen(["sh", "deploy/redis-entrypoint.sh", *args], cwd=REPO, env=env)
    try:
        anonymous = redis.Redis(port=port)
        for _ in range(100):
            try:
                anonymous.ping()
            except redis.AuthenticationError:
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise AssertionError("redis-server did not start, or lets anonymous clients in")
        worker = redis.Redis(port=port, username="worker", password="worker-pw")
        assert worker.ping()
        reader = redis.Redis(port=port, username="reader", password="reader-pw")
        assert reader.get("mc:v1:quote:AAPL") is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("mc:v1:quote:AAPL", "{}")
        for client in (anonymous, worker, reader):
            client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_compose_serves_each_workers_metrics_to_the_compose_network_only() -> None:
    """The worker serves its Prometheus metrics on every interface of its container, exposed to the
    other containers and not published on the host (the service scales); the config it reads takes
    the port and host from the environment."""
    worker = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["worker"]
    environment = worker["environment"]
    assert worker["expose"] == [environment["MARKETCACHE_METRICS_PORT"]]
    assert "ports" not in worker
    metrics_env = {
        name: value for name, value in environment.items() if name.startswith("MARKETCACHE_METRICS")
    }
    config = load_config(REPO / "config.yaml", env=metrics_env)
    assert (config.metrics.host, config.metrics.port) == ("0.0.0.0", 9464)  # noqa: S104 - inside its container
    assert load_config(REPO / "config.yaml", env={}).metrics.port is None  # off in `make run`
