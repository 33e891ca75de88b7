"""Trading activity of option contracts: open interest, today's volume, the first and last trade.

Fidelity points: open interest falls off away from the money and for weeklies, about 10 % of the
contracts never traded (no last, prevclose or trade date), today's volume grows through the
regular session and is 0 before it; a contract not traded today keeps its last trade from the
previous session, with open/high/low unset; `close` is set once the session has closed. All of it
is a deterministic function of (seed, contract, session).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from emulator.market import Listing, Market, hash64, unit

_YEAR_S = 365 * 86_400

Pricer = Callable[[list[tuple[float, bool, datetime]]], list[float]]
"""Model prices, to the cent, of (strike, is_call, instant) triples of one expiration."""


@dataclass(frozen=True)
class Activity:
    """What trading left on one contract: the `OptionQuote` fields that are not quotes or Greeks."""

    open_interest: int
    volume: int = 0
    last: float | None = None
    trade_time: datetime | None = None
    last_volume: int = 0
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    prevclose: float | None = None


@dataclass(frozen=True)
class _Plan:
    """When a contract last traded (and first, today), before its prices are computed."""

    open_interest: int
    volume: int = 0
    last_volume: int = 0
    trade_time: datetime | None = None
    first_time: datetime | None = None


class TradeTape:
    """Open interest, today's volume and the last trade of the contracts of one chain."""

    def __init__(
        self,
        market: Market,
        listing: Listing,
        expiration_type: str,
        expires_at: datetime,
        at: datetime,
        qt: datetime,
        pricer: Pricer,
    ) -> None:
        self.seed, self.listing, self.at, self.qt, self.pricer = market.seed, listing, at, qt, pricer
        self.day = market.calendar.latest_trading_day(at)
        self.previous = market.calendar.previous_trading_day(self.day)
        session_s = (self.day.close - self.day.open).total_seconds()
        self.fraction = min(max((at - self.day.open).total_seconds() / session_s, 0.0), 1.0)
        reference = market.quote(listing.symbol, at)
        assert reference is not None
        self.reference = reference.prevclose
        years_left = (expires_at - at).total_seconds() / _YEAR_S
        self.weight = (1.0 if expiration_type == "standard" else 0.4) * math.exp(-years_left / 1.5)

    def activities(self, contracts: list[tuple[str, float, bool]]) -> list[Activity]:
        """One `_Activity` per (OCC symbol, strike, is_call); the trade prices are priced in one go."""
        plans = [self._plan(*contract) for contract in contracts]
        wanted: list[tuple[float, bool, datetime]] = []
        for (_, strike, is_call), plan in zip(contracts, plans, strict=True):
            if plan.trade_time is not None:
                times = [
                    plan.trade_time,
                    self.previous.close,
                    *([plan.first_time] if plan.first_time else []),
                ]
                wanted += [(strike, is_call, at) for at in times]
        values = iter(self.pricer(wanted))
        activities = []
        for plan in plans:
            if plan.trade_time is None:
                activities.append(Activity(open_interest=plan.open_interest))
                continue
            last, prevclose = next(values), next(values)
            open_ = next(values) if plan.first_time else None
            activities.append(
                Activity(
                    open_interest=plan.open_interest,
                    volume=plan.volume,
                    last=last,
                    trade_time=plan.trade_time,
                    last_volume=plan.last_volume,
                    open=open_,
                    high=None if open_ is None else max(open_, last),
                    low=None if open_ is None else min(open_, last),
                    close=last if open_ is not None and self.at >= self.day.close else None,
                    prevclose=prevclose,
                )
            )
        return activities

    def _plan(self, occ: str, strike: float, is_call: bool) -> _Plan:
        seed = self.seed
        size = self.listing.average_volume / 100 * math.exp(-6 * abs(math.log(strike / self.reference)))
        oi = int(size * self.weight * (0.3 + 1.4 * unit(seed, occ, "oi")))
        if oi == 0 or unit(seed, occ, "never-traded") < 0.1:
            return _Plan(open_interest=0)
        volume = int(oi * 0.25 * unit(seed, occ, self.day.date, "volume") * self.fraction)
        u = unit(seed, occ, self.day.date, "time")
        if volume == 0:
            trade_time = self.previous.close - timedelta(hours=3) * u
            return _Plan(oi, 0, 1 + hash64(occ) % 20, trade_time.replace(second=0, microsecond=0))
        trade_time = self.day.open + (self.qt - self.day.open) * (0.7 + 0.3 * u)
        first_time = self.day.open + (trade_time - self.day.open) * unit(seed, occ, self.day.date, "first")
        return _Plan(
            oi,
            volume,
            min(volume, 1 + hash64(occ, trade_time) % 20),
            trade_time.replace(second=0, microsecond=0),
            first_time.replace(second=0, microsecond=0),
        )
