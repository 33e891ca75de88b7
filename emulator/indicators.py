"""Textbook technical indicators over a series, aligned with it (None until a value is defined).

Fidelity points, as Polygon documents its indicators:
- SMA(n)[i] = the mean of the n values ending at i.
- EMA(n): alpha = 2 / (n + 1), seeded at i = n - 1 with the SMA of the first n values, then
  EMA[i] = alpha x[i] + (1 - alpha) EMA[i - 1].
- RSI(n), Wilder's: the first average gain/loss is the plain mean of the first n changes, then
  avg = (avg_prev (n - 1) + change) / n; RSI = 100 - 100 / (1 + avg_gain / avg_loss), 100 when
  avg_loss is 0.
- MACD(short, long, signal): line = EMA(short) - EMA(long); signal = EMA(signal) of the line, seeded
  with the SMA of its first `signal` values; histogram = line - signal.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def sma(values: Sequence[float], window: int) -> list[float | None]:
    out: list[float | None] = [None] * len(values)
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        if i >= window - 1:
            out[i] = total / window
    return out


def ema(values: Sequence[float], window: int) -> list[float | None]:
    out: list[float | None] = [None] * len(values)
    if len(values) < window:
        return out
    alpha = 2 / (window + 1)
    current = sum(values[:window]) / window
    out[window - 1] = current
    for i in range(window, len(values)):
        current = alpha * values[i] + (1 - alpha) * current
        out[i] = current
    return out


def rsi(values: Sequence[float], window: int) -> list[float | None]:
    out: list[float | None] = [None] * len(values)
    if len(values) <= window:
        return out
    changes = [b - a for a, b in itertools.pairwise(values)]
    gain = sum(max(c, 0.0) for c in changes[:window]) / window
    loss = sum(max(-c, 0.0) for c in changes[:window]) / window
    out[window] = _rsi(gain, loss)
    for i in range(window + 1, len(values)):
        change = changes[i - 1]
        gain = (gain * (window - 1) + max(change, 0.0)) / window
        loss = (loss * (window - 1) + max(-change, 0.0)) / window
        out[i] = _rsi(gain, loss)
    return out


def macd(
    values: Sequence[float], short: int, long: int, signal: int
) -> list[tuple[float, float, float] | None]:
    """(line, signal, histogram) where all three are defined."""
    fast, slow = ema(values, short), ema(values, long)
    line = [None if f is None or s is None else f - s for f, s in zip(fast, slow, strict=True)]
    first = next((i for i, value in enumerate(line) if value is not None), len(line))
    defined = [value for value in line[first:] if value is not None]
    smoothed = ema(defined, signal)
    out: list[tuple[float, float, float] | None] = [None] * len(values)
    for offset, (value, sig) in enumerate(zip(defined, smoothed, strict=True)):
        if sig is not None:
            out[first + offset] = (value, sig, value - sig)
    return out


def _rsi(gain: float, loss: float) -> float:
    return 100.0 if loss == 0 else 100 - 100 / (1 + gain / loss)
