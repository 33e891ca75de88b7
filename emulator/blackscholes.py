"""Black-Scholes prices, Greeks and implied volatility of European options, vectorised with NumPy.

No dividends. With spot S, strike K, years to expiry T, rate r, volatility s, N the standard
normal CDF and n its density:

    d1 = (ln(S/K) + (r + s^2/2) T) / (s sqrt(T)),  d2 = d1 - s sqrt(T)
    call = S N(d1) - K e^(-rT) N(d2),              put = K e^(-rT) N(-d2) - S N(-d1)
    delta: call N(d1), put N(d1) - 1
    gamma = n(d1) / (S s sqrt(T))
    theta, per calendar day: (-S n(d1) s / (2 sqrt(T)) - r K e^(-rT) N(d2)) / 365 for a call,
                             (-S n(d1) s / (2 sqrt(T)) + r K e^(-rT) N(-d2)) / 365 for a put
    vega, per volatility point: S n(d1) sqrt(T) / 100
    rho, per rate point: K T e^(-rT) N(d2) / 100 (call), -K T e^(-rT) N(-d2) / 100 (put)
    phi (dividend-yield rho), per point: -S T N(d1) / 100 (call), S T N(-d1) / 100 (put)

N(x) = erfc(-x / sqrt(2)) / 2, with the Numerical Recipes Chebyshev fit of erfc (relative error
below 1.2e-7) made exactly symmetric, so that N(x) + N(-x) = 1 and put-call parity
(call - put = S - K e^(-rT)) holds to rounding. Implied volatility is found by bisection on s in
[0.001, 5], where the price increases with s; a price outside that range gives 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
_MIN_T = 1e-6  # years; a contract at its expiry instant is priced at (almost) intrinsic value
_IV_LOW, _IV_HIGH, _IV_STEPS = 0.001, 5.0, 50
_ERFC = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


@dataclass(frozen=True)
class Greeks:
    """Arrays of the Greeks, in the units of the module docstring."""

    delta: Array
    gamma: Array
    theta: Array
    vega: Array
    rho: Array
    phi: Array


def norm_cdf(x: Array) -> Array:
    """The standard normal CDF."""
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.zeros_like(z)
    for coefficient in reversed(_ERFC[1:]):
        poly = t * (coefficient + poly)
    tail = 0.5 * t * np.exp(-z * z + _ERFC[0] + poly)  # N(-|x|)
    result: Array = np.where(x >= 0, 1.0 - tail, tail)
    return result


def norm_pdf(x: Array) -> Array:
    result: Array = np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    return result


def _d1_d2(spot: Array, strike: Array, years: Array, rate: float, vol: Array) -> tuple[Array, Array, Array]:
    years = np.maximum(years, _MIN_T)
    root_t = vol * np.sqrt(years)
    d1 = (np.log(spot / strike) + (rate + vol * vol / 2) * years) / root_t
    return d1, d1 - root_t, years


def price(spot: Array, strike: Array, years: Array, rate: float, vol: Array, call: Bools) -> Array:
    """Black-Scholes prices."""
    d1, d2, years = _d1_d2(spot, strike, years, rate, vol)
    discounted = strike * np.exp(-rate * years)
    calls = spot * norm_cdf(d1) - discounted * norm_cdf(d2)
    puts = discounted * norm_cdf(-d2) - spot * norm_cdf(-d1)
    result: Array = np.where(call, calls, puts)
    return result


def greeks(spot: Array, strike: Array, years: Array, rate: float, vol: Array, call: Bools) -> Greeks:
    """delta, gamma, theta (per day), vega, rho and phi (per point)."""
    d1, d2, years = _d1_d2(spot, strike, years, rate, vol)
    root_t = np.sqrt(years)
    density = norm_pdf(d1)
    discounted = strike * np.exp(-rate * years)
    decay = -spot * density * vol / (2 * root_t)
    return Greeks(
        delta=np.where(call, norm_cdf(d1), norm_cdf(d1) - 1.0),
        gamma=density / (spot * vol * root_t),
        theta=np.where(
            call, decay - rate * discounted * norm_cdf(d2), decay + rate * discounted * norm_cdf(-d2)
        )
        / 365,
        vega=spot * density * root_t / 100,
        rho=np.where(call, discounted * years * norm_cdf(d2), -discounted * years * norm_cdf(-d2)) / 100,
        phi=np.where(call, -spot * years * norm_cdf(d1), spot * years * norm_cdf(-d1)) / 100,
    )


def implied_vol(target: Array, spot: Array, strike: Array, years: Array, rate: float, call: Bools) -> Array:
    """The volatility whose price is `target`, or 0.0 where no volatility in [0.001, 5] gives it."""
    low = np.full_like(target, _IV_LOW, dtype=np.float64)
    high = np.full_like(target, _IV_HIGH, dtype=np.float64)
    valid = (target > price(spot, strike, years, rate, low, call)) & (
        target < price(spot, strike, years, rate, high, call)
    )
    for _ in range(_IV_STEPS):
        middle = (low + high) / 2
        above = price(spot, strike, years, rate, middle, call) > target
        high = np.where(above, middle, high)
        low = np.where(above, low, middle)
    result: Array = np.where(valid, (low + high) / 2, 0.0)
    return result
