"""A simulated market: every price is a deterministic function of (seed, symbol, second).

The log price of each symbol is a random walk in continuous time, sampled to the second:
- one value per UTC day (an Ornstein-Uhlenbeck walk around the symbol's base price, so prices
  stay plausible over decades),
- a Brownian bridge per minute between consecutive day values,
- a Brownian bridge per second between consecutive minute values, drawn an hour (60 x 60 seconds)
  at a time.
Each level draws from a NumPy generator seeded by (seed, symbol, day[, hour]), so any instant
costs a few small draws, two calls a second apart differ realistically, and a test that knows the
seed predicts every value with `Market(seed).quote(symbol, at)`.

Trading follows the exchange calendar: trades print from 04:00 ET to the end of the post-market;
while the market is closed the last price stays where the post-market left it.

Fidelity points: a quote's open/high/low are the regular session's first price and its range over
every second so far (`walk` gives the per-minute first/high/low/last of the per-second path, the
same values `emulator.bars` builds bars from), its volume the regular session's cumulative volume
(a U-shaped intraday profile), its prevclose the previous session's closing price.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from reader.calendar import MarketCalendar, TradingDay
from reader.symbols import CLASS_SHARE_ROOTS

ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_ANCHOR_S = int(ANCHOR.timestamp())
_DAY_S = 86_400
_MINUTES = 1_440
_HORIZON_DAYS = 50 * 366  # the walk is defined from 2000 to about 2050
_MEAN_REVERSION_PER_DAY = 0.003
_OU_BLOCK = 512
_VOLUME_SMILE = 0.5  # busier at the open and the close: the volume rate runs from 0.5x to 1.5x the mean
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
    "BRK.B": ("Berkshire Hathaway Inc Class B", "stock", 470.0),
    "BF.B": ("Brown-Forman Corp Class B", "stock", 45.0),
    "SPX": ("S&P 500 Index", "index", 6000.0),
    "NDX": ("Nasdaq 100 Index", "index", 21000.0),
    "VIX": ("CBOE Volatility Index", "index", 16.0),
    "RUT": ("Russell 2000 Index", "index", 2300.0),
    "DJX": ("Dow Jones Industrial Average Index 1/100", "index", 440.0),
    "XSP": ("Mini-SPX Index", "index", 600.0),
    "OEX": ("S&P 100 Index", "index", 2800.0),
    "XEO": ("S&P 100 Index (European exercise)", "index", 2800.0),
    "XND": ("Nasdaq 100 Index 1/100", "index", 210.0),
    "VXN": ("CBOE Nasdaq 100 Volatility Index", "index", 20.0),
    "RVX": ("CBOE Russell 2000 Volatility Index", "index", 22.0),
    "VIX9D": ("CBOE S&P 500 9-Day Volatility Index", "index", 15.0),
    "VVIX": ("CBOE VIX Volatility Index", "index", 95.0),
}
INDICES = frozenset(name for name, (_, kind, _) in _NAMES.items() if kind == "index")
"""The simulated indices, by their bare name (Tradier's form; Polygon writes `I:SPX`): every index
the reader knows by name (`reader.symbols.INDICES`)."""
WELL_KNOWN = tuple(sorted(name for name in _NAMES if name not in INDICES))
"""The stocks and ETFs with real names (what a snapshot of "all tickers" lists)."""
_EXCHANGES = "QNPZ"
_OPTIONED_CLASS_SHARES = frozenset(CLASS_SHARE_ROOTS.values())
UNLISTED_PREFIX = "ZZ"
"""Symbols starting with this (and `NOPE`) are not listed, to exercise the unknown-symbol paths."""
NO_OPTIONS_PREFIX = "NOOPT"
"""Symbols starting with this are listed (quotes, bars) but have no options: the expirations and
chain endpoints answer as for an unknown symbol (`{"expirations": null}`, `{"options": null}`).
A class share (`BRK.A`) has options only if `reader.symbols.CLASS_SHARE_ROOTS` names its OCC root
(BRKB for BRK.B): the OCC root drops the dot, so no other root could be read back to it."""
NEW_LISTING_PREFIX = "IPO"
"""Symbols starting with this are new listings that have not traded yet: a quote, but no bars of
any length (`{"history": null}`, aggregates without `results`), no indicators and no options."""


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
    has_options: bool = True
    has_bars: bool = True


FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MinuteWalk:
    """Log prices of the per-second path, per minute from `start_s`: first, highest, lowest, last second."""

    start_s: int
    first: FloatArray
    high: FloatArray
    low: FloatArray
    last: FloatArray


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


def hash64(*parts: object) -> int:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def unit(*parts: object) -> float:
    """A deterministic number in [0, 1)."""
    return hash64(*parts) / 2**64


class Market:
    """The simulated market of one seed. Thread-compatible; caches what it computes."""

    def __init__(self, seed: int = 0, calendar: MarketCalendar | None = None) -> None:
        self.seed = seed
        self.calendar = calendar or MarketCalendar()
        self._minute_paths = lru_cache(maxsize=4096)(self._minute_path)
        self._day_walk = lru_cache(maxsize=1024)(self._compute_day_walk)  # 146 KB each
        self._second_blocks = lru_cache(maxsize=256)(self._second_block)  # 29 KB each
        self._hour_stats = lru_cache(maxsize=16_384)(self._compute_hour_stats)  # 2 KB each

    def listing(self, symbol: str) -> Listing | None:
        """The listing of `symbol`, or None if the simulated market does not list it."""
        if _TICKER.fullmatch(symbol) is None or symbol.startswith(UNLISTED_PREFIX) or symbol == "NOPE":
            return None
        return _listing(self.seed, symbol)

    def price(self, symbol: str, at: datetime) -> float:
        """The walk's price at `at` (floored to the second), whether or not the market trades then."""
        return to_price(self._log_price(symbol, int(at.timestamp())))

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
        noise = hash64(self.seed, symbol, int(trade_time.timestamp()))
        opened = trade_time >= day.open
        high, low = self.session_range(symbol, day, trade_time) if opened else (None, None)
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
            volume=self.session_volume(listing, day, trade_time),
            open=self.price(symbol, day.open) if opened else None,
            high=high,
            low=low,
            close=self.price(symbol, day.close) if trade_time >= day.close else None,
            prevclose=self.price(symbol, self.calendar.previous_trading_day(day).close),
            week_52_high=max(year_high, high or 0.0),
            week_52_low=min(year_low, low or math.inf),
        )

    def session_volume(self, listing: Listing, day: TradingDay, at: datetime) -> int:
        """Shares traded in `day`'s regular session from the open to `at`, that second included.

        The intraday profile is U-shaped: F(x) = x + a sin(2 pi x) / (2 pi) of the session's fraction x.
        """
        session_s = (day.close - day.open).total_seconds()
        elapsed = min(max((at - day.open).total_seconds() + 1, 0.0), session_s)
        x = elapsed / session_s
        shape = x + _VOLUME_SMILE * math.sin(2 * math.pi * x) / (2 * math.pi)
        return int(listing.average_volume * self.day_factor(listing.symbol, day) * shape)

    def day_factor(self, symbol: str, day: TradingDay) -> float:
        """How busy `day` is for `symbol`, relative to its average volume (0.6 to 1.4)."""
        return 0.6 + 0.8 * unit(self.seed, symbol, day.date)

    def session_range(self, symbol: str, day: TradingDay, until: datetime) -> tuple[float, float]:
        """(high, low) over every second of `day`'s regular session from the open to `until` included."""
        end = min(until, day.close)
        walk = self.walk(symbol, int(day.open.timestamp()), int(end.timestamp()))
        return to_price(float(walk.high.max())), to_price(float(walk.low.min()))

    def walk(self, symbol: str, start_s: int, end_s: int) -> MinuteWalk:
        """The per-second path from `start_s` (a whole minute) to `end_s` included, summed up per minute.

        The last minute is partial unless `end_s` is its 59th second.
        """
        if start_s % 60 or end_s < start_s:
            raise ValueError(f"walk needs a whole-minute start before the end; got {start_s}..{end_s}")
        first_m = (start_s - _ANCHOR_S) // 60
        last_m, second = divmod(end_s - _ANCHOR_S, 60)
        parts: list[FloatArray] = []
        m = first_m
        while m < last_m:  # whole minutes, an hour block at a time
            hour_index = m // 60
            stats = self._hour_stats(symbol, *divmod(hour_index, 24))
            stop = min(last_m - hour_index * 60, 60)
            parts.append(stats[:, m - hour_index * 60 : stop])
            m = hour_index * 60 + stop
        k, minute = divmod(last_m, _MINUTES)
        if second == 0:
            value = float(self._minute_paths(symbol, k)[minute])
            tail = np.array([[value], [value], [value], [value]])
        else:
            seconds = self._second_blocks(symbol, k, minute // 60)[minute % 60, : second + 1]
            tail = np.array([[seconds[0]], [seconds.max()], [seconds.min()], [seconds[-1]]])
        stacked = np.concatenate([*parts, tail], axis=1)
        return MinuteWalk(start_s, stacked[0], stacked[1], stacked[2], stacked[3])

    def _year_range(self, symbol: str, day: TradingDay) -> tuple[float, float]:
        k = (int(day.open.timestamp()) - _ANCHOR_S) // _DAY_S
        window = self._day_walk(symbol)[max(k - 365, 0) : k + 1]
        return round(math.exp(float(window.max())), 2), round(math.exp(float(window.min())), 2)

    def _log_price(self, symbol: str, epoch_s: int) -> float:
        k, rem = divmod(epoch_s - _ANCHOR_S, _DAY_S)
        minute, second = divmod(rem, 60)
        if second == 0:
            return float(self._minute_paths(symbol, k)[minute])
        return float(self._second_blocks(symbol, k, minute // 60)[minute % 60, second])

    def _second_block(self, symbol: str, k: int, hour: int) -> FloatArray:
        """Log prices at each second of hour `hour` of UTC day `k`: row = minute, column = second.

        Each row is a Brownian bridge from the minute's value to the next minute's (exclusive).
        """
        path = self._minute_paths(symbol, k)
        sigma_s = _listing(self.seed, symbol).daily_vol / math.sqrt(_DAY_S)
        rng = np.random.default_rng([self.seed, hash64(symbol, "seconds"), k, hour])
        walk = np.cumsum(rng.standard_normal((60, 60)) * sigma_s, axis=1)
        start = path[hour * 60 : hour * 60 + 60]
        gap = path[hour * 60 + 1 : hour * 60 + 61] - start
        before = np.concatenate((np.zeros((60, 1)), walk[:, :59]), axis=1)
        block: FloatArray = start[:, None] + before - (walk[:, 59] - gap)[:, None] * (np.arange(60) / 60)
        return block

    def _compute_hour_stats(self, symbol: str, k: int, hour: int) -> FloatArray:
        """Per minute of the hour: the first, highest, lowest and last second's log price (4 x 60)."""
        block = self._second_block(symbol, k, hour)
        return np.stack((block[:, 0], block.max(axis=1), block.min(axis=1), block[:, 59]))

    def _minute_path(self, symbol: str, k: int) -> FloatArray:
        """Log prices at each minute of UTC day `k` after the anchor (1441 values, both ends included)."""
        if not 0 <= k < _HORIZON_DAYS - 1:
            raise ValueError(f"{ANCHOR + timedelta(days=k)} is outside the simulated years 2000-2050")
        days = self._day_walk(symbol)
        sigma_m = _listing(self.seed, symbol).daily_vol / math.sqrt(_MINUTES)
        rng = np.random.default_rng([self.seed, hash64(symbol), k])
        walk = np.concatenate(([0.0], np.cumsum(rng.standard_normal(_MINUTES) * sigma_m)))
        ramp = np.arange(_MINUTES + 1) / _MINUTES
        path: FloatArray = days[k] + walk - ramp * (walk[-1] - (days[k + 1] - days[k]))
        return path

    def _compute_day_walk(self, symbol: str) -> FloatArray:
        """Log price at the start of each UTC day: d[k+1] = a d[k] + shock[k], d = log price - mean."""
        listing = _listing(self.seed, symbol)
        rng = np.random.default_rng([self.seed, hash64(symbol)])
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
        result: FloatArray = math.log(listing.base_price) + deviation
        return result

    def __repr__(self) -> str:
        return f"<Market seed={self.seed}>"


def to_price(log_price: float) -> float:
    """A log price of the walk in dollars, rounded to the cent as every price the market reports."""
    return round(math.exp(log_price), 2)


@lru_cache(maxsize=65_536)
def _listing(seed: int, symbol: str) -> Listing:
    random_price = math.exp(math.log(10) + unit(seed, symbol, "price") * math.log(60))
    description, kind, base_price = _NAMES.get(symbol, (f"{symbol} Inc", "stock", random_price))
    return Listing(
        symbol=symbol,
        description=description,
        type=kind,
        exch=_EXCHANGES[hash64(seed, symbol, "exch") % len(_EXCHANGES)],
        base_price=round(base_price, 2),
        daily_vol=0.01 + 0.025 * unit(seed, symbol, "vol"),
        average_volume=int(10 ** (5.5 + 2.2 * unit(seed, symbol, "volume"))),
        has_options=not symbol.startswith((NO_OPTIONS_PREFIX, NEW_LISTING_PREFIX))
        and ("." not in symbol or symbol in _OPTIONED_CLASS_SHARES),
        has_bars=not symbol.startswith(NEW_LISTING_PREFIX),
    )
