"""A simulated market: every price is a deterministic function of (seed, symbol, second).

The log price of each symbol is a random walk in continuous time, sampled to the second:
- one value per UTC day (an Ornstein-Uhlenbeck walk around the symbol's base price, so prices
  stay plausible over decades),
- a Brownian bridge per minute between consecutive day values,
- a Brownian bridge per second between consecutive minute values.
Each level draws from a NumPy generator seeded by (seed, symbol, day[, minute]), so any instant
costs a few small draws, two calls a second apart differ realistically, and a test that knows the
seed predicts every value with `Market(seed).quote(symbol, at)`.

Trading follows the exchange calendar: trades print from 04:00 ET to the end of the post-market;
while the market is closed the last price stays where the post-market left it.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

from reader.calendar import MarketCalendar, TradingDay

ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_ANCHOR_S = int(ANCHOR.timestamp())
_DAY_S = 86_400
_MINUTES = 1_440
_HORIZON_DAYS = 50 * 366  # the walk is defined from 2000 to about 2050
_MEAN_REVERSION_PER_DAY = 0.003
_OU_BLOCK = 512
_TICKER = re.compile(r"[A-Z][A-Z0-9.\-]{0,9}")

# Names for the tickers people try first; any other well-formed ticker is listed as "<SYM> Inc".
_NAMES: dict[str, tuple[str, str, float]] = {
    "AAPL": ("Apple Inc", "stock", 230.0),
    "MSFT": ("Microsoft Corp", "stock", 420.0),
    "NVDA": ("NVIDIA Corp", "stock", 140.0),
    "AMZN": ("Amazon.com Inc", "stock", 200.0),
    "GOOGL": ("Alphabet Inc Class A", "stock", 170.0),
    "META": ("Meta Platforms Inc", "stock", 560.0),
    "TSLA": ("Tesla Inc", "stock", 300.0),
    "AMD": ("Advanced Micro Devices Inc", "stock", 140.0),
    "PLTR": ("Palantir Technologies Inc", "stock", 60.0),
    "JPM": ("JPMorgan Chase & Co", "stock", 230.0),
    "SPY": ("SPDR S&P 500", "etf", 590.0),
    "QQQ": ("Invesco QQQ Trust Series 1", "etf", 500.0),
    "IWM": ("iShares Russell 2000 ETF", "etf", 225.0),
    "DIA": ("SPDR Dow Jones Industrial Average ETF", "etf", 430.0),
}
_EXCHANGES = "QNPZ"
UNLISTED_PREFIX = "ZZ"
"""Symbols starting with this (and `NOPE`) are not listed, to exercise the unknown-symbol paths."""


@dataclass(frozen=True)
class Listing:
    """Static facts of one simulated symbol."""

    symbol: str
    description: str
    type: str
    exch: str
    base_price: float
    daily_vol: float
    average_volume: int


@dataclass(frozen=True)
class QuoteState:
    """Everything a quote endpoint reports about `listing` at `at`; prices in dollars."""

    listing: Listing
    at: datetime
    last: float
    trade_time: datetime
    bid: float
    ask: float
    bidsize: int
    asksize: int
    quote_time: datetime
    last_volume: int
    volume: int
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    prevclose: float
    week_52_high: float
    week_52_low: float

    @property
    def change(self) -> float:
        return round(self.last - self.prevclose, 2)

    @property
    def change_percentage(self) -> float:
        return round((self.last - self.prevclose) / self.prevclose * 100, 2)


def _hash(*parts: object) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1)."""
    return _hash(*parts) / 2**64


