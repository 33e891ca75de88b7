"""What one emulator instance holds: options, clock, market (and its bars and options), rate windows,
call counts and faults."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from emulator.bars import History
from emulator.faults import Fault
from emulator.market import Market
from emulator.options import OptionBook
from emulator.ratelimit import WindowLimiter
from reader.clock import Clock

__all__ = ["POLYGON_PLANS", "STATE", "EmulatorOptions", "EmulatorState", "Fault"]

POLYGON_PLANS = ("basic", "starter", "developer", "advanced", "business")


@dataclass(frozen=True)
class EmulatorOptions:
    """`api_keys` empty: any non-empty Bearer token (or Polygon key) is accepted.

    `rate_per_min` is Tradier's allowance per token; `polygon_rate_per_min` Polygon's per key (0:
    unlimited, as on paid plans); `polygon_plan` "basic" refuses the snapshot endpoints (403).
    """

    seed: int = 0
    latency_ms: float = 0.0
    rate_per_min: int = 120
    api_keys: frozenset[str] = frozenset()
    polygon_rate_per_min: int = 0
    polygon_plan: str = "advanced"

    def __post_init__(self) -> None:
        if self.polygon_plan not in POLYGON_PLANS:
            raise ValueError(f"polygon_plan {self.polygon_plan!r} is not one of {', '.join(POLYGON_PLANS)}")


@dataclass
class _Armed:
    fault: Fault
    uses_left: int | None  # None: until cleared


@dataclass
class EmulatorState:
    options: EmulatorOptions
    clock: Clock
    market: Market
    tradier_limiter: WindowLimiter
    calls: Counter[tuple[str, int]] = field(default_factory=Counter)
    methods: Counter[tuple[str, str]] = field(default_factory=Counter)
    quoted: Counter[str] = field(default_factory=Counter)  # Tradier quote requests naming each symbol
    _armed: list[_Armed] = field(default_factory=list)
    fault_generation: int = 0  # bumped by every clearing of the faults
    polygon_limiter: WindowLimiter = field(init=False)
    history: History = field(init=False)
    options_book: OptionBook = field(init=False)

    def __post_init__(self) -> None:
        self.polygon_limiter = WindowLimiter(self.options.polygon_rate_per_min)
        self.history = History(self.market)
        self.options_book = OptionBook(self.market)

    def arm(self, fault: Fault) -> None:
        self._armed.append(_Armed(fault, fault.times))

    def take_fault(self, path: str) -> Fault | None:
        """The first armed fault for `path`, used once; it is disarmed after `times` uses."""
        for index, armed in enumerate(self._armed):
            if armed.fault.matches(path):
                if armed.uses_left is not None:
                    armed.uses_left -= 1
                    if armed.uses_left <= 0:
                        del self._armed[index]
                return armed.fault
        return None

    def armed(self) -> int:
        """How many faults are armed and not used up (a test waits for its request to take one)."""
        return len(self._armed)

    def clear_faults(self) -> None:
        self._armed.clear()
        self.fault_generation += 1

    def armed_since(self, generation: int) -> bool:
        """Whether no clearing happened since `generation` (a held request ends when one does)."""
        return self.fault_generation == generation

    def stats(self) -> dict[str, Any]:
        calls: dict[str, dict[str, int]] = {}
        for (path, status), count in sorted(self.calls.items()):
            calls.setdefault(path, {})[str(status)] = count
        methods: dict[str, dict[str, int]] = {}
        for (path, method), count in sorted(self.methods.items()):
            methods.setdefault(path, {})[method] = count
        return {
            "calls": calls,
            "methods": methods,
            "quoted": dict(sorted(self.quoted.items())),
            "total": sum(self.calls.values()),
        }

    def reset(self) -> None:
        self.calls.clear()
        self.methods.clear()
        self.quoted.clear()
        self.clear_faults()
        self.tradier_limiter.reset()
        self.polygon_limiter.reset()


STATE = web.AppKey("state", EmulatorState)
