"""Tradier's rate limit: per token, a 1-minute window that starts at the token's first request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(minutes=1)


@dataclass(frozen=True)
class Allowance:
    """The state of one token's window after a request; `granted` False means answer 429."""

    granted: bool
    allowed: int
    used: int
    expiry: datetime

    def headers(self) -> dict[str, str]:
        return {
            "X-Ratelimit-Allowed": str(self.allowed),
            "X-Ratelimit-Used": str(self.used),
            "X-Ratelimit-Available": str(max(self.allowed - self.used, 0)),
            "X-Ratelimit-Expiry": str(int(self.expiry.timestamp() * 1000)),
        }


class WindowLimiter:
    """Counts requests per token in fixed windows of `WINDOW`; `rate_per_min` requests per window."""

    def __init__(self, rate_per_min: int) -> None:
        self.rate_per_min = rate_per_min
        self._windows: dict[str, tuple[datetime, int]] = {}

    def take(self, token: str, now: datetime) -> Allowance:
        """Spend one request of `token`'s window, if any is left."""
        expiry, used = self._windows.get(token, (now, 0))
        if now >= expiry:
            expiry, used = now + WINDOW, 0
        granted = used < self.rate_per_min
        if granted:
            used += 1
        self._windows[token] = (expiry, used)
        return Allowance(granted=granted, allowed=self.rate_per_min, used=used, expiry=expiry)

    def reset(self) -> None:
        self._windows.clear()
