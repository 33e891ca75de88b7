"""libfaketime (Debian's `faketime`): what `make test-dates` fakes the clock with.

The clock is faked as an offset from the real time (`FAKETIME=+/-<seconds>`), not a start-at
timestamp: every process started under it, however late, reads the same time. The monotonic clock
is faked too: with `DONT_FAKE_MONOTONIC=1`, libfaketime 0.9.10 fails every `time.sleep()` with
EINVAL (Python sleeps until an absolute CLOCK_MONOTONIC deadline).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from devtools.apt import apt_install, can_apt_install

FAKED_CLOCK_ENV = ("LD_PRELOAD", "FAKETIME", "FAKETIME_NO_CACHE", "DONT_FAKE_MONOTONIC")
"""The variables libfaketime reads. A test hands them on to the processes it starts (so they read
the suite's clock); `devtools.redis_server` takes them away from redis-server, which does not run
under libfaketime (it reports recursive clock_gettime() calls and exits)."""

_LIBRARY_GLOB = "*/faketime/libfaketime.so.1"  # under /usr/lib: Debian's multiarch directory


def faketime_library() -> Path:
    """Path of libfaketime.so.1, installing Debian's `faketime` if it is missing and we are root.

    Raises FileNotFoundError saying how to install it otherwise."""
    found = _find_library()
    if found is None and can_apt_install():
        apt_install("faketime", "for make test-dates")
        found = _find_library()
    if found is None:
        raise FileNotFoundError(
            "libfaketime is not installed: apt-get install -y faketime (Debian), "
            "then run make test-dates again"
        )
    return found


def _find_library() -> Path | None:
    return next(iter(sorted(Path("/usr/lib").glob(_LIBRARY_GLOB))), None)


def faked_env(library: Path, start: datetime, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables that make a process started now (and its children) read `start` (aware) as now.

    Works from a process that libfaketime already shifts (`environ` holds its FAKETIME offset, which
    this clock includes). Raises ValueError if that FAKETIME is not an offset in seconds."""
    real_now_s = time.time() - _offset_s(environ)
    return {"LD_PRELOAD": str(library), "FAKETIME": f"{start.timestamp() - real_now_s:+.3f}"}


def _offset_s(environ: Mapping[str, str]) -> float:
    raw = environ.get("FAKETIME")
    if raw is None:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise ValueError(
            f"FAKETIME={raw!r} is not an offset in seconds; run this outside faketime, or unset FAKETIME"
        ) from None


def clock_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The libfaketime variables set in `environ`: what a child process needs to read the same clock."""
    return {name: environ[name] for name in FAKED_CLOCK_ENV if name in environ}
