"""The Redis key layout shared by the worker (writes) and the reader (reads).

Every key starts with `PREFIX`; bump its version when a stored format changes incompatibly, so
old and new processes never read each other's values. Symbols passed here are already
normalised by `reader.symbols.normalize_symbol`.
"""

from __future__ import annotations

PREFIX = "mc:v1:"

# arq's queue for the worker's jobs (refreshes now, on-demand fetches later).
QUEUE = PREFIX + "queue"


def quote(symbol: str) -> str:
    """Latest quote of one symbol: a JSON `reader.models.Quote`."""
    return f"{PREFIX}quote:{symbol}"


def refresh_job_id(dataset: str, slot: int, batch: int) -> str:
    """arq job id of one scheduled batch: the same for every worker, so a batch runs once per slot."""
    return f"{PREFIX}refresh:{dataset}:{slot}:{batch}"
