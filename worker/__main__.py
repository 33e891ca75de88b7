"""`python -m worker {run,refresh,check-config,schema,status}`: the marketcache worker.

Exit codes: 0 success; 1 a refresh did not store every symbol, or Redis/upstream unreachable, or
(status) no worker is running; 2 the configuration (file or environment) is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import redis
import redis.asyncio
from rich.console import Console

from reader.clock import Clock, utc_now
from reader.redis_url import redact_url
from worker import schema, status
from worker.allowance import per_min_text, verdict
from worker.config import CONFIG_ENV, Config, Secrets, load_config, resolve_config_path
from worker.daemon import MarketWorker
from worker.errors import ConfigError
from worker.logs import LOG_FORMATS, Redactor, setup_logging
from worker.plan import dataset_plans, plan_allowance, scheduled_plans, used_upstreams
from worker.progress import DatasetProgress, ProgressBars, ProgressLines
from worker.providers import running_health
from worker.refresh import RefreshReport
from worker.risks import config_warnings
from worker.runtime import Runtime
from worker.schedule import Cadence
from worker.settings import worker_options
from worker.usage import flush_usage

EXIT_INCOMPLETE = 1
EXIT_CONFIG = 2

log = logging.getLogger("worker")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _command(args)
        sys.stdout.flush()  # here, so that a reader gone away (`schema | head`) raises now
    except BrokenPipeError:
        _reader_went_away()
        return 0
    return code


def _command(args: argparse.Namespace) -> int:
    if args.command == "status":  # reads Redis alone: needs no valid config nor API keys
        return _status(args)
    if args.command == "schema":  # from the models alone: needs no config file
        print(schema.schema_text())
        return 0
    path = resolve_config_path(getattr(args, "path", None) or args.config)
    try:
        config = load_config(path)
        for warning in config_warnings(config):
            print(f"warning: {warning}", file=sys.stderr)
        if args.command == "check-config":
            print(_describe(path, config))
            print(_plan_table(config))
            return 0
        secrets = Secrets.from_env()
        for upstream in used_upstreams(config):
            secrets.api_key(upstream)  # fail now, not at the first refresh
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.log_level, secrets.values(), args.log_format)
    try:
        if args.command == "refresh":
            # JSON logs are for a machine: no bars redrawn around (and wrapping) its lines.
            bars = sys.stdout.isatty() and args.log_format != "json"
            return asyncio.run(_refresh_once(config, secrets, bars=bars))
        MarketWorker(**worker_options(config, secrets, config_path=path)).run()
    except ConfigError as e:  # Redis refused the daemon's credentials: waiting would not help
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except (redis.ConnectionError, OSError) as e:  # `refresh` only: the daemon waits for Redis
        log.error("worker.redis_unreachable url=%s error=%r", redact_url(config.redis_url), str(e))
        return EXIT_INCOMPLETE
    return 0


async def _refresh_once(
    config: Config,
    secrets: Secrets,
    *,
    bars: bool = False,
    console: Console | None = None,
    clock: Clock = utc_now,
) -> int:
    """One pass over the watchlist: a line per dataset as it ends (with a progress bar per dataset
    when `bars`, on a terminal, or on `console` when given), then the errors on stderr;
    `EXIT_INCOMPLETE` unless every symbol was stored."""
    terminal = console is not None or bars
    client = redis.asyncio.Redis.from_url(config.redis_url)
    try:
        await client.ping()  # an unreachable Redis is one line, not a failure per symbol and dataset
        async with Runtime.open(config, secrets, client, clock=clock) as runtime:
            if terminal:
                progress = ProgressBars(_refreshed_line, console or Console())
                with progress.showing():
                    reports = await runtime.refresh_watchlist(progress)
            else:
                reports = await runtime.refresh_watchlist(ProgressLines(_refreshed_line))
            await _save_usage(runtime, client)
    finally:
        await client.aclose()
    redact = Redactor(secrets.values())  # errors quote upstream text: cut keys as the logs do
    for report in reports:
        for error in dict.fromkeys(report.errors):
            print(f"error: {redact(error)}", file=sys.stderr)
    return 0 if all(report.complete for report in reports) else EXIT_INCOMPLETE


def _refreshed_line(report: RefreshReport, progress: DatasetProgress) -> str:
    """ "refreshed quotes: stored 2 of 3 symbols; unknown upstream: NOPE (3/3 symbols, 1 call, 0.2 s)"."""
    return (
        f"refreshed {report.dataset}: stored {len(report.stored)} of {len(report.requested)} symbols"
        + (f"; unknown upstream: {', '.join(report.unmatched)}" if report.unmatched else "")
        + (f"; no data upstream now: {', '.join(report.no_data)}" if report.no_data else "")
        + (f"; failed: {len(report.failed)}" if report.failed else "")
        + f" ({progress.figures()})"
    )


async def _save_usage(runtime: Runtime, client: redis.asyncio.Redis) -> None:
    """Add this run's upstream calls to today's counters (`worker.usage`); a failure only logs."""
    try:
        await flush_usage(client, [health.usage for health in running_health(runtime.providers).values()])
    except redis.RedisError as e:
        log.warning("refresh.day_counts_not_saved error=%s", type(e).__name__)


def _status(args: argparse.Namespace) -> int:
    try:
        url = status.redis_url(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        text, code = status.report(
            url, as_json_=args.json, this_host=args.self, terminal=not args.json and sys.stdout.isatty()
        )
    except (redis.RedisError, OSError) as e:
        print(f"error: cannot read Redis at {redact_url(url)}: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_INCOMPLETE
    try:
        print(text)
        sys.stdout.flush()  # here, so that a reader gone away raises now, not at exit
    except BrokenPipeError:
        _reader_went_away()
        return 0
    return code


def _reader_went_away() -> None:
    """The reader of our output went away (`status | head`): not an error of ours. Python's own
    recipe: point stdout at devnull so that the flush at exit does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _cadence_text(cadence: Cadence) -> str:
    phases = ", ".join(f"{phase} {seconds:g}s" for phase, seconds in cadence.seconds.items())
    closing = "closing refresh" if cadence.close_refresh else ""
    return f"({'; '.join(p for p in (phases, closing) if p)})"


