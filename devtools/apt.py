"""Debian packages the project's own commands install when they are missing (root only)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

APT_TIMEOUT_S = 300
LOCK_FILE = Path(tempfile.gettempdir()) / "marketcache-apt.lock"


def can_apt_install() -> bool:
    """True where `apt_install` can work: root, with apt-get on PATH."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(package: str, why: str) -> bool:
    """`apt-get install -y PACKAGE` (then `apt-get update` and once more if that failed); True if
    it succeeded. `why` is printed first, so the user knows what the wait is for. Installs from
    several processes at once (the parallel tests) take turns instead of failing on dpkg's lock."""
    # RUNLEVEL=1 keeps a package's init script from starting a service (a system Redis on 6379).
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "RUNLEVEL": "1"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    print(f"installing Debian's {package} (apt-get) {why}", file=sys.stderr)
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            for attempt in (command, ["apt-get", "update", "-q"], command):
                done = subprocess.run(
                    attempt, env=env, capture_output=True, check=False, timeout=APT_TIMEOUT_S
                )
                if attempt is command and done.returncode == 0:
                    return True
        except subprocess.TimeoutExpired:
            print(f"apt-get took over {APT_TIMEOUT_S} s", file=sys.stderr)
    return False
