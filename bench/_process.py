"""Starting the processes a benchmark measures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start_python(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`python *args` from the repository, with `env` added to this environment; stderr piped."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
