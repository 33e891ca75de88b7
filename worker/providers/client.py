"""What every upstream client shares: its session, gate, key and clock, one request helper, and
the envelope it stamps on what it returns. `TradierProvider` and `PolygonProvider` add the
endpoints and the wire formats of their API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from reader.clock import Clock, utc_now
from worker.health import UpstreamHealth
from worker.providers.base import Freshness
from worker.providers.http import request_json
from worker.providers.wire import bearer_headers, envelope
from worker.ratelimit import RateGate


class UpstreamClient:
    """One upstream API at `base_url`, paced by `gate`, guarded by `health` (its breaker and
    incidents; a new one if not given). Subclasses set `name` and `auth_hint` (what to check after a
    401/403), and override `_rate_window` if the API announces its rate window."""

    name: str
    auth_hint: str

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        gate: RateGate,
        batch_size: int,
        timeout_s: float,
        clock: Clock = utc_now,
        health: UpstreamHealth | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.gate = gate
        self.health = health if health is not None else UpstreamHealth(self.name, clock=clock)
        self._session = session
        self._clock = clock
        self._api_key = api_key
        self._headers = bearer_headers(api_key)

    async def _call(
        self,
        endpoint: str,
        *,
        url: str | None = None,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Any:
        """One request to `endpoint` (at `url`, default base_url + endpoint): a GET with `params`, or a
        POST of `form`; the decoded JSON, or an `UpstreamError` that never quotes the key."""
        return await request_json(
            self._session,
            self.gate,
            provider=self.name,
            method="GET" if form is None else "POST",
            url=url or self.base_url + endpoint,
            endpoint=endpoint,
            headers=self._headers,
            params=params,
            form=form,
            timeout_s=self.timeout_s,
            window=self._rate_window,
            auth_hint=self.auth_hint,
            secrets=(self._api_key,),
            health=self.health,
        )

    def _rate_window(self, headers: CIMultiDictProxy[str]) -> tuple[int | None, datetime | None]:
        """Requests left and the window's end, from a response's headers; (None, None): not said."""
        return None, None

    def _check_batch(self, symbols: Sequence[str]) -> None:
        if len(symbols) > self.batch_size:
            raise ValueError(f"{len(symbols)} symbols exceed batch_size={self.batch_size}; split the list")

    def _stamp(self, freshness: Freshness) -> dict[str, Any]:
        return envelope(self.name, self._clock, freshness)

    def __repr__(self) -> str:
        rate = self.gate.rate_per_min
        return f"<{type(self).__name__} {self.base_url} rate={rate}/min batch={self.batch_size}>"
