"""How one upstream is doing, as this worker process sees it: its breaker and its incidents.

`worker.providers.http.request_json` reports every request's outcome here; one `UpstreamHealth`
per upstream is shared by its datasets (built with the providers, like the rate gate).
"""

from __future__ import annotations

from reader.clock import Clock, utc_now
from worker.breaker import Breaker, CircuitOpen
from worker.errors import UpstreamError
from worker.incidents import TRANSIENT, FaultKind, IncidentLog


class UpstreamHealth:
    """`probe = health.check(endpoint)` before sending, then `succeeded(probe)` or
    `failed(kind, error, probe)`; `released(probe)` for a request that ended neither way."""

    def __init__(self, name: str, *, failures: int = 5, open_s: float = 30.0, clock: Clock = utc_now) -> None:
        self.name = name
        self.breaker = Breaker(name, failures=failures, open_s=open_s, clock=clock)
        self.incidents = IncidentLog(name, clock=clock)

    def check(self, endpoint: str) -> bool:
        """Raise `CircuitOpen` (counted as a fault) if the breaker is open; True for the probe."""
        try:
            return self.breaker.check(endpoint)
        except CircuitOpen as e:
            self.incidents.fault("circuit_open", e)
            raise

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

    def released(self, probe: bool) -> None:
        """The request ended without an answer that says anything (it was cancelled)."""
        self.breaker.released(probe)

    def __repr__(self) -> str:
        return f"<UpstreamHealth {self.breaker!r} {self.incidents!r}>"
