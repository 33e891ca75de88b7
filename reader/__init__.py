"""marketcache reader: cached quotes and market data from Redis, for agent tools.

from reader import Reader
async with Reader() as r:
    q = await r.quote("AAPL")
    print(q.last, q.age_s, q.stale)
"""

from importlib.metadata import PackageNotFoundError, version

from reader._results import Bundle, QuoteResult
from reader.client import Reader, SyncReader
from reader.errors import (
    InvalidRequest,
    InvalidSymbol,
    NoData,
    NotCached,
    NoWorker,
    ReaderError,
    UnknownSymbol,
)
from reader.models import (
    Bar,
    CachedItem,
    Expirations,
    Indicators,
    Macd,
    MarketStatus,
    OptionChain,
    OptionContract,
    PriceHistory,
    Quote,
)

try:
    __version__ = version("marketcache")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Bar",
    "Bundle",
    "CachedItem",
    "Expirations",
    "Indicators",
    "InvalidRequest",
    "InvalidSymbol",
    "Macd",
    "MarketStatus",
    "NoData",
    "NoWorker",
    "NotCached",
    "OptionChain",
    "OptionContract",
    "PriceHistory",
    "Quote",
    "QuoteResult",
    "Reader",
    "ReaderError",
    "SyncReader",
    "UnknownSymbol",
    "__version__",
]
