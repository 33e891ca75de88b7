"""`make run` from a fresh copy of the repository serves fresh quotes within 30 s; Ctrl-C leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.redis_server import free_port, port_open

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 30.0


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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_make_run_serves_fresh_quotes_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """From a fresh copy: fresh quotes through `python -m reader` in under 30 s; SIGINT cleans up."""
    clone = tmp_path / "marketcache"
    clone.mkdir()
    _fresh_copy(clone)
    venv = Path(sys.prefix)
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "TRADIER_API_KEY", "TRADIER_BASE_URL"}
    }
    env["MARKETCACHE_REDIS_PORT"] = str(port)
    started = time.monotonic()
    # -o: the shared virtualenv counts as installed; its install is not what this test times.
    make = subprocess.Popen(
        ["make", "run", f"VENV={venv}", "-o", f"{venv}/.stamp-run"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    reader_env = {**env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    quote = None
    try:
        while time.monotonic() - started < DEADLINE_S:
            assert make.poll() is None, make.communicate()[0].decode()
            result = subprocess.run(
                [sys.executable, "-m", "reader", "quote", "AAPL"],
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
        elapsed_s = time.monotonic() - started
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        output = make.communicate(timeout=60)[0].decode()
    assert quote is not None, f"no quote within {DEADLINE_S} s:\n{output}"
    assert elapsed_s < DEADLINE_S
    assert quote["stale"] is False
    assert quote["source"] == "tradier"
    assert quote["last"] > 0
    assert "using the local emulator" in output
    assert (clone / ".data" / "redis").is_dir()  # AOF lives in the clone's .data/

    deadline = time.monotonic() + 10
    while (_processes_in(clone) or port_open(port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_in(clone) == []
    assert not port_open(port)
