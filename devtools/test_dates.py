"""`make test-dates`: the whole test suite, once per instant, with the clock starting at that instant.

    python -m devtools.test_dates [--only LABEL ...] [PYTEST_ARGS ...]

The clock is faked with libfaketime (`devtools.faketime`; Debian's `faketime`, installed here when
missing and run as root) as an offset from the real time, computed just before each run: pytest,
the emulator it serves, and every worker and reader process the tests start (they hand the
variables on) read the same clock. redis-server runs without it (`devtools.redis_server`): it
does not start under libfaketime, and needs no fake clock (its TTLs are relative).

Each run's output goes to `.data/test-dates/<label>.log`; the summary prints each run's result
line and duration. Exit status 0 only if every run passed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from devtools.faketime import faked_env, faketime_library

ET = ZoneInfo("America/New_York")
LOG_DIR = Path(".data/test-dates")


@dataclass(frozen=True)
class Instant:
    label: str
    start: datetime
    why: str


INSTANTS = (
    Instant("sunday", datetime(2026, 11, 29, 10, 0, tzinfo=ET), "a weekend day"),
    Instant("thanksgiving", datetime(2026, 11, 26, 12, 0, tzinfo=ET), "a holiday"),
    Instant("early-close", datetime(2026, 11, 27, 16, 30, tzinfo=ET), "after a 13:00 close, post-market"),
    Instant("dst", datetime(2027, 3, 14, 1, 59, 30, tzinfo=ET), "clocks spring forward during the run"),
    Instant("year-end", datetime(2026, 12, 31, 23, 59, 30, tzinfo=ET), "the year ends during the run"),
    Instant("session", datetime(2026, 12, 8, 10, 0, tzinfo=ET), "a regular session"),
)


def _check(library: Path) -> None:
    """Raises SystemExit unless a process started under `faked_env` reads the instant it was given."""
    start = INSTANTS[0].start
    try:
        env = {**os.environ, **faked_env(library, start)}
    except ValueError as e:
        raise SystemExit(f"make test-dates: {e}") from None
    code = "from datetime import datetime, UTC; print(datetime.now(UTC).isoformat())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    seen = datetime.fromisoformat(out.stdout.strip())
    if abs((seen - start).total_seconds()) > 60:
        raise SystemExit(f"make test-dates: libfaketime did not take: a process read {seen}, not {start}")


def run(instant: Instant, library: Path, pytest_args: list[str]) -> tuple[bool, str, float]:
    """One whole suite with the clock starting at `instant`: (passed, pytest's result line, seconds)."""
    env = {**os.environ, **faked_env(library, instant.start)}  # just before the run: the offset
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{instant.label}.log"
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--no-cov", "-p", "no:cacheprovider", *pytest_args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    elapsed_s = time.monotonic() - started
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else "(no output)"
    return done.returncode == 0, summary, elapsed_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.test_dates", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--only", action="append", choices=[i.label for i in INSTANTS], help="run just these")
    args, pytest_args = parser.parse_known_args(argv)
    try:
        library = faketime_library()
    except FileNotFoundError as e:
        raise SystemExit(f"make test-dates: {e}") from None
    _check(library)
    chosen = [i for i in INSTANTS if not args.only or i.label in args.only]
    results = []
    total_started = time.monotonic()
    for instant in chosen:
        print(
            f"test-dates: {instant.label}: clock from {instant.start.isoformat()} ({instant.why})", flush=True
        )
        passed, summary, elapsed_s = run(instant, library, pytest_args)
        print(f"test-dates: {instant.label}: {summary} [{elapsed_s:.0f} s]", flush=True)
        results.append((instant, passed, summary, elapsed_s))
    print(f"\n{'instant':<13} {'clock starts at (ET)':<26} {'s':>5}  result")
    for instant, passed, summary, elapsed_s in results:
        start = instant.start.strftime("%a %Y-%m-%d %H:%M:%S")
        print(f"{instant.label:<13} {start:<26} {elapsed_s:>5.0f}  {'ok  ' if passed else 'FAIL'} {summary}")
    print(f"total {time.monotonic() - total_started:.0f} s; logs in {LOG_DIR}/")
    return 0 if all(passed for _, passed, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
