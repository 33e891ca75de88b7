"""Emulator -> arq worker -> real Redis -> Reader, for every dataset and from both providers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from reader import Indicators, NotCached, OptionChain, Quote, Reader, SyncReader
from tests.conftest import API_KEY, POLYGON_API_KEY, RunBatches
from tests.support import FakeClock, RunningEmulator, make_config
from worker.indicators import compute_indicators
from worker.providers.base import IndicatorSpec

ET = ZoneInfo("America/New_York")
UNDERLYINGS_20 = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AMD", "PLTR", "JPM",
    "SPY", "QQQ", "IWM", "DIA", "NFLX", "ORCL", "INTC", "KO", "PEP", "XOM",
]  # fmt: skip
DATASETS: dict[str, Any] = {
    "chains": {"expirations": 3, "max_days": 120},
    "history": {"daily": {"lookback_days": 400}, "intraday": {"bar": "15m", "lookback_days": 3}},
}


async def _get(emulator: RunningEmulator, path: str, **params: str) -> Any:
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(emulator.url + path, params=params, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


def _listed(payload: dict[str, Any]) -> list[date]:
    dates = payload["expirations"]["date"]
    return [date.fromisoformat(d) for d in (dates if isinstance(dates, list) else [dates])]


async def _emulator_chain(emulator: RunningEmulator, symbol: str, expiration: date) -> dict[str, Any]:
    payload = await _get(
        emulator,
        "/v1/markets/options/chains",
        symbol=symbol,
        expiration=expiration.isoformat(),
        greeks="true",
    )
    options = payload["options"]["option"]
    return {o["symbol"]: o for o in (options if isinstance(options, list) else [options])}


async def _served_indicators(emulator: RunningEmulator, symbol: str) -> dict[str, Any]:
    """The latest values of the emulator's Polygon indicator endpoints for the default spec."""
    served: dict[str, Any] = {}
    common = {
        "timespan": "day",
        "series_type": "close",
        "order": "desc",
        "limit": "1",
        "apiKey": POLYGON_API_KEY,
    }
    for kind, windows in (("sma", (20, 50, 200)), ("ema", (12, 26)), ("rsi", (14,))):
        for window in windows:
            payload = await _get(emulator, f"/v1/indicators/{kind}/{symbol}", window=str(window), **common)
            (value,) = payload["results"]["values"]
            served[f"{kind}{window}"] = value["value"]
            served["as_of"] = datetime.fromtimestamp(value["timestamp"] / 1000, UTC)
    macd = await _get(
        emulator,
        f"/v1/indicators/macd/{symbol}",
        short_window="12",
        long_window="26",
        signal_window="9",
        **common,
    )
    (value,) = macd["results"]["values"]
    served["macd"] = (value["value"], value["signal"], value["histogram"])
    return served


def _calls(emulator: RunningEmulator) -> dict[str, int]:
    return {path: sum(by_status.values()) for path, by_status in emulator.state.stats()["calls"].items()}


@pytest.mark.long(seconds=27)
async def test_twenty_underlyings_fill_every_dataset_from_tradier(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, run_scheduled_batches: RunBatches
) -> None:
    """20 underlyings x 3 expirations: expirations, 60 chains, daily bars and four indicators, as served."""
    config = make_config(UNDERLYINGS_20, redis_url=redis_url, tradier_url=emulator.url, datasets=DATASETS)
    worker = await run_scheduled_batches(config)
    assert worker.jobs_failed == 0

    calls = _calls(emulator)
    assert calls["/v1/markets/options/chains"] == 60
    assert calls["/v1/markets/history"] == 20
    assert calls["/v1/markets/timesales"] == 20
    assert calls["/v1/markets/quotes"] == 1
    # At start the chains jobs fetch the expirations they need (and store them); nothing twice.
    assert calls["/v1/markets/options/expirations"] == 20

    today = clock.now.astimezone(ET).date()
    spec = IndicatorSpec()
    chains_seen = 0
    async with Reader(redis_url, clock=clock) as reader:
        for symbol in UNDERLYINGS_20:
            listed = _listed(await _get(emulator, "/v1/markets/options/expirations", symbol=symbol))
            expirations = await reader.expirations(symbol)
            assert list(expirations.dates) == sorted(listed)
            wanted = [d for d in sorted(listed) if today <= d <= today + timedelta(days=120)][:3]
            assert len(wanted) == 3

            bundle = await reader.bundle(symbol, options=True, technical=True)
            assert isinstance(bundle.quote, Quote)
            assert isinstance(bundle.chains, tuple)
            assert [c.expiration for c in bundle.chains] == wanted
            for chain in bundle.chains:
                served = await _emulator_chain(emulator, symbol, chain.expiration)
                assert {c.symbol for c in chain.contracts} == set(served)
                for contract in chain.contracts:
                    raw = served[contract.symbol]
                    greeks = raw.get("greeks") or {}
                    assert (contract.bid, contract.ask, contract.strike) == (
                        raw["bid"],
                        raw["ask"],
                        raw["strike"],
                    )
                    assert contract.delta == greeks.get("delta")
                    assert contract.gamma == greeks.get("gamma")
                    assert contract.mid_iv == (greeks.get("mid_iv") or greeks.get("smv_vol") or None)
                chains_seen += 1
            assert await reader.chain(symbol) == bundle.chains[0]
            puts = await reader.chain(symbol, wanted[1], side="puts")
            assert puts.contracts == bundle.chains[1].puts

            history = await reader.history(symbol)
            served_days = (await _get(
                emulator, "/v1/markets/history", symbol=symbol, interval="daily",
                start=(today - timedelta(days=399)).isoformat(), end=today.isoformat(),
            ))["history"]["day"]  # fmt: skip
            stored = [
                (b.start.astimezone(ET).date().isoformat(), b.open, b.high, b.low, b.close)
                for b in history.bars
            ]
            assert stored == [(d["date"], d["open"], d["high"], d["low"], d["close"]) for d in served_days]
            assert len(history.bars) > 250

            indicators = bundle.indicators
            assert isinstance(indicators, Indicators)
            assert indicators == compute_indicators(history, spec).model_copy()
            assert set(indicators.sma) == {20, 50, 200}
            assert set(indicators.ema) == {12, 26}
            assert set(indicators.rsi) == {14}
            assert indicators.macd is not None
            closes = [b.close for b in history.bars]
            assert indicators.sma[20] == pytest.approx(sum(closes[-20:]) / 20, abs=1e-9)
            assert indicators.close == closes[-1]
            # The emulator's own indicator endpoints compute from two years of the same closes; the
            # EMAs' different starting points have faded to nothing after 250 bars.
            served = await _served_indicators(emulator, symbol)
            assert indicators.as_of == served["as_of"]
            for kind in ("sma", "ema", "rsi"):
                for window, value in getattr(indicators, kind).items():
                    assert value == pytest.approx(served[f"{kind}{window}"], rel=1e-6, abs=1e-6), (
                        kind,
                        window,
                    )
            assert (indicators.macd.macd, indicators.macd.signal, indicators.macd.histogram) == pytest.approx(
                served["macd"], rel=1e-6, abs=1e-6
            )

            intraday = await reader.history(symbol, "15m")
            assert intraday.bars
            assert intraday.bars[-1].start <= clock.now

    assert chains_seen == 60
    with SyncReader(redis_url, clock=clock) as sync:
        assert sync.bundle("AAPL", options=True, technical=True) == await _bundle(redis_url, clock, "AAPL")


