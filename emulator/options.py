"""Listed options of the simulated market: expirations, strikes and contract quotes.

Fidelity points:
- expirations, from the date of "now" (ET): the Fridays of the next 8 weeks ("weeklys") and the
  third Fridays of the next 12 months ("standard"); a holiday Friday moves to the session before.
- roots: a stock's options have its own root, a class share's its ticker without the dot (BRK.B:
  BRKB, as OCC writes it; only the class shares of `reader.symbols.CLASS_SHARE_ROOTS` list
  options, see `emulator.market`); an index's monthly (standard) options have the
  index's root (SPX) and every expiration also lists the PM-settled weekly root (SPXW), so the
  chain of a monthly date holds both roots.
- strikes: one grid per underlying and day, about +-40 % around the previous close, in steps of
  0.5 below $25, 1 below $100, 2.5 below $250 and 5 above (60-100 strikes a side for big names).
- prices: Black-Scholes (`emulator.blackscholes`, r = 4 %, no dividends) off the underlying's
  price, with a per-symbol base IV of 18-60 % (its walk's own volatility), a skew and a convex smile
  that steepen for short expiries, and a mild upward term structure. Options trade in the regular
  session only, so outside it every quote stays at the last close. Bid/ask surround the model
  price, wider for cheap, far and illiquid strikes; bid is 0 for worthless ones.
- Greeks and IVs (bid/mid/ask implied from that hour's bid/mid/ask, `smv_vol` the model's) are
  recomputed once an hour, like ORATS's, and stamped with the hour; a few deep-ITM contracts have
  none. Open interest, volume and the last trade are deterministic; some contracts never traded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from emulator import blackscholes as bs
from emulator.market import Listing, Market, hash64, unit
from emulator.option_trades import Pricer, TradeTape
from reader.calendar import EXCHANGE_TZ
from reader.symbols import root_underlying

RATE = 0.04
CONTRACT_SIZE = 100
_WEEKLY_DAYS = 56
_MONTHLY_MONTHS = 12
_YEAR_S = 365 * 86_400
_STRIKE_SPAN = 0.4
_EXCHANGES = "ABCHIMNPQTWXZ"
_OCC = re.compile(r"([A-Z][A-Z0-9]{0,5})(\d{6})[CP]\d{8}")


@dataclass(frozen=True)
class Expiration:
    """An expiration date; `type` is "standard" (monthly) or "weeklys"; it expires at that session's close."""

    date: date
    type: str
    expires_at: datetime


@dataclass(frozen=True)
class OptionGreeks:
    """One contract's hourly Greeks and IVs (fractions), as of `updated_at` (UTC, on the hour)."""

    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float
    phi: float
    bid_iv: float
    mid_iv: float
    ask_iv: float
    smv_vol: float
    updated_at: datetime


@dataclass(frozen=True)
class OptionQuote:
    """One contract at an instant; prices per share, None where the contract has not traded."""

    symbol: str
    root: str
    underlying: str
    expiration: Expiration
    strike: float
    option_type: str
    description: str
    exch: str
    bid: float
    ask: float
    bidsize: int
    asksize: int
    bidexch: str
    askexch: str
    quote_time: datetime
    last: float | None
    trade_time: datetime | None
    last_volume: int
    volume: int
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    prevclose: float | None
    open_interest: int
    greeks: OptionGreeks | None
    underlying_price: float

    @property
    def midpoint(self) -> float:
        return round((self.bid + self.ask) / 2, 4)

    @property
    def change(self) -> float | None:
        if self.last is None or self.prevclose is None:
            return None
        return round(self.last - self.prevclose, 2)

    @property
    def change_percentage(self) -> float | None:
        change = self.change
        if change is None or not self.prevclose:
            return None
        return round(change / self.prevclose * 100, 2)


def occ_symbol(root: str, expiration: date, option_type: str, strike: float) -> str:
    """ROOT + YYMMDD + C/P + strike x 1000 in 8 digits, e.g. AAPL261218C00230000."""
    return f"{root}{expiration:%y%m%d}{option_type[0].upper()}{round(strike * 1000):08d}"


