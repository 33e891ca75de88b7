"""Errors the reader raises. Every message names the offending value and what to do about it."""

from __future__ import annotations


class ReaderError(Exception):
    """Base class of every error raised by `reader`."""


class InvalidSymbol(ReaderError, ValueError):
    """A symbol that is not a well-formed ticker (raised before Redis is asked anything)."""

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        super().__init__(f"{value!r} is not a ticker symbol: {reason}")


class NotCached(ReaderError, LookupError):
    """Nothing usable is cached for this symbol and dataset."""

    def __init__(self, dataset: str, symbol: str, detail: str | None = None) -> None:
        self.dataset = dataset
        self.symbol = symbol
        self.specific = detail is not None  # says more than "nothing stored"
        self.detail = detail or (
            "the worker has not stored it; add the symbol to the watchlist in config.yaml "
            "or wait for the next refresh"
        )
        super().__init__(f"no {dataset} cached for {symbol!r}: {self.detail}")


class NoWorker(NotCached):
    """Nothing usable is cached, and no worker is alive to fetch it: its health key is absent."""

    def __init__(self, dataset: str, symbol: str, before: str = "") -> None:
        super().__init__(
            dataset,
            symbol,
            f"{before}no worker is running against this Redis (its health key is absent), so "
            "nothing will fetch it: start one (`python -m worker run`, or `make run`); the fetch "
            "stays queued for a minute",
        )


class UnknownSymbol(ReaderError, LookupError):
    """The upstream says it has no such symbol. Remembered by the worker for a while, so asking again
    soon costs no upstream call. (A listed symbol without such data is `NoData`.)"""

    def __init__(self, dataset: str, symbol: str, detail: str) -> None:
        self.dataset = dataset
        self.symbol = symbol
        self.detail = detail
        super().__init__(f"no {dataset} for {symbol!r}: {detail}")


class NoData(ReaderError, LookupError):
    """The upstream lists the symbol but has no data of this kind for it now (no listed options; no
    bars yet for a new listing). Not a fault to retry in a few seconds: the worker checks again at
    the dataset's next refresh, which `detail` names, and answers this until then without asking
    the upstream."""

    def __init__(self, dataset: str, symbol: str, detail: str) -> None:
        self.dataset = dataset
        self.symbol = symbol
        self.detail = detail
        super().__init__(f"no {dataset} for {symbol!r}: {detail}")


class InvalidRequest(ReaderError, ValueError):
    """An argument other than the symbol that the reader cannot use (an interval, a side, a date)."""

    def __init__(self, name: str, value: object, fix: str) -> None:
        self.name = name
        self.value = value
        super().__init__(f"{name}={value!r} is not valid: {fix}")