async def _bundle(redis_url: str, clock: FakeClock, symbol: str) -> Any:
    async with Reader(redis_url, clock=clock) as reader:
        return await reader.bundle(symbol, options=True, technical=True)


async def test_polygon_serves_quotes_chains_history_and_indicators(
    redis_url: str, emulator: RunningEmulator, clock: FakeClock, run_scheduled_batches: RunBatches
) -> None:
    """With Polygon chosen per dataset, its endpoints are called and the values match Tradier's view."""
    symbols = ["AAPL", "SPY", "NVDA"]
    config = make_config(
        symbols,
        redis_url=redis_url,
        tradier_url=emulator.url,
        polygon_url=emulator.url,
        datasets={
            "quotes": {"provider": "polygon"},
            "chains": {"provider": "polygon", "expirations": 2, "max_days": 60, "strike_window_pct": 10},
            "history": {"provider": "polygon", "intraday": None},
            "indicators": {"source": "polygon"},
        },
    )
    worker = await run_scheduled_batches(config)
    assert worker.jobs_failed == 0
    calls = _calls(emulator)
    # One batch of quotes; a chain job that runs before the quotes are stored asks for its own price.
    assert 1 <= calls["/v2/snapshot/locale/us/markets/stocks/tickers"] <= 1 + len(symbols)
    assert "/v1/markets/quotes" not in calls
    assert "/v1/markets/options/chains" not in calls
    assert sum(v for p, v in calls.items() if p.startswith("/v3/snapshot/options/")) >= 6
    assert sum(v for p, v in calls.items() if p.startswith("/v1/indicators/")) == 3 * 7

    async with Reader(redis_url, clock=clock) as reader:
        for symbol in symbols:
            quote = await reader.quote(symbol)
            assert quote.source == "polygon"
            served = (await _get(emulator, "/v1/markets/quotes", symbols=symbol))["quotes"]["quote"]
            assert (quote.last, quote.bid, quote.ask, quote.prevclose) == (
                served["last"], served["bid"], served["ask"], served["prevclose"],
            )  # fmt: skip

            chain = await reader.chain(symbol)
            assert isinstance(chain, OptionChain)
            assert chain.source == "polygon"
            assert chain.underlying_price is not None
            assert all(abs(c.strike / quote.last - 1) <= 0.10 + 1e-9 for c in chain.contracts)
            tradier_view = await _emulator_chain(emulator, symbol, chain.expiration)
            for contract in chain.contracts:
                raw = tradier_view[contract.symbol]
                assert (contract.bid, contract.ask) == (raw["bid"], raw["ask"])
                assert contract.delta == (raw.get("greeks") or {}).get("delta")

            history = await reader.history(symbol)
            assert history.source == "polygon"
            indicators = await reader.indicators(symbol)
            assert indicators.source == "polygon"
            assert indicators.sma[20] == pytest.approx(
                sum(b.close for b in history.bars[-20:]) / 20, abs=1e-6
            )
            assert indicators.as_of == history.bars[-1].start
        with pytest.raises(NotCached):
            await reader.chain(symbol, "2020-01-17")
