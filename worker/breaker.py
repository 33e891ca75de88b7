"""A circuit breaker per upstream: stop calling one that keeps failing, probe it again later.

Closed, every request goes through; `failures` transient failures in a row (5xx, timeouts,
connection failures, answers that are not JSON, 429s after waiting) open it. Open, requests fail
at once with `CircuitOpen`, without a call, for `open_s`. Then the first request is the probe
(half-open): the others still fail fast while it runs; if it succeeds the breaker closes, if it
fails it opens again for `open_s`. Any success closes it, so does a late answer to a request sent
before it opened. Answers that say nothing about the upstream's health (401/403, 404, another
4xx) neither open nor close it.

Time is the injected clock's. One breaker serves every job of a process (the providers share it,
as they share their rate gate); each worker process of a fleet decides on its own.

Not a library: `aiobreaker` and `purgatory` read `datetime.now()`/`time.time()` directly (no
injectable clock, so tests would have to sleep through `open_s`) and let every concurrent request
through while half-open; what is needed here is about sixty lines.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from reader.clock import Clock, utc_now
from worker.errors import UpstreamUnavailable

BreakerState = Literal["closed", "open", "half-open"]


class CircuitOpen(UpstreamUnavailable):
    """The upstream's breaker is open: the request was not sent."""


class Breaker:
    """`probe = check(endpoint)` before a request, then `succeeded()`, `failed(probe)` or
    `released(probe)` after it."""

    def __init__(self, name: str, *, failures: int, open_s: float, clock: Clock = utc_now) -> None:
        if failures < 1 or open_s <= 0:
            raise ValueError(f"breaker of {name}: failures must be >= 1 and open_s > 0")
        self.name = name
        self.failures = failures
        self.open_s = open_s
        self.clock = clock
        self.state: BreakerState = "closed"
        self.failed_in_row = 0
        self.probe_at: datetime | None = None  # when an open breaker lets its probe through
        self._probing = False

    def check(self, endpoint: str) -> bool:
        """Let a request through, or raise `CircuitOpen`; True if this request is the probe."""
        if self.state == "closed" or self.probe_at is None:
            return False
        if self.state == "open" and self.clock() >= self.probe_at:
            self.state = "half-open"
        if self.state == "half-open" and not self._probing:
            self._probing = True
            return True
        wait = (
            "a probe is in flight"
            if self.state == "half-open"
            else f"next probe {self.probe_at:%H:%M:%S} UTC"
        )
        raise CircuitOpen(
            self.name, endpoint, f"circuit open after {self.failures} failures in a row, not called ({wait})"
        )

    def succeeded(self) -> bool:
        """The upstream answered well; returns True if that closed the breaker."""
        was_open = self.state != "closed"
        self.state, self.failed_in_row, self.probe_at, self._probing = "closed", 0, None, False
        return was_open

    def failed(self, probe: bool) -> bool:
        """A transient failure; returns True if that opened the breaker (or opened it again)."""
        if probe and self.state == "half-open":
            self._open()
            return True
        if self.state != "closed":
            return False  # the answer to a request sent before the breaker opened
        self.failed_in_row += 1
        if self.failed_in_row >= self.failures:
            self._open()
            return True
        return False

    def released(self, probe: bool) -> None:
        """The request ended saying nothing about the upstream's health (a 4xx, a cancellation):
        if it was the probe, the next request probes instead."""
        if probe:
            self._probing = False

    def _open(self) -> None:
        self.state, self._probing = "open", False
        self.probe_at = self.clock() + timedelta(seconds=self.open_s)

    def __repr__(self) -> str:
        return (
            f"<Breaker {self.name} {self.state} failures={self.failed_in_row}/{self.failures} "
            f"open_s={self.open_s:g}>"
        )
