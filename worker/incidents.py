"""Upstream incidents: one log line when a provider starts failing, one when it recovers.

An incident starts with the first fault after a good answer (or after start) and ends with the
next good answer. The start is logged once, as a WARNING naming the provider, the fault kind and
the first error; the faults that follow are only counted; the end is one INFO line with the
counts of each kind and the duration. A refresh that fails meanwhile logs at INFO only.

Counts of each kind per provider are kept in Redis for a status command, in
`reader.keys.upstream_faults(provider)` (a hash of kind -> count, added to by every worker
process), and the incident in progress in `reader.keys.upstream_incident(provider)` (a hash of
`started_at`, `kind`, `error`; deleted when it ends). Requests do not write Redis: counts are
gathered in memory and `flush`ed by the jobs, one pipeline per job, at its end.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Literal, get_args

import redis.asyncio

from reader import keys
from reader.clock import Clock, utc_now
from worker.errors import UpstreamError
from worker.logs import fields

log = logging.getLogger(__name__)

FaultKind = Literal[
    "server_error",  # 5xx
    "timeout",  # no whole answer within timeout_s: a hang, or a body trickling in
    "connection",  # refused, reset, closed before or in the middle of the answer
    "bad_payload",  # a 2xx that is not JSON: truncated, an HTML page from a proxy, XML
    "rate_limited",  # 429 after waiting for the announced window, or a window closed too long
    "auth",  # 401/403
    "client_error",  # another 4xx (not 404: that is an answer, "no such symbol")
    "circuit_open",  # not called: the breaker is open
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
TRANSIENT: frozenset[str] = frozenset(
    {"server_error", "timeout", "connection", "bad_payload", "rate_limited"}
)
"""Kinds that say the upstream is unwell now and may be well later: they count toward its breaker."""


_NOTE = "counted as an upstream fault: "


def mark(error: BaseException, kind: FaultKind) -> None:
    """Note on `error` that it was counted as a fault of `kind` (`reported_kind` reads it back)."""
    error.add_note(_NOTE + kind)


def reported_kind(error: BaseException) -> str | None:
    """The fault kind an upstream's health counted `error` as; None if it counted none (an error
    raised after the answer, such as a payload that parses but does not fit the model)."""
    for note in getattr(error, "__notes__", ()):
        if isinstance(note, str) and note.startswith(_NOTE):
            return note.removeprefix(_NOTE)
    return None


def transient(error: BaseException) -> bool:
    """Whether a refresh that failed with `error` is worth retrying soon: a transient upstream
    fault (`TRANSIENT`, or the breaker open), or Redis failing."""
    return reported_kind(error) in TRANSIENT | {"circuit_open"} or isinstance(error, redis.RedisError)


class IncidentLog:
    """The incidents of one upstream in this process; `fault` and `recovered` after each request."""

    def __init__(self, provider: str, *, clock: Clock = utc_now) -> None:
        self.provider = provider
        self.clock = clock
        self.started_at: datetime | None = None
        self.first_kind: str | None = None
        self.first_error: str | None = None
        self.counts: Counter[str] = Counter()  # of the incident in progress
        self._unsaved: Counter[str] = Counter()  # not yet added to Redis
        self._incident_unsaved = False  # the incident key does not say what this process knows
        self._seen_well = False

    @property
    def open(self) -> bool:
        return self.started_at is not None

    def fault(self, kind: FaultKind, error: UpstreamError) -> None:
        """Count a fault (and note it on `error`); the first of an incident is logged."""
        mark(error, kind)
        self.counts[kind] += 1
        self._unsaved[kind] += 1
        if self.started_at is not None:
            return
        self.started_at, self.first_kind, self.first_error = self.clock(), kind, str(error)
        self._incident_unsaved = True
        log.warning(
            "upstream.incident_started %s",
            fields(provider=self.provider, kind=kind, error=f'"{error}"'),
        )

    def recovered(self) -> None:
        """A good answer: ends the incident in progress, with one line."""
        if not self._seen_well:
            self._seen_well = True
            self._incident_unsaved = True  # clears an incident left in Redis by a stopped process
        if self.started_at is None:
            return
        duration_s = (self.clock() - self.started_at).total_seconds()
        log.info(
            "upstream.incident_ended %s",
            fields(
                provider=self.provider,
                duration_s=round(duration_s, 1),
                faults=sum(self.counts.values()),
                kinds=",".join(f"{kind}:{n}" for kind, n in self.counts.most_common()),
                first=self.first_kind,
            ),
        )
        self.started_at = self.first_kind = self.first_error = None
        self.counts.clear()
        self._incident_unsaved = True

    async def flush(self, client: redis.asyncio.Redis) -> None:
        """Add the unsaved counts to Redis and record the incident in progress (or its end); what
        a failed write did not save is kept for the next flush."""
        counts, self._unsaved = self._unsaved, Counter()
        incident_unsaved, self._incident_unsaved = self._incident_unsaved, False
        if not counts and not incident_unsaved:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                for kind, count in counts.items():
                    pipe.hincrby(keys.upstream_faults(self.provider), kind, count)
                if incident_unsaved and self.started_at is not None:
                    pipe.delete(keys.upstream_incident(self.provider))
                    pipe.hset(
                        keys.upstream_incident(self.provider),
                        mapping={
                            "started_at": self.started_at.isoformat(),
                            "kind": self.first_kind or "",
                            "error": self.first_error or "",
                        },
                    )
                elif incident_unsaved:
                    pipe.delete(keys.upstream_incident(self.provider))
                await pipe.execute()
        except redis.RedisError:
            self._unsaved.update(counts)
            self._incident_unsaved |= incident_unsaved
            raise

    def __repr__(self) -> str:
        state = f"since {self.started_at:%H:%M:%S}" if self.started_at is not None else "none"
        return f"<IncidentLog {self.provider} incident={state} faults={sum(self.counts.values())}>"
