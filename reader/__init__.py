"""marketcache reader: cached quotes and market data from Redis, for agent tools.

from reader import Reader
async with Reader() as r:
    q = await r.quote("AAPL")
    print(q.last, q.age_s, q.stale)
"""

from importlib.metadata import PackageNotFoundError, version

from reader.client import QuoteResult, Reader, SyncReader
from reader.errors import InvalidSymbol, NotCached, ReaderError
from reader.models import CachedItem, Quote

try:
    __version__ = version("marketcache")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CachedItem",
    "InvalidSymbol",
    "NotCached",
    "Quote",
    "QuoteResult",
    "Reader",
    "ReaderError",
    "SyncReader",
    "__version__",
]
