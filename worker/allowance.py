"""How an upstream's allowance is shared by the datasets it serves: which keep their cadence, and
how much the others are stretched so that together they fit. A pure function of the plan.

The model, per upstream and per phase of the exchange day (pre, regular, post, closed):
- A dataset that refreshes every `seconds` in a phase needs `calls * 60 / seconds` calls/min
  there, `calls` being the upstream calls of one refresh of the whole watchlist (counted by
  `worker.plan`): quotes one per batch (Polygon: one more per batch holding indices); expirations
  one per symbol; chains one per selected expiration of each underlying, one page per chain (a
  Polygon chain of more than 250 contracts costs a call per further page; a Tradier chain
  fetched without a stored quote costs a quote call, rare when the quotes are kept); daily and
  intraday bars one per symbol (one page); Polygon indicators one per symbol and window;
  computed indicators none.
- Chains fetch the expirations they find missing or stale themselves: that costs what
  refreshing the expirations on their own cadence costs (they stay fresh until its next refresh),
  so expirations are counted once, on their cadence, whether or not they are scheduled.
- A phase refreshed once a day or less often (`seconds >= ONCE_A_DAY_S`) and a closing refresh
  cost a negligible rate: they count as 0/min and are never stretched (their calls come in one
  burst a day, which the rate budget spreads behind the higher ranks).
- Every phase is planned on its own, as if it lasted: a refresh running late past a phase's end
  is not modelled.

The sharing, per upstream and phase: datasets are walked by rank (quotes, then config.yaml's
`priority`). Each keeps its cadence while the running total fits in the steady rate
(`worker.ratelimit.steady_rate_per_min`); the first that does not fit and every one after it are
stretched by one common factor `f = (what they need) / (what is left)`, so that each is refreshed
`f` times less often ("evenly") and together they fit. If even the first (quotes) does not fit,
it keeps `FIRST_SHARE_MAX` of the steady rate, stretched as little as that allows, and the
others share the rest by one factor. A stretched interval is rounded up to whole seconds and is
at least `floor_s` (the worker's tick), so the held rates never exceed the steady rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from reader.models import Phase
from worker.ratelimit import steady_rate_per_min
from worker.schedule import Cadence

ONCE_A_DAY_S = 86_400.0
"""A phase interval this long or longer refreshes once per phase a day: a negligible rate."""

PHASES: tuple[Phase, ...] = ("pre", "regular", "post", "closed")

_BY_INTEREST: tuple[Phase, ...] = ("regular", "pre", "post", "closed")  # the first wins a tie
_EPSILON = 1e-9


@dataclass(frozen=True)
class Demand:
    """What one dataset asks of `upstream`: `calls` per refresh of the watchlist, at `cadence`;
    `rank` orders who keeps its cadence first (`worker.priority`, lower first)."""

    name: str
    upstream: str
    cadence: Cadence
    calls: float
    rank: int

    def per_min(self, phase: Phase) -> float:
        """Calls/min needed in `phase` at the configured cadence (0 when off or once a day)."""
        return _per_min(self.calls, self.cadence.seconds.get(phase))


@dataclass(frozen=True)
class Hold:
    """The cadence a dataset can hold. `stretch[phase]` is 1.0 where it keeps its cadence; the
    calls/min are per phase, as configured (`needed_per_min`) and as held (`held_per_min`)."""

    name: str
    upstream: str
    configured: Cadence
    held: Cadence
    needed_per_min: Mapping[Phase, float]
    held_per_min: Mapping[Phase, float]
    stretch: Mapping[Phase, float] = field(default_factory=dict)
    keep_per_min: Mapping[Phase, float] = field(default_factory=dict)
    """Per phase, what it and the datasets ranked before it on its upstream need: the steady rate
    that would keep it on its cadence."""

    @property
    def factor(self) -> float:
        """The largest stretch over the phases (1.0: kept everywhere)."""
        return max(self.stretch.values(), default=1.0)

    @property
    def stretched(self) -> bool:
        return self.held != self.configured

    @property
    def worst_phase(self) -> Phase | None:
        """The phase it is stretched most in, or where it needs most; None if it costs nothing."""
        costly = [p for p in _BY_INTEREST if self.needed_per_min.get(p, 0.0) > 0]
        if not costly:
            return None

        def weight(phase: Phase) -> tuple[float, float]:
            return self.stretch.get(phase, 1.0), self.needed_per_min.get(phase, 0.0)

        return max(costly, key=weight)


@dataclass(frozen=True)
class Share:
    """One upstream's allowance (`rate_per_min`, of which `steady_per_min` may be planned) and
    what its datasets need and hold per phase, in calls/min."""

    upstream: str
    rate_per_min: int
    steady_per_min: float
    needed_per_min: Mapping[Phase, float]
    held_per_min: Mapping[Phase, float]
    quotes_stretched: bool = False

    @property
    def busiest_phase(self) -> Phase:
        return max(_BY_INTEREST, key=lambda p: self.needed_per_min.get(p, 0.0))


@dataclass(frozen=True)
class Allowance:
    """Per dataset what it holds (`holds`, by name), per upstream how its allowance is shared."""

    holds: Mapping[str, Hold]
    shares: Mapping[str, Share]

    @property
    def stretched(self) -> list[Hold]:
        return [hold for hold in self.holds.values() if hold.stretched]

    def __repr__(self) -> str:
        kept = sum(not hold.stretched for hold in self.holds.values())
        return f"<Allowance kept={kept} stretched={','.join(h.name for h in self.stretched) or '-'}>"


FIRST_SHARE_MAX = 0.9
"""When even the first-ranked dataset (quotes) does not fit an allowance, the share of the steady
rate it keeps; the others share the rest."""


def share_allowance(
    demands: Sequence[Demand], rate_per_min: Mapping[str, int], *, floor_s: float = 1.0
) -> Allowance:
    """The cadence each of `demands` can hold under `rate_per_min` (per upstream name; each demand's
    upstream must be a key) as the module docstring describes. Raises `KeyError` for a demand on
    an upstream without a rate."""
    factors: dict[str, dict[Phase, float]] = {d.name: {} for d in demands}
    shares: dict[str, Share] = {}
    by_upstream: dict[str, list[Demand]] = {}
    for demand in sorted(demands, key=lambda d: d.rank):
        by_upstream.setdefault(demand.upstream, []).append(demand)
    for upstream, ranked in by_upstream.items():
        steady = steady_rate_per_min(rate_per_min[upstream])
        for phase in PHASES:
            needs = [d.per_min(phase) for d in ranked]
            start = _first_stretched(needs, steady)
            if start is None:
                continue
            if start == 0 and sum(needs[1:]) > 0:
                # Not even the first (quotes) fits: it keeps the most it can, `FIRST_SHARE_MAX` of
                # the rate, and the others share the rest, rather than all stretched alike.
                factors[ranked[0].name][phase] = needs[0] / (steady * FIRST_SHARE_MAX)
                start, steady = 1, steady * (1 - FIRST_SHARE_MAX)
                needs = [0.0, *needs[1:]]
            factor = sum(needs[start:]) / (steady - sum(needs[:start]))
            for demand, need in zip(ranked[start:], needs[start:], strict=True):
                if need > 0:
                    factors[demand.name][phase] = factor
    keep: dict[str, dict[Phase, float]] = {d.name: {} for d in demands}
    for ranked in by_upstream.values():
        for phase in PHASES:
            running = 0.0
            for demand in ranked:
                running += demand.per_min(phase)
                keep[demand.name][phase] = running
    holds = {d.name: _hold(d, factors[d.name], keep[d.name], floor_s) for d in demands}
    for upstream, ranked in by_upstream.items():
        mine = [holds[d.name] for d in ranked]
        shares[upstream] = Share(
            upstream,
            rate_per_min[upstream],
            steady_rate_per_min(rate_per_min[upstream]),
            {p: sum(h.needed_per_min[p] for h in mine) for p in PHASES},
            {p: sum(h.held_per_min[p] for h in mine) for p in PHASES},
            quotes_stretched=any(h.stretched for h in mine if h.name == "quotes"),
        )
    return Allowance(holds, shares)


def _first_stretched(needs: Sequence[float], steady: float) -> int | None:
    """The index from which the ranked `needs` are stretched, or None if they all fit. When the
    ones kept would leave nothing, the ones before join the stretched (there must be room left)."""
    if sum(needs) <= steady * (1 + _EPSILON):
        return None
    running, start = 0.0, 0
    for start, need in enumerate(needs):  # noqa: B007 - `start` is the first that does not fit
        if running + need > steady * (1 + _EPSILON):
            break
        running += need
    while start > 0 and steady - sum(needs[:start]) <= steady * _EPSILON:
        start -= 1
    return start


def _hold(
    demand: Demand, factors: Mapping[Phase, float], keep: Mapping[Phase, float], floor_s: float
) -> Hold:
    configured = demand.cadence
    seconds = dict(configured.seconds)
    for phase, factor in factors.items():
        seconds[phase] = max(float(math.ceil(seconds[phase] * factor - _EPSILON)), floor_s)
    held = replace(configured, seconds=seconds) if factors else configured
    return Hold(
        demand.name,
        demand.upstream,
        configured,
        held,
        {p: demand.per_min(p) for p in PHASES},
        {p: _per_min(demand.calls, held.seconds.get(p)) for p in PHASES},
        {p: factors.get(p, 1.0) for p in PHASES if p in configured.seconds},
        keep,
    )


def _per_min(calls: float, seconds: float | None) -> float:
    if seconds is None or seconds >= ONCE_A_DAY_S:
        return 0.0
    return calls * 60 / seconds


def rate_to_keep(steady_needed: float) -> int:
    """The smallest `rate_per_min` whose steady rate covers `steady_needed` calls/min."""
    enough = max(1, math.ceil(steady_needed - _EPSILON))
    while steady_rate_per_min(enough) < steady_needed * (1 - _EPSILON):
        enough *= 2
    low = 1
    while low < enough:
        middle = (low + enough) // 2
        if steady_rate_per_min(middle) >= steady_needed * (1 - _EPSILON):
            enough = middle
        else:
            low = middle + 1
    return enough


def verdict(hold: Hold, share: Share) -> str:
    """One line: `kept`, or how much `hold` is stretched, why, and what would keep it."""
    phase = hold.worst_phase
    if not hold.stretched or phase is None:
        return "kept"
    upstream = share.upstream
    configured_s, held_s = hold.configured.seconds[phase], hold.held.seconds[phase]
    planned = _allowance_text(share)
    rate = f"providers.{upstream}.rate_per_min >= {rate_to_keep(hold.keep_per_min[phase])}"
    if hold.name == "quotes":
        return (
            f"stretched x{hold.factor:.2f}: {upstream}'s allowance ({planned}) cannot hold even the quotes "
            f"every {configured_s:g} s in {phase} ({per_min_text(hold.needed_per_min[phase])} calls/min); "
            f"to keep them: {rate}, a larger providers.{upstream}.batch_size, or fewer symbols"
        )
    before = hold.keep_per_min[phase] - hold.needed_per_min[phase]
    fewer = "fewer symbols or expirations" if hold.name == "chains" else "fewer symbols"
    return (
        f"stretched x{hold.factor:.2f}: {upstream}'s allowance ({planned}) cannot hold {hold.name} every "
        f"{configured_s:g} s in {phase} ({per_min_text(hold.needed_per_min[phase])} calls/min) after "
        f"the {per_min_text(before)} calls/min of what ranks before it; to keep it: {rate}, {hold.name} "
        f"earlier in `priority`, {fewer}, or cadence_s.{phase} >= {held_s:g} (held now)"
    )


def stretch_warning(allowance: Allowance, share: Share) -> str | None:
    """The warning for an upstream whose datasets do not all keep their cadence, or None."""
    stretched = [h for h in allowance.stretched if h.upstream == share.upstream]
    if not stretched:
        return None
    upstream, phase = share.upstream, share.busiest_phase
    needed = share.needed_per_min[phase]
    if needed > share.rate_per_min:
        bound = float(share.rate_per_min)
        planned = "" if share.steady_per_min == bound else f" ({share.steady_per_min:g}/min planned)"
        over = f"above providers.{upstream}.rate_per_min = {share.rate_per_min}{planned}"
    else:  # within the allowance, but beyond what the workers send of it
        bound = share.steady_per_min
        over = (
            f"more than the {bound:g} the workers plan to send of providers.{upstream}.rate_per_min = "
            f"{share.rate_per_min} (the rest is headroom for bursts and latency)"
        )
    held = ", ".join(
        f"{h.name} every {h.held.seconds[p]:g} s instead of {h.configured.seconds[p]:g} s in {p}"
        for h in stretched
        for p in [h.worst_phase]
        if p is not None
    )
    keep = rate_to_keep(needed)
    what = "even the quotes are" if share.quotes_stretched else "the lowest in priority are"
    return (
        f"the datasets served by {upstream} need about {_more_than(needed, bound)} "
        f"calls/min, {over}: {what} refreshed less often "
        f"than their cadence_s ({held}); to keep every cadence, raise rate_per_min to {keep}, or lengthen "
        "cadence_s, keep fewer expirations or shorten the watchlist (`check-config` shows what each holds)"
    )


def _more_than(needed: float, bound: float) -> str:
    """`needed` (more than `bound`) in whole calls, or with the decimals that show it is more."""
    for decimals in range(4):
        text = f"{needed:.{decimals}f}"
        if float(text) > bound:
            return text
    return text


def _allowance_text(share: Share) -> str:
    if share.steady_per_min == share.rate_per_min:
        return f"{share.rate_per_min}/min"
    return f"{share.rate_per_min}/min, {share.steady_per_min:g} planned"


def per_min_text(per_min: float) -> str:
    """Calls/min as read in a table: whole above 10, else one decimal."""
    return f"{per_min:.0f}" if per_min >= 10 else f"{per_min:.1f}"
