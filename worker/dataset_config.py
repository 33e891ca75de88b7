"""The `datasets:` section of config.yaml: what each dataset fetches, from where, and when.

`cadence_s` gives seconds between refreshes per phase of the exchange day (`worker.schedule`
turns it into refresh times); `close_refresh` adds one after the last phase with a cadence.
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from reader.symbols import parse_symbol


class Section(BaseModel):
    """A section of config.yaml: unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _underlying(symbol: object) -> str:
    """The reader form of a symbol the schedule refreshes: an OCC option symbol is refused, naming
    its underlying (whose chains hold the contract; a contract's quote is fetched on demand)."""
    parsed = parse_symbol(symbol)
    if parsed.occ is None:
        return parsed.text
    raise ValueError(
        f"{parsed.text!r} is an option contract: list its underlying {parsed.occ.underlying!r} instead "
        "(its chains hold the contract; a reader fetches a contract's quote on demand)"
    )


Symbol = Annotated[str, BeforeValidator(_underlying)]
"""A stock, ETF or index the schedule refreshes, in its reader form (`reader.symbols`)."""
Window = Annotated[int, Field(gt=0, le=1000)]  # an indicator window, in bars

PhaseName = Literal["pre", "regular", "post", "closed"]
# From a refresh per second to one a week: anything longer is `close_refresh` or off.
CadenceSeconds = dict[PhaseName, Annotated[float, Field(ge=1, le=7 * 86_400)]]
Cadence = Annotated[
    CadenceSeconds,
    Field(
        description="seconds between refreshes per phase of the exchange day (pre, regular, post, "
        "closed); a phase left out is off"
    ),
]
CloseRefresh = Annotated[
    bool, Field(description="one refresh after the last phase with a cadence ends (after the close if none)")
]


def _cadence(seconds: dict[str, float]) -> CadenceSeconds:
    return cast(CadenceSeconds, seconds)


class Scheduled(Section):
    """When a dataset refreshes: seconds between refreshes per phase of the exchange day (a phase
    left out is off), and one closing refresh after the last phase with a cadence."""

    cadence_s: Cadence = Field(default_factory=dict)
    close_refresh: CloseRefresh = True

    @model_validator(mode="after")
    def _refreshes_sometime(self) -> Scheduled:
        if not self.cadence_s and not self.close_refresh:
            raise ValueError(
                "no phase has a cadence and close_refresh is false, so it would never refresh; "
                "give cadence_s a phase (e.g. {regular: 60}) or set close_refresh: true"
            )
        return self


class QuotesConfig(Scheduled):
    """Latest quotes of every watchlist symbol, in batches of the provider's `batch_size`."""

    provider: Literal["tradier", "polygon"] = Field(
        default="tradier",
        description="`tradier` (batch quotes) or `polygon` (its multi-ticker snapshot; not in Basic plans)",
    )
    cadence_s: Cadence = Field(default_factory=lambda: _cadence({"pre": 60.0, "regular": 15.0, "post": 60.0}))


class ExpirationsConfig(Scheduled):
    """The listed option expirations of every watchlist symbol (Tradier only: Polygon has no such call).
    They change once a day: by default they are fetched once, at the start of the pre-market."""

    enabled: bool = Field(
        default=True,
        description="refresh the listed option expirations of every symbol (false: only on a reader's miss)",
    )
    provider: Literal["tradier"] = Field(default="tradier", description="`tradier` only")
    cadence_s: Cadence = Field(default_factory=lambda: _cadence({"pre": 86_400.0}))
    close_refresh: CloseRefresh = False


class ChainSelection(Section):
    """Which chains of an underlying are kept: the next `expirations` dates within `max_days`."""

    expirations: int = Field(
        default=3, ge=0, le=30, description="keep the chains of the next N expirations (0: no chains)"
    )
    max_days: int = Field(default=60, ge=0, description="keep only expirations within this many days")
    strike_window_pct: float | None = Field(
        default=None, gt=0, le=100, description="keep strikes within this % of the last price (null: all)"
    )


class ChainGroup(ChainSelection):
    """A selection for some symbols, overriding the default of `datasets.chains`."""

    symbols: list[Symbol] = Field(min_length=1, description="the underlyings this selection is for")


class ChainsConfig(ChainSelection, Scheduled):
    """Option chains with greeks and IV, per (underlying, expiration)."""

    enabled: bool = Field(
        default=True,
        description="refresh the option chains, with greeks and IV, of every symbol (false: only on a "
        "reader's miss)",
    )
    provider: Literal["tradier", "polygon"] = Field(
        default="tradier", description="`tradier` or `polygon` (its options snapshot, paged)"
    )
    cadence_s: Cadence = Field(default_factory=lambda: _cadence({"regular": 60.0}))
    groups: list[ChainGroup] = Field(
        default_factory=list,
        description="other selections for some symbols (the first group listing a symbol wins)",
    )

    def selection_for(self, symbol: str) -> ChainSelection:
        """The selection of the first group listing `symbol`, else the default one."""
        for group in self.groups:
            if symbol in group.symbols:
                return group
        return self


