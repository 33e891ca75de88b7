"""`python -m worker refresh` tells how far it has gone: a line per dataset done when the output is
not a terminal, a progress bar per dataset on a terminal (done / total symbols, calls, elapsed,
time left under the rate limit)."""

from __future__ import annotations

import io
import re
import time

import pytest
import redis
from rich.console import Console

from reader import keys
from tests.support import QUOTES_ONLY, FakeClock, RunningEmulator, make_config
from worker.__main__ import _refresh_once
from worker.config import Config, Secrets
from worker.progress import DatasetProgress


def _config(redis_url: str, emulator: RunningEmulator) -> Config:
    return make_config(
        ["AAPL", "MSFT", "SPY"],
        redis_url=redis_url,
        tradier_url=emulator.url,
        datasets={
            **QUOTES_ONLY,
            "history": {"enabled": True, "intraday": None, "daily": {"lookback_days": 10}},
        },
        worker={"symbols_per_job": 1},
    )


LINE = r"refreshed {dataset}: stored 3 of 3 symbols \(3/3 symbols, {calls} calls?, \d+\.\d s\)"


async def test_refresh_piped_prints_a_line_per_dataset_with_its_figures(
    redis_url: str,
    emulator: RunningEmulator,
    secrets: Secrets,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a terminal: one line per dataset as it ends, with symbols done of the total, the
    upstream calls it made and the time it took; no escape code."""
    assert await _refresh_once(_config(redis_url, emulator), secrets, clock=clock) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2, out
    assert re.fullmatch(LINE.format(dataset="quotes", calls=1), out[0]), out[0]
    assert re.fullmatch(LINE.format(dataset="history", calls=3), out[1]), out[1]
    assert redis.Redis.from_url(redis_url).exists(keys.history("SPY", "1d")) == 1


async def test_refresh_on_a_terminal_draws_a_bar_per_dataset(
    redis_url: str,
    emulator: RunningEmulator,
    secrets: Secrets,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A terminal: a bar per dataset (its name, done / total, calls, elapsed, time left), and the
    same line per dataset printed above the bars."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    assert await _refresh_once(_config(redis_url, emulator), secrets, console=console, clock=clock) == 0
    drawn = screen.getvalue()
    assert capsys.readouterr().out == ""  # everything went to the console
    final = drawn.rsplit("\x1b[2K", 1)[-1]  # rich clears each line before drawing it again
    assert re.search(r"history\s+\S*━+\S*\s+3/3 symbols  3 calls  \d+\.\ds  done", drawn), drawn
    assert re.search(r"quotes\s+\S*━+\S*\s+3/3 symbols  1 call  \d+\.\ds  done", drawn), drawn
    assert re.search(LINE.format(dataset="quotes", calls=1), drawn)
    assert re.search(LINE.format(dataset="history", calls=3), drawn)
    assert "history" in final


def test_the_time_left_is_the_longer_of_the_rate_limit_and_the_pace_so_far() -> None:
    """5 of 10 symbols done in 1 s, 10 calls planned at 60/min: 5 calls left take 5 s at the rate."""
    progress = DatasetProgress("history", total=10, planned_calls=10, rate_per_min=60, done=5)
    progress.started = time.monotonic() - 1
    assert progress.eta_s == pytest.approx(5.0)
    progress.rate_per_min = 6000  # a wide allowance: the pace so far decides (1 s per 5 symbols)
    assert progress.eta_s == pytest.approx(1.0, abs=0.1)
    progress.done = 10
    assert progress.eta_s == 0.0
