"""`python -m reader quote AAPL MSFT`: print cached quotes as JSON.

Exit codes: 0 all found, 1 some symbol not cached, 2 bad arguments (a malformed symbol).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import redis

from reader.client import SyncReader
from reader.errors import InvalidSymbol, NotCached, ReaderError
from reader.models import CachedItem


def _as_json(item: CachedItem) -> dict[str, Any]:
    data = item.model_dump(mode="json")
    data["age_s"] = round(item.age_s, 3)
    data["stale"] = item.stale
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reader", description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="Redis URL (default: $REDIS_URL, else redis://localhost:6379/0)")
    commands = parser.add_subparsers(dest="command", required=True)
    quote = commands.add_parser("quote", help="print the cached quotes of SYMBOLs")
    quote.add_argument("symbols", nargs="+", metavar="SYMBOL")
    args = parser.parse_args(argv)

    with SyncReader(args.url) as reader:
        try:
            results = reader.quotes(args.symbols)
        except redis.RedisError as e:
            print(
                f"error: cannot read from Redis at {reader!r}: {e}; set REDIS_URL or --url "
                "to the Redis the worker writes to (make run starts one)",
                file=sys.stderr,
            )
            return 1
    found = {s: _as_json(r) for s, r in results.items() if isinstance(r, CachedItem)}
    errors = [r for r in results.values() if isinstance(r, ReaderError)]
    if found:
        print(json.dumps(found, indent=2))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if any(isinstance(e, InvalidSymbol) for e in errors):
        return 2
    return 1 if any(isinstance(e, NotCached) for e in errors) else 0


if __name__ == "__main__":
    sys.exit(main())
