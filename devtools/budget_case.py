"""The rate budget's reference case (issue 13), shared by its acceptance tests and `bench/scale.py`:
100 symbols, quotes every 15 s, chains of 3 expirations every 60 s, one Tradier allowance; a plan
that needs about 2.7 times the allowance, so the planner stretches the chains."""

from __future__ import annotations

import itertools

SYMBOLS = ["".join(pair) for pair in itertools.product("ABCDEFGHIJ", repeat=2)]
"""100 symbols the emulator lists: AA, AB, ... JJ."""

_EVERY_PHASE = "{{pre: {s}, regular: {s}, post: {s}, closed: {s}}}"


def budget_case_config(rate_per_min: int, symbols: list[str] = SYMBOLS) -> str:
    """config.yaml of the case, with the same cadences in every phase (so a run does not depend on
    the time of day), history and indicators off, a tick every second."""
    return (
        f"watchlist: [{', '.join(symbols)}]\n"
        f"providers: {{tradier: {{rate_per_min: {rate_per_min}}}}}\n"
        "datasets:\n"
        f"  quotes: {{cadence_s: {_EVERY_PHASE.format(s=15)}, close_refresh: false}}\n"
        f"  chains: {{cadence_s: {_EVERY_PHASE.format(s=60)}, close_refresh: false, expirations: 3}}\n"
        "  history: {enabled: false}\n"
        "  indicators: {enabled: false}\n"
        "worker: {tick_s: 1, shutdown_grace_s: 2}\n"
    )
