"""Indicators computed from bars agree with textbook definitions, written again here as plain loops."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from reader.models import Bar, Indicators, Macd, PriceHistory
from worker import indicators
from worker.providers.base import IndicatorSpec

TOL = 1e-9
WINDOWS = (5, 14, 20, 50, 200)
FETCHED = datetime(2026, 11, 24, 21, 5, tzinfo=UTC)
FRESH_UNTIL = FETCHED + timedelta(hours=20)
FIRST_BAR = datetime(2026, 1, 2, 5, 0, tzinfo=UTC)  # midnight in New York


def _walk(count: int, seed: int = 7) -> list[float]:
    """A seeded random walk around 100 with a flat stretch (indices 120-159), in cents."""
    rng = random.Random(seed)
    price = 100.0
    closes = []
    for i in range(count):
        if not 120 <= i < 160:
            price = max(1.0, price + rng.gauss(0.0, 1.5))
        closes.append(round(price, 2))
    return closes


CLOSES = _walk(300)


# The reference: each definition spelled out as a loop, sharing nothing with worker.indicators.


def ref_sma(closes: list[float], n: int) -> float | None:
    if len(closes) < n:
        return None
    total = 0.0
    for x in closes[len(closes) - n :]:
        total += x
    return total / n


def ref_ema_full(values: list[float], n: int) -> list[float | None]:
    """EMA(n) at every index: None before index n-1, the SMA of the first n at n-1, then recursive."""
    out: list[float | None] = [None] * len(values)
    if len(values) < n:
        return out
    seed = 0.0
    for i in range(n):
        seed += values[i]
    out[n - 1] = seed / n
    alpha = 2 / (n + 1)
    for i in range(n, len(values)):
        prev = out[i - 1]
        assert prev is not None
        out[i] = alpha * values[i] + (1 - alpha) * prev
    return out


def ref_rsi(closes: list[float], n: int) -> float | None:
    if len(closes) < n + 1:
        return None
    gains: list[float] = []
    losses: list[float] = []
    for i in range(1, len(closes)):
        change = closes[i] - closes[i - 1]
        gains.append(change if change > 0 else 0.0)
        losses.append(-change if change < 0 else 0.0)
    avg_gain = 0.0
    avg_loss = 0.0
    for i in range(n):
        avg_gain += gains[i]
        avg_loss += losses[i]
    avg_gain /= n
    avg_loss /= n
    for i in range(n, len(gains)):
        avg_gain = (avg_gain * (n - 1) + gains[i]) / n
        avg_loss = (avg_loss * (n - 1) + losses[i]) / n
    if avg_loss == 0:
        return 50.0 if avg_gain == 0 else 100.0
    return 100 - 100 / (1 + avg_gain / avg_loss)


def ref_macd(closes: list[float], fast: int, slow: int, signal: int) -> tuple[float, float, float] | None:
    fast_ema = ref_ema_full(closes, fast)
    slow_ema = ref_ema_full(closes, slow)
    line: list[float] = []
    for i in range(len(closes)):
        f, s = fast_ema[i], slow_ema[i]
        if f is not None and s is not None:
            line.append(f - s)
    signal_ema = ref_ema_full(line, signal)
    if not signal_ema or signal_ema[-1] is None:
        return None
    return line[-1], signal_ema[-1], line[-1] - signal_ema[-1]


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= TOL


def _history(closes: list[float], symbol: str = "AAPL") -> PriceHistory:
    bars = tuple(
        Bar(
            start=FIRST_BAR + timedelta(days=i),
            open=c,
            high=c + 0.5,
            low=c - 0.5,
            close=c,
            volume=1000.0 + i,
        )
        for i, c in enumerate(closes)
    )
    return PriceHistory(
        source="tradier",
        fetched_at=FETCHED,
        fresh_until=FRESH_UNTIL,
        symbol=symbol,
        interval="1d",
        bars=bars,
    )


def test_the_series_has_ups_downs_and_a_flat_stretch() -> None:
    """The fixed walk rises, falls and stays flat, so every branch of the formulas is used."""
    changes = [CLOSES[i] - CLOSES[i - 1] for i in range(1, len(CLOSES))]
    assert sum(c > 0 for c in changes) > 50
    assert sum(c < 0 for c in changes) > 50
    assert set(CLOSES[120:160]) == {CLOSES[120]}
    assert min(CLOSES) > 1.0


@pytest.mark.parametrize("window", WINDOWS)
def test_sma_matches_the_reference_at_every_length(window: int) -> None:
    """SMA over each prefix of the walk equals the loop mean, and is None while too short."""
    for end in range(1, len(CLOSES) + 1):
        prefix = CLOSES[:end]
        assert _close(indicators.sma(prefix, window), ref_sma(prefix, window)), end


@pytest.mark.parametrize("window", WINDOWS)
def test_ema_matches_the_recursive_definition(window: int) -> None:
    """The EMA series starts at index window-1 and equals the recursive EMA at every index."""
    expected = ref_ema_full(CLOSES, window)
    series = indicators.ema_series(CLOSES, window)
    assert len(series) == len(CLOSES) - window + 1
    for got, want in zip(series, expected[window - 1 :], strict=True):
        assert _close(got, want)
    for end in range(1, len(CLOSES) + 1):
        assert _close(indicators.ema(CLOSES[:end], window), expected[end - 1]), end


@pytest.mark.parametrize("window", WINDOWS)
def test_rsi_matches_wilder_from_explicit_gains_and_losses(window: int) -> None:
    """RSI over each prefix equals Wilder's RSI from gain/loss lists, and is None while too short."""
    for end in range(1, len(CLOSES) + 1):
        prefix = CLOSES[:end]
        assert _close(indicators.rsi(prefix, window), ref_rsi(prefix, window)), end
    last = indicators.rsi(CLOSES, window)
    assert last is not None
    assert 0 < last < 100


