"""`python -m bench`: run every benchmark of bench/ in turn, then print one table of their figures.

Each script runs in a process of its own (its timings are not disturbed by the others, and the
processes it starts are its own), prints its own lines as it does when run alone, and writes its
headline figures to a file (`--figures-json`). The table puts each figure beside the baseline
measured in the same run, their ratio, and the target where there is one, with a verdict.

By default the long benchmarks run shorter than they do alone (about 3 minutes in all on a
quiet 2-core machine): bench/load.py reads for 12 s instead of 36 s with 200 symbols instead of
500, bench/scale.py runs 1 and 2 workers for 15 s each instead of 1, 2 and 3 for 60 s,
bench/miss_path.py times 40 misses instead of 100, bench/reader_hit.py 10,000 hits and 500 batches
instead of 20,000 and 1,000. `--full` runs every script at its own length (about 7 minutes).
bench/worker_rss.py runs its 500 and 5,000 refresh cycles either way.

    python -m bench [--full] [--check] [--only reader_hit,worker_rss] [--url redis://...]

Exits 1 if a script fails (an error, a torn read, the worker's memory growing by more than 10 %
from 500 to 5,000 cycles); with --check, also if a figure misses its target (timings on a busy
machine can: the table says MISSED either way).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import _figures
from bench._figures import Figure

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Script:
    """A bench/ script, with the arguments of its short run (`python -m bench`) and of its full one."""

    name: str
    short: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    takes_url: bool = True
    directory: Path = HERE

    @property
    def path(self) -> Path:
        return self.directory / f"{self.name}.py"

    def args(self, *, full: bool) -> tuple[str, ...]:
        return self.full if full else self.short


SCRIPTS = (
    Script(
        "reader_hit",
        short=("--iterations", "10000", "--requests-cache-iterations", "1000", "--batch-iterations", "500"),
    ),
    Script("chain_storage"),
    Script("calls_per_week", takes_url=False),
    Script("miss_path", short=("--misses", "40")),
    Script("worker_rss"),
    Script("load", short=("--symbols", "200", "--seconds", "9", "--paused-seconds", "3", "--rounds", "3")),
    Script("scale", short=("--workers", "1,2", "--seconds", "15")),
)
"""Every benchmark, in the order they run: those that start no worker process first."""


@dataclass
class Ran:
    script: Script
    command: list[str]
    returncode: int
    seconds: float
    figures: list[Figure]


def run(script: Script, *, full: bool, url: str | None, out: Path) -> Ran:
    """Run `script` in a process of its own, its output passed through; its figures read back."""
    figures_path = out / f"{script.name}.json"
    command = [sys.executable, str(script.path), *script.args(full=full)]
    if url and script.takes_url:
        command += ["--url", url]
    shown = " ".join([f"{script.directory.name}/{script.path.name}", *command[2:]])
    print(f"\n=== {shown}", flush=True)
    started = time.monotonic()
    returncode = subprocess.run([*command, "--figures-json", str(figures_path)], check=False).returncode
    seconds = time.monotonic() - started
    figures = _figures.read(figures_path, script.name) if figures_path.exists() else []
    status = "" if returncode == 0 else f", exit status {returncode}"
    print(f"=== {script.name}: {seconds:.0f} s{status}", flush=True)
    return Ran(script, command, returncode, seconds, figures)


def main(argv: list[str] | None = None, scripts: Sequence[Script] = SCRIPTS) -> int:
    """Run the `scripts` that `argv` chooses, print their table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="run every script at its own (longer) length")
    parser.add_argument("--check", action="store_true", help="exit 1 if a figure misses its target")
    parser.add_argument(
        "--only",
        help=f"comma-separated scripts to run (default: all of {', '.join(s.name for s in scripts)})",
    )
    parser.add_argument(
        "--url", help="an existing Redis for the scripts, which some flush (default: each starts its own)"
    )
    args = parser.parse_args(argv)
    chosen = list(scripts)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        known = {s.name: s for s in scripts}
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"--only: no script {', '.join(unknown)}; expected some of {', '.join(known)}")
        chosen = [known[n] for n in names]

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        ran = [run(s, full=args.full, url=args.url, out=Path(out)) for s in chosen]
    elapsed_s = time.monotonic() - started
    every = [f for r in ran for f in r.figures]
    failed = [
        f"{r.script.directory.name}/{r.script.path.name}" for r in ran if r.returncode != 0 or not r.figures
    ]
    length = "full length" if args.full else "short runs (--full for their own length)"
    scripts_ran = f"{len(ran)} script{'' if len(ran) == 1 else 's'}"
    print(f"\nmarketcache benchmarks: {scripts_ran} in {elapsed_s:.0f} s, {length}")
    print(_figures.table(every, failed))
    missed = _figures.missed(every)
    what = [*(f"{s} failed" for s in failed), *(f"{f.name} missed its target" for f in missed)]
    if what:
        print(f"{'FAILED' if failed or args.check else 'NOTE'}: {'; '.join(what)}")
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