def roots(underlying: str, expiration: Expiration, *, index: bool) -> list[str]:
    """The option roots listed on `underlying` for `expiration`: an index has its own root on
    monthly dates and its weekly root (name + W) on every date."""
    if not index:
        return [occ_root(underlying)]
    weekly = underlying + "W"
    return [underlying, weekly] if expiration.type == "standard" else [weekly]


def occ_root(underlying: str) -> str:
    """The OCC root of a stock's options: its ticker without punctuation (BRK.B -> BRKB)."""
    return underlying.replace(".", "")


def strike_step(reference: float) -> float:
    if reference >= 10_000:
        return 250.0
    if reference >= 1_000:
        return 50.0
    if reference < 25:
        return 0.5
    if reference < 100:
        return 1.0
    if reference < 250:
        return 2.5
    return 5.0


class OptionBook:
    """The options listed on a `Market`; caches the hourly Greeks and recent chains."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self._expirations = lru_cache(maxsize=64)(self._compute_expirations)
        self._greeks = lru_cache(maxsize=2048)(self._compute_greeks)
        self._chains = lru_cache(maxsize=128)(self._compute_chain)

    def expirations(self, symbol: str, at: datetime) -> list[Expiration]:
        """Expirations listed on `symbol` at `at` (every root), soonest first; [] for an unlisted symbol
        or one without options."""
        listing = self.market.listing(symbol)
        if listing is None or not listing.has_options:
            return []
        return list(self._expirations(at.astimezone(EXCHANGE_TZ).date()))

    def contract(self, occ: str, at: datetime) -> OptionQuote | None:
        """The quote of one OCC option symbol at `at`, or None if it is not listed."""
        match = _OCC.fullmatch(occ)
        if match is None:
            return None
        root, yymmdd = match[1], match[2]
        try:
            expiration = date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
        except ValueError:
            return None
        chain = self.chain(root_underlying(root), expiration, at) or []
        return next((q for q in chain if q.symbol == occ), None)

    def strikes(self, symbol: str, at: datetime) -> list[float]:
        """The strike grid of `symbol` on `at`'s day (the same for every expiration)."""
        quote = self.market.quote(symbol, at)
        if quote is None:
            return []
        step = strike_step(quote.prevclose)
        low = math.ceil(quote.prevclose * (1 - _STRIKE_SPAN) / step)
        high = math.floor(quote.prevclose * (1 + _STRIKE_SPAN) / step)
        return [round(n * step, 2) for n in range(max(low, 1), high + 1)]

    def chain(self, symbol: str, expiration: date, at: datetime) -> list[OptionQuote] | None:
        """Calls and puts interleaved by strike, or None if `expiration` is not listed on `symbol`."""
        chain = self._chains(symbol, expiration, at.astimezone(UTC).replace(microsecond=0))
        return None if chain is None else list(chain)

    def quote_time(self, at: datetime) -> datetime:
        """The instant option quotes stand at: now in the regular session, else the last close."""
        day = self.market.calendar.latest_trading_day(at)
        if at >= day.open:
            return min(at, day.close)
        return self.market.calendar.previous_trading_day(day).close

    def _compute_expirations(self, today: date) -> tuple[Expiration, ...]:
        calendar = self.market.calendar
        first_friday = today + timedelta(days=(4 - today.weekday()) % 7)
        fridays = {first_friday + timedelta(weeks=n) for n in range(_WEEKLY_DAYS // 7 + 1)}
        fridays = {f for f in fridays if f <= today + timedelta(days=_WEEKLY_DAYS)}
        for months in range(_MONTHLY_MONTHS + 1):
            year, month = divmod(today.month - 1 + months, 12)
            first = date(today.year + year, month + 1, 1)
            third = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
            if today <= third <= today + timedelta(days=366):
                fridays.add(third)
        found: dict[date, Expiration] = {}
        for friday in sorted(fridays):
            day = friday
            while (session := calendar.trading_day(day)) is None:
                day -= timedelta(days=1)
            kind = "standard" if 15 <= friday.day <= 21 else "weeklys"
            if day >= today and (day not in found or kind == "standard"):
                found[day] = Expiration(day, kind, session.close)
        return tuple(found[d] for d in sorted(found))

    def smile(
        self, listing: Listing, strike: bs.Array, spot: bs.Array, years: bs.Array, at: datetime
    ) -> bs.Array:
        """The model IV: base x term x (1 - 0.45 x + 0.8 x^2), x = log-moneyness scaled to 3 months."""
        day = at.astimezone(EXCHANGE_TZ).date()
        wobble = 0.95 + 0.1 * unit(self.market.seed, listing.symbol, day.toordinal(), "iv")
        base = min(max(listing.daily_vol * math.sqrt(365), 0.18), 0.6) * wobble
        t = np.maximum(years, 1 / 365)
        term = np.clip(1 + 0.04 * np.log(t / 0.25), 0.85, 1.1)
        x = np.clip(np.log(strike / spot) / np.sqrt(np.maximum(t, 1 / 52) / 0.25), -1.5, 1.5)
        vol: bs.Array = base * term * (1 - 0.45 * x + 0.8 * x * x)
        return vol

    def _bid_ask(
        self, listing: Listing, theo: bs.Array, strike: bs.Array, spot: float
    ) -> tuple[bs.Array, bs.Array]:
        illiquid = 1 + min(max((7.7 - math.log10(listing.average_volume)) / 2.2, 0.0), 1.0)
        spread = (0.01 + 0.01 * theo + 0.1 * np.abs(np.log(strike / spot))) * illiquid
        bid: bs.Array = np.where(theo < 0.015, 0.0, np.maximum(np.round(theo - spread / 2, 2), 0.0)).astype(
            np.float64
        )
        ask: bs.Array = np.round(np.maximum(np.round(theo + spread / 2, 2), bid + 0.01), 2).astype(np.float64)
        return bid, ask

    def _model(
        self, symbol: str, exp: Expiration, strikes: tuple[float, ...], at: datetime
    ) -> tuple[float, bs.Array, bs.Bools, bs.Array, bs.Array, bs.Array]:
        """(spot, strike, is_call, years, vol, theo) for every contract at quote time `at`."""
        listing = self.market.listing(symbol)
        assert listing is not None
        spot = self.market.price(symbol, at)
        strike = np.repeat(np.array(strikes), 2)
        call = np.tile(np.array([True, False]), len(strikes))
        years = np.full_like(strike, (exp.expires_at - at).total_seconds() / _YEAR_S)
        vol = self.smile(listing, strike, np.full_like(strike, spot), years, at)
        theo = bs.price(np.full_like(strike, spot), strike, years, RATE, vol, call)
        return spot, strike, call, years, vol, theo

    def _compute_greeks(
        self, symbol: str, exp: Expiration, strikes: tuple[float, ...], hour: datetime
    ) -> list[OptionGreeks]:
        listing = self.market.listing(symbol)
        assert listing is not None
        at = self.quote_time(hour)
        spot, strike, call, years, vol, theo = self._model(symbol, exp, strikes, at)
        spots = np.full_like(strike, spot)
        bid, ask = self._bid_ask(listing, theo, strike, spot)
        ivs = [
            bs.implied_vol(price, spots, strike, years, RATE, call) for price in (bid, (bid + ask) / 2, ask)
        ]
        g = bs.greeks(spots, strike, years, RATE, vol, call)
        rows = zip(g.delta, g.gamma, g.theta, g.vega, g.rho, g.phi, *ivs, vol, strict=True)
        return [
            OptionGreeks(
                delta=round(float(row[0]), 6),
                gamma=round(float(row[1]), 6),
                theta=round(float(row[2]), 6),
                vega=round(float(row[3]), 6),
                rho=round(float(row[4]), 6),
                phi=round(float(row[5]), 6),
                bid_iv=round(float(row[6]), 6),
                mid_iv=round(float(row[7]), 6),
                ask_iv=round(float(row[8]), 6),
                smv_vol=round(float(row[9]), 3),
                updated_at=hour,
            )
            for row in rows
        ]

    def _compute_chain(self, symbol: str, expiration: date, at: datetime) -> tuple[OptionQuote, ...] | None:
        listing = self.market.listing(symbol)
        exp = next((e for e in self.expirations(symbol, at) if e.date == expiration), None)
        if listing is None or exp is None:
            return None
        strikes = tuple(self.strikes(symbol, at))
        qt = self.quote_time(at)
        spot, strike, call, _, _, theo = self._model(symbol, exp, strikes, qt)
        bid, ask = self._bid_ask(listing, theo, strike, spot)
        hour = at.replace(minute=0, second=0)
        greeks = self._greeks(symbol, exp, strikes, hour)
        per_root = list(zip(strike.tolist(), call.tolist(), strict=True))
        rows = [
            (i, root)
            for root in roots(symbol, exp, index=listing.type == "index")
            for i in range(len(per_root))
        ]
        contracts = [
            (occ_symbol(root, exp.date, "call" if per_root[i][1] else "put", per_root[i][0]), *per_root[i])
            for i, root in rows
        ]
        tape = TradeTape(
            self.market, listing, exp.type, exp.expires_at, at, qt, self._pricer(listing, exp, qt)
        )
        activities = tape.activities(contracts)
        quotes = []
        reference = self.market.quote(symbol, at)
        assert reference is not None
        when = f"{exp.date:%b} {exp.date.day} {exp.date.year}"
        for n, ((i, root), (occ, k, is_call)) in enumerate(zip(rows, contracts, strict=True)):
            kind = "call" if is_call else "put"
            noise = hash64(self.market.seed, occ, int(qt.timestamp()))
            deep_itm = k < 0.75 * reference.prevclose if is_call else k > 1.25 * reference.prevclose
            no_greeks = deep_itm and unit(self.market.seed, occ, "greeks") < 0.3
            quotes.append(
                OptionQuote(
                    symbol=occ,
                    root=root,
                    underlying=symbol,
                    expiration=exp,
                    strike=k,
                    option_type=kind,
                    description=f"{root} {when} ${k:.2f} {kind.title()}",
                    exch=_EXCHANGES[hash64(occ) % len(_EXCHANGES)],
                    bid=float(bid[i]),
                    ask=float(ask[i]),
                    bidsize=1 + noise % 250,
                    asksize=1 + (noise >> 12) % 250,
                    bidexch=_EXCHANGES[(noise >> 24) % len(_EXCHANGES)],
                    askexch=_EXCHANGES[(noise >> 32) % len(_EXCHANGES)],
                    quote_time=qt,
                    greeks=None if no_greeks else greeks[i],
                    underlying_price=spot,
                    **vars(activities[n]),
                )
            )
        return tuple(quotes)

    def _pricer(self, listing: Listing, exp: Expiration, qt: datetime) -> Pricer:
        def values(wanted: list[tuple[float, bool, datetime]]) -> list[float]:
            """Model prices, rounded to the cent (at least 0.01), of (strike, is_call, at) triples."""
            if not wanted:
                return []
            spot = np.array([self.market.price(listing.symbol, at) for _, _, at in wanted])
            strike = np.array([k for k, _, _ in wanted])
            call = np.array([c for _, c, _ in wanted])
            years = np.array([(exp.expires_at - at).total_seconds() / _YEAR_S for _, _, at in wanted])
            theo = bs.price(spot, strike, years, RATE, self.smile(listing, strike, spot, years, qt), call)
            return [max(0.01, round(v, 2)) for v in theo.tolist()]

        return values

    def __repr__(self) -> str:
        return f"<OptionBook of {self.market!r}>"