def test_macd_matches_two_explicit_ema_lists() -> None:
    """MACD 12/26/9 over each prefix equals the reference; None below 26 + 9 - 1 = 34 closes."""
    for end in range(1, len(CLOSES) + 1):
        prefix = CLOSES[:end]
        got = indicators.macd(prefix)
        want = ref_macd(prefix, 12, 26, 9)
        if want is None:
            assert got is None, end
            continue
        assert got is not None, end
        assert all(_close(g, w) for g, w in zip(got, want, strict=True)), end
    assert indicators.macd(CLOSES[:33]) is None
    assert indicators.macd(CLOSES[:34]) is not None


def test_small_cases_checked_by_hand() -> None:
    """SMA, EMA, RSI and MACD of a few short series give the values worked out on paper."""
    assert indicators.sma([1, 2, 3, 4], 2) == 3.5
    assert indicators.sma([1, 2, 3, 4], 4) == 2.5
    # alpha = 1/2, seeded with mean(1, 2, 3) = 2 at index 2: then 4/2 + 2/2 = 3, 5/2 + 3/2 = 4.
    assert indicators.ema_series([1, 2, 3, 4, 5], 3) == [2.0, 3.0, 4.0]
    assert indicators.ema([1, 2, 3, 4, 5], 3) == 4.0
    assert indicators.ema([7, 9], 1) == 9.0
    # Changes +1, -0.5, +1; first averages 0.5 and 0.25, then 0.75 and 0.125: RS = 6.
    assert indicators.rsi([10, 11, 10.5, 11.5], 2) == pytest.approx(100 - 100 / 7, abs=TOL)
    # EMA(1) is the closes; EMA(2) is 1.5 then 2/3 * 3 + 1/3 * 1.5 = 2.5; the line is [0.5, 0.5].
    assert indicators.macd([1, 2, 3], fast=1, slow=2, signal=2) == pytest.approx((0.5, 0.5, 0.0), abs=TOL)


def test_rsi_extremes_and_a_price_that_never_moves() -> None:
    """Strictly rising gives 100, strictly falling 0, and a flat price 50 (no strength either way)."""
    rising = [float(i) for i in range(1, 31)]
    assert indicators.rsi(rising, 14) == 100.0
    assert indicators.rsi(rising[::-1], 14) == 0.0
    assert indicators.rsi([42.0] * 30, 14) == 50.0
    assert indicators.macd([42.0] * 40) == (0.0, 0.0, 0.0)


def test_too_few_values_give_none() -> None:
    """Each indicator is None one value short of its window, and defined at exactly its window."""
    assert indicators.sma([1.0, 2.0], 3) is None
    assert indicators.sma([], 1) is None
    assert indicators.ema_series([1.0, 2.0], 3) == []
    assert indicators.ema([1.0, 2.0], 3) is None
    assert indicators.ema([1.0, 2.0, 3.0], 3) == 2.0
    assert indicators.rsi(CLOSES[:14], 14) is None
    assert indicators.rsi(CLOSES[:15], 14) is not None
    assert indicators.macd(CLOSES[:25]) is None
    assert indicators.macd([], 1, 1, 1) is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: indicators.sma([1.0], 0), r"window=0: .* use 1 or more"),
        (lambda: indicators.ema([1.0], -3), r"window=-3: .* use 1 or more"),
        (lambda: indicators.rsi([1.0], 0), r"window=0"),
        (lambda: indicators.macd([1.0], fast=0), r"fast=0"),
        (lambda: indicators.macd([1.0], signal=0), r"signal=0"),
    ],
)
def test_windows_below_one_are_refused(call: Callable[[], object], match: str) -> None:
    """A window of 0 or less raises ValueError naming the bad window and the fix."""
    with pytest.raises(ValueError, match=match):
        call()


