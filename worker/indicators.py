"""Technical indicators computed from stored bars: pure functions, no I/O, no upstream call.

All take closes oldest first, `c_0 ... c_{N-1}`, and a window `n >= 1` in bars. Each returns
the value at the last close, or None when there are too few closes for it.

- **SMA(n)** = (c_{N-n} + ... + c_{N-1}) / n, the mean of the last n closes; needs N >= n.
- **EMA(n)**: alpha = 2 / (n + 1). The first value, at index n-1, is the SMA of c_0 ... c_{n-1};
  then EMA_i = alpha * c_i + (1 - alpha) * EMA_{i-1}. Needs N >= n.
- **RSI(n)**, Wilder's smoothing: d_i = c_i - c_{i-1} for i >= 1, gain_i = max(d_i, 0),
  loss_i = max(-d_i, 0). The first averages are the simple means of gain_1 ... gain_n and
  loss_1 ... loss_n; then avg_i = (avg_{i-1} * (n - 1) + x_i) / n for each later change.
  RSI = 100 - 100 / (1 + avg_gain / avg_loss); 100 when avg_loss = 0 (the price only rose), and
  50 when both averages are 0 (the price never moved: neither side has the strength).
  Needs N >= n + 1.
- **MACD(fast=12, slow=26, signal=9)**: MACD_i = EMA(fast)_i - EMA(slow)_i, each EMA seeded as
  above over the whole close series, from index max(fast, slow) - 1 on (where both exist).
  Signal = EMA(signal) of the MACD line, seeded with the SMA of its first `signal` values;
  histogram = MACD - signal. Needs N >= max(fast, slow) + signal - 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from reader.models import Indicators, Macd, PriceHistory
from worker.providers.base import IndicatorSpec

SOURCE = "computed"
"""The `source` of indicators computed here from stored bars."""


def _check_window(window: int, name: str = "window") -> None:
    if window < 1:
        raise ValueError(f"{name}={window!r}: a window is a count of bars, use 1 or more")


def sma(closes: Sequence[float], window: int) -> float | None:
    """The mean of the last `window` closes; None if there are fewer."""
    _check_window(window)
    if len(closes) < window:
        return None
    return math.fsum(closes[-window:]) / window


def ema_series(values: Sequence[float], window: int) -> list[float]:
    """EMA(window) at each index from `window - 1` on (so `len(values) - window + 1` values, or none)."""
    _check_window(window)
    if len(values) < window:
        return []
    alpha = 2.0 / (window + 1)
    current = math.fsum(values[:window]) / window
    series = [current]
    for x in values[window:]:
        current = alpha * x + (1.0 - alpha) * current
        series.append(current)
    return series


def ema(values: Sequence[float], window: int) -> float | None:
    """EMA(window) at the last value; None if there are fewer than `window` values."""
    series = ema_series(values, window)
    return series[-1] if series else None


def rsi(closes: Sequence[float], window: int) -> float | None:
    """Wilder's RSI(window) at the last close, in [0, 100]; None with fewer than `window + 1` closes."""
    _check_window(window)
    if len(closes) < window + 1:
        return None
    changes = [b - a for a, b in pairwise(closes)]
    avg_gain = math.fsum(max(d, 0.0) for d in changes[:window]) / window
    avg_loss = math.fsum(max(-d, 0.0) for d in changes[:window]) / window
    for d in changes[window:]:
        avg_gain = (avg_gain * (window - 1) + max(d, 0.0)) / window
        avg_loss = (avg_loss * (window - 1) + max(-d, 0.0)) / window
    if avg_loss == 0.0:
        return 50.0 if avg_gain == 0.0 else 100.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def macd(
    closes: Sequence[float], fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[float, float, float] | None:
    """The latest (macd, signal, histogram); None with fewer than `max(fast, slow) + signal - 1` closes."""
    _check_window(fast, "fast")
    _check_window(slow, "slow")
    _check_window(signal, "signal")
    fast_ema = ema_series(closes, fast)
    slow_ema = ema_series(closes, slow)
    # ema_series(v, n)[k] is the EMA at index k + n - 1: align both on the index where both exist.
    start = max(fast, slow) - 1
    line = [
        f - s for f, s in zip(fast_ema[start - (fast - 1) :], slow_ema[start - (slow - 1) :], strict=True)
    ]
    signal_ema = ema_series(line, signal)
    if not signal_ema:
        return None
    return line[-1], signal_ema[-1], line[-1] - signal_ema[-1]


def compute_indicators(history: PriceHistory, spec: IndicatorSpec) -> Indicators:
    """The indicators of `spec` at the last bar of `history`, on its closes.

    Windows longer than the history are left out of the dicts, and `macd` is None without enough
    bars for it. The envelope (`fetched_at`, `fresh_until`) is the history's: the indicators are
    as fresh as the bars they come from.
    """
    for field, windows in (("sma", spec.sma), ("ema", spec.ema), ("rsi", spec.rsi)):
        for window in windows:
            _check_window(window, f"IndicatorSpec.{field} window")
    if spec.macd is not None:
        for name, window in zip(("fast", "slow", "signal"), spec.macd, strict=True):
            _check_window(window, f"IndicatorSpec.macd {name}")
    if not history.bars:
        raise ValueError(
            f"{history.symbol!r} has no {history.interval} bars: store some history before computing "
            "its indicators"
        )
    closes = [bar.close for bar in history.bars]
    line = None
    if spec.macd is not None:
        fast, slow, signal_window = spec.macd
        result = macd(closes, fast, slow, signal_window)
        if result is not None:
            value, signal, histogram = result
            line = Macd(
                fast=fast,
                slow=slow,
                signal_window=signal_window,
                macd=value,
                signal=signal,
                histogram=histogram,
            )
    return Indicators(
        source=SOURCE,
        fetched_at=history.fetched_at,
        fresh_until=history.fresh_until,
        symbol=history.symbol,
        interval=history.interval,
        as_of=history.bars[-1].start,
        close=closes[-1],
        sma=_present({w: sma(closes, w) for w in spec.sma}),
        ema=_present({w: ema(closes, w) for w in spec.ema}),
        rsi=_present({w: rsi(closes, w) for w in spec.rsi}),
        macd=line,
    )


def _present(values: dict[int, float | None]) -> dict[int, float]:
    return {window: value for window, value in values.items() if value is not None}
