"""`make run`: the worker on embedded defaults, with whatever it needs that is not configured.

- `REDIS_URL` unset: starts a private redis-server on 127.0.0.1:$MARKETCACHE_REDIS_PORT (default
  6379, the reader's default) with its data under .data/redis and AOF on.
- Each upstream the config calls (`tradier`, `polygon`) whose key (`TRADIER_API_KEY`,
  `POLYGON_API_KEY`) is unset: served by the local emulator, started once for all of them.
Then runs `python -m worker run` in the foreground. Ctrl-C (or SIGTERM/SIGHUP) stops everything it
started; the children also die with it if it is killed outright (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from devtools.redis_server import RedisServer, find_redis_server, free_port, port_open
from reader.redis_url import DEFAULT_REDIS_URL, redact_url
from worker.config import API_KEY_ENV, ENV_OVERRIDES, load_config, resolve_config_path
from worker.errors import ConfigError
from worker.plan import used_upstreams

DATA_DIR = Path(".data")
EMULATOR_TOKEN = "emulator-token"  # noqa: S105 - the emulator accepts any token; not a secret
READY_TIMEOUT_S = 20.0


class Stop(Exception):
    """A signal asked the launcher to stop."""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the launcher dies, however it dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: the terminal's Ctrl-C reaches the launcher only, which stops the
    # children in order (worker first, so it finishes its jobs while Redis is still up).
    return subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=_die_with_parent)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def _say(message: str) -> None:
    print(f"make run: {message}", file=sys.stderr, flush=True)


def emulated_upstreams(argv: list[str], env: dict[str, str]) -> list[str]:
    """The upstreams the worker's config calls whose API key `env` lacks: the emulator serves them.
    `argv` are the worker's arguments (`--config PATH`). A config that does not load counts as
    calling Tradier: the worker then says what is wrong with it."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config")
    path = resolve_config_path(options.parse_known_args(argv)[0].config, env)
    try:
        upstreams = used_upstreams(load_config(path, env))
    except ConfigError:
        upstreams = ["tradier"]
    return [upstream for upstream in upstreams if not env.get(API_KEY_ENV[upstream])]


def reader_hint(redis_url: str) -> str:
    """The reader command to try, with `REDIS_URL` when the reader's default would miss this Redis."""
    default = redis_url in {DEFAULT_REDIS_URL, "redis://127.0.0.1:6379/0"}
    return ("" if default else f"export REDIS_URL={redact_url(redis_url)}; ") + "python -m reader quote AAPL"


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    env = dict(os.environ)
    redis: RedisServer | None = None
    emulator: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        if not env.get("REDIS_URL"):
            port = int(env.get("MARKETCACHE_REDIS_PORT", "6379"))
            if port_open(port):
                _say(
                    f"port {port} is already in use. To use the Redis there, set "
                    f"REDIS_URL=redis://127.0.0.1:{port}/0; for a private one elsewhere, "
                    "set MARKETCACHE_REDIS_PORT"
                )
                return 1
            try:
                redis = RedisServer(port, data_dir=DATA_DIR / "redis", binary=find_redis_server())
                redis.start(start_new_session=True, preexec_fn=_die_with_parent)
            except RuntimeError as e:
                _say(str(e))
                return 1
            env["REDIS_URL"] = redis.url
            _say(f"private redis-server on {redis.url} (data in {DATA_DIR}/redis, AOF on)")
        emulated = emulated_upstreams(sys.argv[1:], env)
        if emulated:
            port = free_port()
            emulator = _spawn([sys.executable, "-m", "emulator", "--port", str(port)], env)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not port_open(port):
                if emulator.poll() is not None or time.monotonic() > deadline:
                    _say("the emulator did not start; see its output above")
                    return 1
                time.sleep(0.05)
            for upstream in emulated:
                env[ENV_OVERRIDES[("providers", upstream, "base_url")]] = f"http://127.0.0.1:{port}"
                env[API_KEY_ENV[upstream]] = EMULATOR_TOKEN
                _say(f"{API_KEY_ENV[upstream]} unset: using the local emulator on http://127.0.0.1:{port}")
        _say(f"in another terminal: . .venv/bin/activate; {reader_hint(env['REDIS_URL'])}")
        worker = _spawn([sys.executable, "-m", "worker", "run", *sys.argv[1:]], env)
        return worker.wait()
    except Stop as stop:
        _say(f"{stop}: stopping")
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        _stop(worker, signal.SIGINT)
        _stop(emulator, signal.SIGTERM)
        if redis is not None:
            redis.stop()


def _stop(process: subprocess.Popen[bytes] | None, signum: int, timeout_s: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    sys.exit(main())
