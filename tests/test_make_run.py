"""`make run` from a fresh copy of the repository: it builds its own .venv, then serves fresh quotes
within 30 s through `python -m reader`; Ctrl-C leaves nothing running.

The install itself (pip, from the package index or its cache) is timed and printed, not judged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from devtools.redis_server import free_port, port_open

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 30.0
INSTALL_LIMIT_S = 600.0


def _fresh_copy(target: Path) -> None:
    """The files a clone would have (tracked, plus new files not ignored), mtimes kept."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _processes_in(directory: Path) -> list[str]:
    """Command lines of live processes whose working directory is inside `directory`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = (proc / "cwd").readlink()
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "State:\tZ" in status:
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(f"{proc.name}: {cmdline}")
    return found


class _Output:
    """Lines a process prints, each with the time it arrived, read on a thread."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[tuple[float, str]] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in iter(self._stream.readline, b""):
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def first(self, prefix: str) -> float | None:
        return next((at for at, line in self.lines if line.startswith(prefix)), None)

    def text(self) -> str:
        self._thread.join(10)
        return "\n".join(line for _, line in self.lines)


@pytest.mark.long(seconds=57)
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_make_run_serves_fresh_quotes_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """From a fresh copy: make installs, then fresh quotes come through `python -m reader` within 30 s."""
    clone = tmp_path / "marketcache"
    clone.mkdir()
    _fresh_copy(clone)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "TRADIER_API_KEY", "TRADIER_BASE_URL", "VIRTUAL_ENV"}
    }
    env["MARKETCACHE_REDIS_PORT"] = str(port)
    started = time.monotonic()
    make = subprocess.Popen(
        ["make", "run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = _Output(make)
    reader_env = {**env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    python = clone / ".venv" / "bin" / "python"  # the environment make run just built
    quote = None
    try:
        while (launched := output.first("make run:")) is None:
            assert make.poll() is None, f"make run exited early:\n{output.text()}"
            assert time.monotonic() - started < INSTALL_LIMIT_S, f"install took too long:\n{output.text()}"
            time.sleep(0.2)
        while time.monotonic() - launched < DEADLINE_S:
            assert make.poll() is None, output.text()
            result = subprocess.run(
                [str(python), "-m", "reader", "quote", "AAPL"],
                cwd=clone,
                env=reader_env,
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            if result.returncode == 0:
                quote = json.loads(result.stdout)["AAPL"]
                break
            time.sleep(0.25)
        served_s = time.monotonic() - launched
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        make.wait(timeout=60)
        log = output.text()
        assert make.stdout is not None
        make.stdout.close()
    print(f"make run: install {launched - started:.1f} s, then first fresh quote after {served_s:.1f} s")
    assert quote is not None, f"no quote within {DEADLINE_S} s of the launch:\n{log}"
    assert served_s < DEADLINE_S
    assert quote["stale"] is False
    assert quote["source"] == "tradier"
    assert quote["last"] > 0
    assert "using the local emulator" in log
    assert (clone / ".data" / "redis").is_dir()  # AOF lives in the clone's .data/

    deadline = time.monotonic() + 10
    while (_processes_in(clone) or port_open(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(clone) == []
    assert not port_open(port)
