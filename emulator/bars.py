"""Bars of the simulated market: daily sessions and 1-minute bars, and their aggregation.

Fidelity points:
- a daily bar exists once its session has opened; open = the price at the open, close = the price
  at the close (while the session runs: the last price so far, the quote's `last`), high/low = the
  range over every second of the regular session, volume = the session's volume, vwap between low
  and high. These are exactly the quote's open/high/low/volume, and the previous bar's close is the
  quote's prevclose.
- 1-minute bars cover 04:00 ET to the end of the post-market on session days only; o/h/l/c come
  from the per-second path, so the quote's `last` at any second of a bar lies in [low, high]. The
  current bar is partial; regular-session minute volumes add up to the daily volume exactly.
- any coarser bar (5/15 minutes, hours, weeks, months) aggregates these: first open, highest high,
  lowest low, last close, summed volume and trades, volume-weighted vwap.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from emulator.market import Market, MinuteWalk, hash64, to_price
from reader.calendar import EXCHANGE_TZ, TradingDay

_EXTENDED_SHARE = 0.04  # an extended-hours minute trades about 4 % of a regular one
_SHARES_PER_TRADE = 90
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Bar:
    """One bar; `start` is aware UTC, `base` the number of 1-minute or daily bars it aggregates."""

    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float
    trades: int
    base: int = 1


def trading_days(market: Market, first: date, last: date) -> Iterator[TradingDay]:
    """The sessions with dates in [first, last]."""
    day = first
    while day <= last:
        session = market.calendar.trading_day(day)
        if session is not None:
            yield session
        day += timedelta(days=1)


def et_midnight(day: date) -> datetime:
    """Midnight ET at the start of `day`, in UTC (the `t` of a Polygon daily bar)."""
    return datetime.combine(day, datetime.min.time(), tzinfo=EXCHANGE_TZ).astimezone(UTC)


def aggregate(
    bars: Iterable[Bar], bucket: Callable[[Bar], Hashable], start: Callable[[Bar], datetime]
) -> list[Bar]:
    """Consecutive bars with the same `bucket` merged into one that starts at `start(first bar)`."""
    merged = []
    for _, group in itertools.groupby(bars, key=bucket):
        members = list(group)
        volume = sum(b.volume for b in members)
        vwap = sum(b.vwap * b.volume for b in members) / volume if volume else members[-1].close
        merged.append(
            Bar(
                start=start(members[0]),
                open=members[0].open,
                high=max(b.high for b in members),
                low=min(b.low for b in members),
                close=members[-1].close,
                volume=volume,
                vwap=round(vwap, 4),
                trades=sum(b.trades for b in members),
                base=sum(b.base for b in members),
            )
        )
    return merged


def minute_bucket(width_min: int) -> Callable[[Bar], datetime]:
    """The start of the `width_min`-minute bucket (counted from midnight ET) holding a bar."""

    def bucket(bar: Bar) -> datetime:
        local = bar.start.astimezone(EXCHANGE_TZ)
        minutes = (local.hour * 60 + local.minute) // width_min * width_min
        return local.replace(hour=minutes // 60, minute=minutes % 60).astimezone(UTC)

    return bucket


class History:
    """Daily and intraday bars of one `Market`; completed sessions are computed once and cached."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._complete_daily = lru_cache(maxsize=65_536)(self._daily_until)
        self._complete_intraday = lru_cache(maxsize=256)(self._intraday_until)
        self._closed_series = lru_cache(maxsize=1024)(self._compute_closed_series)

    def daily(self, symbol: str, day: TradingDay, at: datetime) -> Bar | None:
        """`day`'s bar as of `at`, None before the session opens (or for an unlisted symbol, or one
        that has not traded yet)."""
        if not self._has_bars(symbol) or at < day.open:
            return None
        if at >= day.close:
            return self._complete_daily(symbol, day, day.close)
        return self._daily_until(symbol, day, at.replace(microsecond=0))

    def _has_bars(self, symbol: str) -> bool:
        listing = self.market.listing(symbol)
        return listing is not None and listing.has_bars

    def daily_range(self, symbol: str, first: date, last: date, at: datetime) -> list[Bar]:
        """The daily bars of the sessions dated `first` to `last` that have opened by `at`."""
        bars = (self.daily(symbol, day, at) for day in trading_days(self.market, first, last))
        return [bar for bar in bars if bar is not None]

    def series(self, symbol: str, field: str, first: date, at: datetime) -> list[tuple[date, float]]:
        """(date, daily bar's `field`) of the sessions from `first` that have opened by `at`.

        Completed sessions are computed once per (symbol, field, first) and cached; open and close
        come straight from the walk, without building the bars (indicators need years of them).
        """
        today = self.market.calendar.latest_trading_day(at)
        closed = today.date if at >= today.close else today.date - timedelta(days=1)
        values = list(self._closed_series(symbol, field, first, closed))
        if today.open <= at < today.close and today.date >= first:
            values.append((today.date, self._value(symbol, field, today, at)))
        return values

    def _value(self, symbol: str, field: str, day: TradingDay, at: datetime) -> float:
        if field == "open":
            return self.market.price(symbol, day.open)
        if field == "close":
            return self.market.price(symbol, min(at, day.close))
        bar = self.daily(symbol, day, at)
        assert bar is not None
        return float(getattr(bar, field))

    def _compute_closed_series(
        self, symbol: str, field: str, first: date, last: date
    ) -> tuple[tuple[date, float], ...]:
        return tuple(
            (day.date, self._value(symbol, field, day, day.close))
            for day in trading_days(self.market, first, last)
        )

    def intraday(self, symbol: str, day: TradingDay, at: datetime) -> list[Bar]:
        """`day`'s 1-minute bars from 04:00 ET to the end of the post-market, up to `at` (partial)."""
        if not self._has_bars(symbol) or at < day.pre_open:
            return []
        last_second = day.post_close - timedelta(seconds=1)
        if at >= last_second:
            return self._complete_intraday(symbol, day, last_second)
        return self._intraday_until(symbol, day, at.replace(microsecond=0))

    def _daily_until(self, symbol: str, day: TradingDay, end: datetime) -> Bar:
        market = self.market
        listing = market.listing(symbol)
        assert listing is not None
        open_s = int(day.open.timestamp())
        walk = market.walk(symbol, open_s, int(end.timestamp()))
        volume = market.session_volume(listing, day, end)
        weights = self._regular_weights(day, len(walk.first))
        typical = (np.exp(walk.high) + np.exp(walk.low) + np.exp(walk.last)) / 3
        vwap = float((weights * typical).sum() / weights.sum())
        return Bar(
            start=day.open,
            open=to_price(float(walk.first[0])),
            high=to_price(float(walk.high.max())),
            low=to_price(float(walk.low.min())),
            close=to_price(float(walk.last[-1])),
            volume=volume,
            vwap=round(vwap, 4),
            trades=max(1, volume // _SHARES_PER_TRADE),
        )

    def _regular_weights(self, day: TradingDay, minutes: int) -> np.ndarray:
        """The U-shaped volume profile of the session's first `minutes` minutes (weights only)."""
        session_min = (day.close - day.open).total_seconds() / 60
        x = (np.arange(minutes) + 0.5) / session_min
        weights: np.ndarray = 1 + 0.5 * np.cos(2 * np.pi * np.minimum(x, 1.0))
        return weights

    def minute(self, symbol: str, day: TradingDay, at: datetime) -> Bar | None:
        """The (partial) 1-minute bar of `day` holding `at`, None outside `day`'s trading hours."""
        if not self._has_bars(symbol) or not day.pre_open <= at < day.post_close:
            return None
        at = at.replace(microsecond=0)
        return self._intraday_until(symbol, day, at, first=at.replace(second=0))[-1]

    def _intraday_until(
        self, symbol: str, day: TradingDay, end: datetime, first: datetime | None = None
    ) -> list[Bar]:
        """The 1-minute bars of `day` from `first` (default 04:00 ET) to `end` included."""
        market = self.market
        listing = market.listing(symbol)
        assert listing is not None
        session_start_s = int(day.pre_open.timestamp())
        start_s, end_s = int((first or day.pre_open).timestamp()), int(end.timestamp())
        walk = market.walk(symbol, start_s, end_s)
        open_s, close_s = int(day.open.timestamp()), int(day.close.timestamp())
        extended = self._extended_volumes(symbol, day)
        one_second = timedelta(seconds=1)
        bars = []
        for i, (high, low, close) in enumerate(self._prices(walk)):
            bar_s = start_s + 60 * i
            bar_end_s = min(bar_s + 59, end_s)
            if open_s <= bar_s < close_s:
                bar_start = datetime.fromtimestamp(bar_s, UTC)
                volume = market.session_volume(listing, day, datetime.fromtimestamp(bar_end_s, UTC))
                volume -= market.session_volume(listing, day, bar_start - one_second)
            else:
                volume = max(1, int(extended[(bar_s - session_start_s) // 60] * (bar_end_s - bar_s + 1) / 60))
            open_ = to_price(float(walk.first[i]))
            bars.append(
                Bar(
                    start=datetime.fromtimestamp(bar_s, UTC),
                    open=open_,
                    high=high,
                    low=low,
                    close=close,
                    volume=volume,
                    vwap=round((high + low + close) / 3, 4),
                    trades=max(1, volume // _SHARES_PER_TRADE),
                )
            )
        return bars

    @staticmethod
    def _prices(walk: MinuteWalk) -> Iterator[tuple[float, float, float]]:
        for high, low, last in zip(walk.high.tolist(), walk.low.tolist(), walk.last.tolist(), strict=True):
            yield to_price(high), to_price(low), to_price(last)

    def _extended_volumes(self, symbol: str, day: TradingDay) -> np.ndarray:
        """Full-minute volumes for the extended-hours minutes (entries for regular minutes unused)."""
        listing = self.market.listing(symbol)
        assert listing is not None
        session_min = (day.close - day.open).total_seconds() / 60
        per_minute = listing.average_volume * self.market.day_factor(symbol, day) / session_min
        rng = np.random.default_rng([self.market.seed, hash64(symbol, "extended"), day.date.toordinal()])
        minutes = int((day.post_close - day.pre_open).total_seconds()) // 60
        volumes: np.ndarray = per_minute * _EXTENDED_SHARE * (0.3 + 1.4 * rng.random(minutes))
        return volumes

    def __repr__(self) -> str:
        return f"<History of {self.market!r}>"


def ms(at: datetime) -> int:
    """Epoch milliseconds."""
    return int(at.timestamp() * 1000)


def ns(at: datetime) -> int:
    """Epoch nanoseconds."""
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000
