"""One reader process of the cross-process miss test.

    python -m tests.miss_client URL SYMBOL COUNT START_AT

Waits until START_AT (epoch seconds, so that several processes ask at the same moment), asks
`Reader.quote(SYMBOL)` COUNT times concurrently, and prints a JSON list: the symbol of each
quote received, or the error in its place.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from reader import Reader


async def main(url: str, symbol: str, count: int, start_at: float) -> None:
    async with Reader(url, wait_s=20) as reader:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        answers = await asyncio.gather(*(reader.quote(symbol) for _ in range(count)), return_exceptions=True)
    print(
        json.dumps(
            [a.symbol if not isinstance(a, BaseException) else f"{type(a).__name__}: {a}" for a in answers]
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