def test_compute_indicators_copies_the_envelope_and_omits_long_windows() -> None:
    """60 daily bars give SMA 20/50 but not 200, EMA 12/26, RSI 14 and MACD, on the last bar."""
    closes = CLOSES[:60]
    history = _history(closes)
    result = indicators.compute_indicators(history, IndicatorSpec())
    assert result.source == "computed"
    assert (result.fetched_at, result.fresh_until) == (FETCHED, FRESH_UNTIL)
    assert (result.symbol, result.interval) == ("AAPL", "1d")
    assert result.as_of == FIRST_BAR + timedelta(days=59)
    assert result.as_of.tzinfo is UTC
    assert result.close == closes[-1]
    assert set(result.sma) == {20, 50}
    assert set(result.ema) == {12, 26}
    assert set(result.rsi) == {14}
    for window, value in result.sma.items():
        assert _close(value, ref_sma(closes, window))
    for window, value in result.ema.items():
        assert _close(value, ref_ema_full(closes, window)[-1])
    assert _close(result.rsi[14], ref_rsi(closes, 14))
    want = ref_macd(closes, 12, 26, 9)
    assert want is not None
    assert result.macd is not None
    assert (result.macd.fast, result.macd.slow, result.macd.signal_window) == (12, 26, 9)
    got = (result.macd.macd, result.macd.signal, result.macd.histogram)
    assert all(_close(g, w) for g, w in zip(got, want, strict=True))
    assert Indicators.model_validate_json(result.model_dump_json()) == result


def test_compute_indicators_with_few_bars_has_no_macd() -> None:
    """With 20 bars, MACD 12/26/9 and every window above 20 are absent; the rest are present."""
    spec = IndicatorSpec(sma=(5, 20, 21), ema=(5, 26), rsi=(14, 20), macd=(12, 26, 9))
    result = indicators.compute_indicators(_history(CLOSES[:20]), spec)
    assert set(result.sma) == {5, 20}
    assert set(result.ema) == {5}
    assert set(result.rsi) == {14}
    assert result.macd is None
    assert result.close == CLOSES[19]


def test_compute_indicators_without_macd_in_the_spec() -> None:
    """A spec with macd=None gives no MACD even with enough bars."""
    result = indicators.compute_indicators(_history(CLOSES), IndicatorSpec(macd=None))
    assert result.macd is None
    assert set(result.sma) == {20, 50, 200}


def test_compute_indicators_on_one_bar() -> None:
    """A single bar gives its close, SMA/EMA of window 1, and no RSI."""
    spec = IndicatorSpec(sma=(1, 2), ema=(1,), rsi=(1,), macd=(1, 1, 1))
    result = indicators.compute_indicators(_history([12.5]), spec)
    assert (result.close, result.sma, result.ema, result.rsi) == (12.5, {1: 12.5}, {1: 12.5}, {})
    assert result.as_of == FIRST_BAR
    assert result.macd == Macd(fast=1, slow=1, signal_window=1, macd=0.0, signal=0.0, histogram=0.0)


def test_compute_indicators_refuses_an_empty_history() -> None:
    """A history without bars raises ValueError naming the symbol."""
    with pytest.raises(ValueError, match=r"'MSFT' has no 1d bars"):
        indicators.compute_indicators(_history([], symbol="MSFT"), IndicatorSpec())


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (IndicatorSpec(sma=(20, 0)), r"IndicatorSpec\.sma window=0: .* use 1 or more"),
        (IndicatorSpec(ema=(-1,)), r"IndicatorSpec\.ema window=-1"),
        (IndicatorSpec(rsi=(0,)), r"IndicatorSpec\.rsi window=0"),
        (IndicatorSpec(macd=(12, 0, 9)), r"IndicatorSpec\.macd slow=0"),
    ],
)
def test_compute_indicators_refuses_bad_windows(spec: IndicatorSpec, match: str) -> None:
    """A spec window below 1 raises ValueError naming the field, the window and the fix."""
    with pytest.raises(ValueError, match=match):
        indicators.compute_indicators(_history(CLOSES[:5]), spec)
