"""Benchmark: upstream calls of one week for a 100-symbol watchlist, on the exchange's schedule
against round-the-clock polling at the same regular-hours cadence.

The schedule is the worker's own (`worker.schedule` on the XNYS calendar, config.yaml's cadences
by default); each refresh of a dataset costs the calls its plan says (one per quotes batch, one
per symbol, one per chain...), which tests/test_week_simulation.py checks against the real
refresh code and the emulator. Round-the-clock polling refreshes every dataset all week long at
its regular-session cadence (datasets without one: once a day).

    python bench/calls_per_week.py [--symbols 100] [--week-of 2026-12-07] [--config config.yaml]
                                   [--figures-json PATH]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _figures
from bench._figures import Figure
from reader.calendar import EXCHANGE_TZ, MarketCalendar
from worker import schedule
from worker.config import load_config
from worker.plan import scheduled_plans

WEEK_S = 7 * 86_400


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--week-of", type=date.fromisoformat, default=date(2026, 12, 7), help="a Monday")
    parser.add_argument("--config", type=Path, default=Path(__file__).resolve().parent.parent / "config.yaml")
    parser.add_argument("--figures-json", type=Path, help="also write the headline figures here (JSON)")
    args = parser.parse_args(argv)

    base = load_config(args.config, env={})
    watchlist = [f"S{i:03d}" for i in range(args.symbols)]
    config = base.model_copy(update={"watchlist": watchlist})
    calendar = MarketCalendar(config.schedule.exchange, config.schedule.extra_closed)
    start = datetime.combine(args.week_of, datetime.min.time(), tzinfo=EXCHANGE_TZ).astimezone(UTC)
    end = start + timedelta(days=7)

    source = args.config.name
    print(f"upstream calls, week of {args.week_of} (XNYS), {args.symbols} symbols, cadences of {source}")
    print(f"{'dataset':12} {'refreshes':>10} {'calls':>10} {'polling':>10} {'ratio':>7}")
    total_scheduled = total_polling = 0.0
    for name, plan in scheduled_plans(config).items():
        refreshes = len(schedule.refreshes_between(plan.cadence, calendar, start, end))
        calls = refreshes * plan.calls
        regular_s = plan.cadence.seconds.get("regular", 86_400.0)
        polling = WEEK_S / regular_s * plan.calls
        total_scheduled += calls
        total_polling += polling
        print(f"{name:12} {refreshes:10d} {calls:10.0f} {polling:10.0f} {calls / polling:7.1%}")
    ratio = total_scheduled / total_polling
    print(f"{'total':12} {'':10} {total_scheduled:10.0f} {total_polling:10.0f} {ratio:7.1%}")
    if args.figures_json:
        week = Figure(
            f"upstream calls per week, {args.symbols} symbols",
            round(total_scheduled),
            "calls",
            round(total_polling),
            "round-the-clock polling",
        )
        _figures.write(args.figures_json, [week])
    return 0


if __name__ == "__main__":
    sys.exit(main())