class DailyHistoryConfig(Scheduled):
    """Daily bars: by default fetched once, after the close (the day's bar is then final)."""

    lookback_days: int = Field(
        default=400, gt=0, le=20 * 366, description="calendar days of daily bars (400 give a 200-day SMA)"
    )


# Tradier's timesales keep this many days of each bar length (session_filter=all).
TRADIER_INTRADAY_DAYS = {"1m": 10, "5m": 18, "15m": 18}


class IntradayHistoryConfig(Scheduled):
    """Intraday bars of one length, refreshed through the extended hours by default."""

    bar: Literal["1m", "5m", "15m"] = Field(default="5m", description="the bar length: `1m`, `5m` or `15m`")
    cadence_s: Cadence = Field(
        default_factory=lambda: _cadence({"pre": 300.0, "regular": 300.0, "post": 300.0})
    )
    lookback_days: int = Field(
        default=5,
        gt=0,
        le=60,
        description="calendar days of intraday bars (Tradier keeps 10 days of 1m bars, 18 of 5m and 15m)",
    )


class HistoryConfig(Section):
    """Price bars: daily over `daily.lookback_days`, intraday at `intraday.bar` (null: none)."""

    enabled: bool = Field(
        default=True,
        description="refresh the daily and intraday bars of every symbol (false: only on a reader's miss)",
    )
    provider: Literal["tradier", "polygon"] = Field(
        default="tradier", description="`tradier` (history and timesales) or `polygon` (aggregates)"
    )
    daily: DailyHistoryConfig = DailyHistoryConfig()
    intraday: IntradayHistoryConfig | None = Field(
        default=IntradayHistoryConfig(), description="intraday bars (null: none)"
    )

    @model_validator(mode="after")
    def _within_tradier_lookback(self) -> HistoryConfig:
        intraday = self.intraday
        if self.provider == "tradier" and intraday is not None:
            limit = TRADIER_INTRADAY_DAYS[intraday.bar]
            if intraday.lookback_days > limit:
                raise ValueError(
                    f"intraday.lookback_days = {intraday.lookback_days}: Tradier keeps {limit} days of "
                    f"{intraday.bar} bars; lower it to {limit} or use provider: polygon"
                )
        return self


class IndicatorsConfig(Scheduled):
    """SMA, EMA, RSI and MACD on daily closes. `computed`: from the stored daily bars after each
    history refresh, costing no upstream call; `polygon`: fetched from its indicator endpoints."""

    enabled: bool = Field(
        default=True,
        description="compute or fetch SMA, EMA, RSI and MACD of every symbol (false: none, and readers "
        "asking for them are told so)",
    )
    source: Literal["computed", "polygon"] = Field(
        default="computed",
        description="`computed` from the stored daily bars (no upstream call), or `polygon` (its "
        "indicator endpoints)",
    )
    cadence_s: Cadence = Field(
        default_factory=dict,
        description="with source: polygon, as for the other datasets (computed ones follow the daily bars)",
    )
    close_refresh: CloseRefresh = Field(
        default=True, description="with source: polygon, as for the other datasets"
    )
    sma: list[Window] = Field(default_factory=lambda: [20, 50, 200], description="SMA windows, in bars")
    ema: list[Window] = Field(default_factory=lambda: [12, 26], description="EMA windows, in bars")
    rsi: list[Window] = Field(default_factory=lambda: [14], description="RSI windows, in bars")
    macd: (
        tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None
    ) = Field(default=(12, 26, 9), description="MACD fast, slow and signal windows, in bars (null: none)")

    @field_validator("macd")
    @classmethod
    def _fast_before_slow(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and value[0] >= value[1]:
            raise ValueError("the fast window must be shorter than the slow one, e.g. [12, 26, 9]")
        return value


class DatasetsConfig(Section):
    """What is fetched, from where and when: one section per dataset."""

    quotes: QuotesConfig = QuotesConfig()
    expirations: ExpirationsConfig = ExpirationsConfig()
    chains: ChainsConfig = ChainsConfig()
    history: HistoryConfig = HistoryConfig()
    indicators: IndicatorsConfig = IndicatorsConfig()

    @model_validator(mode="after")
    def _indicators_have_bars(self) -> DatasetsConfig:
        if self.indicators.enabled and self.indicators.source == "computed" and not self.history.enabled:
            raise ValueError(
                "indicators.source = 'computed' needs the daily bars of history: set history.enabled: true, "
                "or indicators.source: polygon, or indicators.enabled: false"
            )
        return self