def _describe(path: Path, config: Config) -> str:
    upstreams = "; ".join(
        f"{name} ({redact_url(settings.base_url)}, {settings.rate_per_min}/min, batch {settings.batch_size})"
        for name in used_upstreams(config)
        for settings in [getattr(config.providers, name)]
    )
    cadence = ", ".join(
        f"{plan.name} {_cadence_text(plan.configured)} from {plan.source}"
        for plan in scheduled_plans(config).values()
    )
    indicators = dataset_plans(config)["indicators"]
    if config.datasets.indicators.enabled and not indicators.scheduled:
        cadence += ", indicators computed from the daily bars"
    return (
        f"ok: {path}: {len(config.watchlist)} symbols; {cadence}; upstreams: {upstreams}; "
        f"redis {redact_url(config.redis_url)}"
    )


def _plan_table(config: Config) -> str:
    """Per dataset the cadence it can hold under its upstream's allowance (`worker.allowance`), and
    per upstream what the plan needs and holds at its busiest."""
    allowance = plan_allowance(config)
    rows = [("dataset", "provider", "configured", "held", "calls/min", "verdict")]
    for plan in dataset_plans(config).values():
        hold = allowance.holds.get(plan.name)
        if hold is None:
            if plan.name == "indicators" and config.datasets.indicators.enabled:
                rows.append((plan.name, plan.source, "with the daily bars", "same", "0", "kept (no call)"))
            continue
        phase = hold.worst_phase
        if phase is None:
            calls = "daily"
        elif hold.stretched:
            needed, held = hold.needed_per_min[phase], hold.held_per_min[phase]
            calls = f"{per_min_text(needed)} -> {per_min_text(held)} ({phase})"
        else:
            calls = f"{per_min_text(hold.needed_per_min[phase])} ({phase})"
        differ = {p: s for p, s in hold.held.seconds.items() if s != hold.configured.seconds.get(p)}
        held_text = ", ".join(f"{p} {s:g}s" for p, s in differ.items()) or "same"
        configured = _cadence_text(hold.configured)[1:-1]
        rows.append(
            (
                plan.name,
                hold.upstream,
                configured,
                held_text,
                calls,
                verdict(hold, allowance.shares[hold.upstream]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    for share in allowance.shares.values():
        phase = share.busiest_phase
        steady = "" if share.steady_per_min == share.rate_per_min else f" ({share.steady_per_min:g} planned)"
        needed, held = share.needed_per_min[phase], share.held_per_min[phase]
        lines.append(
            f"{share.upstream}: allowance {share.rate_per_min}/min{steady}; at its busiest ({phase}) "
            f"the plan needs {per_min_text(needed)} calls/min and holds {per_min_text(held)}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH", help=f"config file (default: ${CONFIG_ENV}, else ./config.yaml)"
    )
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    logs = argparse.ArgumentParser(add_help=False)
    logs.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text lines (default), or one JSON object per line for log shippers",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", parents=[common, logs], help="run the worker daemon (Ctrl-C stops it)")
    commands.add_parser("refresh", parents=[common, logs], help="refresh every symbol once and exit")
    check = commands.add_parser("check-config", parents=[common], help="validate a config file and exit")
    check.add_argument("path", nargs="?", metavar="PATH", help="the file to check (default: as --config)")
    commands.add_parser(
        "schema",
        help=f"print the JSON Schema of config.yaml that editors check it with ({schema.SCHEMA_FILE})",
    )
    status = commands.add_parser(
        "status",
        parents=[common],
        help="the market, the cache, the upstreams, the queue and the live workers; exit 1 if no worker runs",
    )
    status.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    status.add_argument(
        "--self", action="store_true", help="only the workers of this host (a container's healthcheck)"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
