"""How one upstream is doing, as this worker process sees it: its breaker, its incidents, and
what it was asked (the day counters of `worker.usage` and the Prometheus metrics of `worker.metrics`).

`worker.providers.http.request_json` reports every request's outcome here; one `UpstreamHealth`
per upstream is shared by its datasets (built with the providers, like the rate gate).
"""

from __future__ import annotations

from reader.clock import Clock, utc_now
from worker import metrics
from worker.breaker import Breaker, CircuitOpen
from worker.errors import UpstreamError
from worker.incidents import TRANSIENT, FaultKind, IncidentLog
from worker.usage import WAIT_COUNTED_S, UpstreamUsage


class UpstreamHealth:
    """`probe = health.check(endpoint)` before sending, then `succeeded(probe)` or
    `failed(kind, error, probe)`; `released(probe)` for a request that ended neither way. Each
    request sent is also reported to `sent`, one not sent for its rate window to `not_sent`, and
    its wait at the rate gate to `waited`.

    `usage` (the day counters not yet saved) may be handed over from the health this one replaces."""

    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        open_s: float = 30.0,
        clock: Clock = utc_now,
        usage: UpstreamUsage | None = None,
    ) -> None:
        self.name = name
        self.breaker = Breaker(name, failures=failures, open_s=open_s, clock=clock)
        self.incidents = IncidentLog(name, clock=clock)
        self.usage = usage if usage is not None else UpstreamUsage(name, clock=clock)

    def check(self, endpoint: str) -> bool:
        """Raise `CircuitOpen` (counted as a fault) if the breaker is open; True for the probe."""
        try:
            return self.breaker.check(endpoint)
        except CircuitOpen as e:
            self.incidents.fault("circuit_open", e)
            self.usage.fault("circuit_open")
            metrics.upstream_request(self.name, endpoint, "circuit_open")
            raise

    def sent(self, endpoint: str, answer: int | FaultKind) -> None:
        """A request to `endpoint` went out: `answer` is the HTTP status of its answer, or the fault
        kind when no whole answer came (timeout, connection)."""
        self.usage.sent(answer if isinstance(answer, int) else None)
        metrics.upstream_request(self.name, endpoint, answer)

    def not_sent(self, endpoint: str, kind: FaultKind) -> None:
        """A request to `endpoint` was given up before it went out (its rate window stays closed);
        its fault is counted by `failed`."""
        metrics.upstream_request(self.name, endpoint, kind)

    def waited(self, wait_s: float) -> None:
        """A request waited `wait_s` seconds at the rate gate in all (counted past 10 ms)."""
        if wait_s > WAIT_COUNTED_S:
            self.usage.waited(wait_s)
            metrics.rate_limit_wait(self.name, wait_s)

    def succeeded(self) -> None:
        """The upstream answered (a 2xx that parses, or a 404 for what it does not have)."""
        self.breaker.succeeded()
        self.incidents.recovered()

    def failed(self, kind: FaultKind, error: UpstreamError, probe: bool) -> None:
        """The request failed with `error`, of `kind`: counted; a transient kind counts toward the breaker."""
        if kind in TRANSIENT:
            self.breaker.failed(probe)
        else:
            self.breaker.released(probe)
        self.incidents.fault(kind, error)
        self.usage.fault(kind)

    def released(self, probe: bool) -> None:
        """The request ended without an answer that says anything (it was cancelled)."""
        self.breaker.released(probe)

    def __repr__(self) -> str:
        return f"<UpstreamHealth {self.breaker!r} {self.incidents!r}>"