class Market:
    """The simulated market of one seed. Thread-compatible; caches what it computes."""

    def __init__(self, seed: int = 0, calendar: MarketCalendar | None = None) -> None:
        self.seed = seed
        self.calendar = calendar or MarketCalendar()
        self._minute_paths = lru_cache(maxsize=4096)(self._minute_path)
        self._day_walk = lru_cache(maxsize=1024)(self._compute_day_walk)  # 146 KB each

    def listing(self, symbol: str) -> Listing | None:
        """The listing of `symbol`, or None if the simulated market does not list it."""
        if _TICKER.fullmatch(symbol) is None or symbol.startswith(UNLISTED_PREFIX) or symbol == "NOPE":
            return None
        return _listing(self.seed, symbol)

    def price(self, symbol: str, at: datetime) -> float:
        """The walk's price at `at` (floored to the second), whether or not the market trades then."""
        return round(math.exp(self._log_price(symbol, int(at.timestamp()))), 2)

    def quote(self, symbol: str, at: datetime) -> QuoteState | None:
        """The quote of `symbol` at `at`, or None if the symbol is not listed."""
        listing = self.listing(symbol)
        if listing is None:
            return None
        at = at.astimezone(UTC).replace(microsecond=0)
        day = self.calendar.latest_trading_day(at)
        trade_time = min(at, day.post_close - timedelta(seconds=1))
        last = self.price(symbol, trade_time)
        spread = max(0.01, round(last * 0.0004, 2))
        bid = round(last - spread / 2, 2)
        noise = _hash(self.seed, symbol, int(trade_time.timestamp()))
        opened = trade_time >= day.open
        high, low = self._session_range(symbol, day, trade_time) if opened else (None, None)
        year_high, year_low = self._year_range(symbol, day)
        return QuoteState(
            listing=listing,
            at=at,
            last=last,
            trade_time=trade_time,
            bid=bid,
            ask=round(bid + spread, 2),
            bidsize=1 + noise % 20,
            asksize=1 + (noise >> 8) % 20,
            quote_time=trade_time,
            last_volume=100 * (1 + (noise >> 16) % 10),
            volume=self._volume(listing, day, trade_time),
            open=self.price(symbol, day.open) if opened else None,
            high=high,
            low=low,
            close=self.price(symbol, day.close) if trade_time >= day.close else None,
            prevclose=self.price(symbol, self.calendar.previous_trading_day(day).close),
            week_52_high=max(year_high, high or 0.0),
            week_52_low=min(year_low, low or math.inf),
        )

    def _volume(self, listing: Listing, day: TradingDay, at: datetime) -> int:
        session_s = (day.close - day.open).total_seconds()
        elapsed = min(max((at - day.open).total_seconds(), 0.0), session_s)
        day_factor = 0.6 + 0.8 * _unit(self.seed, listing.symbol, day.date)
        return int(listing.average_volume * day_factor * elapsed / (6.5 * 3600))

    def _session_range(self, symbol: str, day: TradingDay, until: datetime) -> tuple[float, float]:
        end = min(until, day.close)
        start_s, end_s = int(day.open.timestamp()), int(end.timestamp())
        values = [self._log_price(symbol, start_s), self._log_price(symbol, end_s)]
        k, rem = divmod(start_s - _ANCHOR_S, _DAY_S)
        first_minute = rem // 60 + 1
        last_minute = (end_s - _ANCHOR_S - k * _DAY_S) // 60
        if last_minute >= first_minute:  # the regular session never spans two UTC days
            inner = self._minute_paths(symbol, k)[first_minute : last_minute + 1]
            values += [float(inner.max()), float(inner.min())]
        return round(math.exp(max(values)), 2), round(math.exp(min(values)), 2)

    def _year_range(self, symbol: str, day: TradingDay) -> tuple[float, float]:
        k = (int(day.open.timestamp()) - _ANCHOR_S) // _DAY_S
        window = self._day_walk(symbol)[max(k - 365, 0) : k + 1]
        return round(math.exp(float(window.max())), 2), round(math.exp(float(window.min())), 2)

    def _log_price(self, symbol: str, epoch_s: int) -> float:
        k, rem = divmod(epoch_s - _ANCHOR_S, _DAY_S)
        minute, second = divmod(rem, 60)
        path = self._minute_paths(symbol, k)
        if second == 0:
            return float(path[minute])
        listing = _listing(self.seed, symbol)
        sigma_s = listing.daily_vol / math.sqrt(_DAY_S)
        rng = np.random.default_rng([self.seed, _hash(symbol), k, minute])
        walk = np.cumsum(rng.standard_normal(60) * sigma_s)
        drift = (walk[59] - (path[minute + 1] - path[minute])) * (second / 60)
        return float(path[minute] + walk[second - 1] - drift)

    def _minute_path(self, symbol: str, k: int) -> np.ndarray:
        """Log prices at each minute of UTC day `k` after the anchor (1441 values, both ends included)."""
        if not 0 <= k < _HORIZON_DAYS - 1:
            raise ValueError(f"{ANCHOR + timedelta(days=k)} is outside the simulated years 2000-2050")
        days = self._day_walk(symbol)
        sigma_m = _listing(self.seed, symbol).daily_vol / math.sqrt(_MINUTES)
        rng = np.random.default_rng([self.seed, _hash(symbol), k])
        walk = np.concatenate(([0.0], np.cumsum(rng.standard_normal(_MINUTES) * sigma_m)))
        ramp = np.arange(_MINUTES + 1) / _MINUTES
        return days[k] + walk - ramp * (walk[-1] - (days[k + 1] - days[k]))

    def _compute_day_walk(self, symbol: str) -> np.ndarray:
        """Log price at the start of each UTC day: d[k+1] = a d[k] + shock[k], d = log price - mean."""
        listing = _listing(self.seed, symbol)
        rng = np.random.default_rng([self.seed, _hash(symbol)])
        shocks = rng.standard_normal(_HORIZON_DAYS) * listing.daily_vol
        a = 1 - _MEAN_REVERSION_PER_DAY
        deviation = np.empty(_HORIZON_DAYS)
        level = 0.0
        # d[s+k] = a^k d[s] + a^(k-1) * sum_{i<k} shock[s+i] a^-i, in blocks short enough for a^-i.
        for start in range(0, _HORIZON_DAYS, _OU_BLOCK):
            block = shocks[start : start + _OU_BLOCK]
            powers = a ** np.arange(len(block) + 1)
            scaled = np.concatenate(([0.0], np.cumsum(block / powers[:-1])))
            values = powers * level + np.concatenate(([0.0], powers[:-1])) * scaled
            deviation[start : start + len(block)] = values[:-1]
            level = float(values[-1])
        return math.log(listing.base_price) + deviation

    def __repr__(self) -> str:
        return f"<Market seed={self.seed}>"


@lru_cache(maxsize=65_536)
def _listing(seed: int, symbol: str) -> Listing:
    random_price = math.exp(math.log(10) + _unit(seed, symbol, "price") * math.log(60))
    description, kind, base_price = _NAMES.get(symbol, (f"{symbol} Inc", "stock", random_price))
    return Listing(
        symbol=symbol,
        description=description,
        type=kind,
        exch=_EXCHANGES[_hash(seed, symbol, "exch") % len(_EXCHANGES)],
        base_price=round(base_price, 2),
        daily_vol=0.01 + 0.025 * _unit(seed, symbol, "vol"),
        average_volume=int(10 ** (5.5 + 2.2 * _unit(seed, symbol, "volume"))),
    )
