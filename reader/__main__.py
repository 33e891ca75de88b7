"""`python -m reader quote AAPL MSFT`: print cached market data as JSON.

Subcommands: quote, expirations, chain, history, indicators, bundle, status; and mcp, which
serves the agent tools over the Model Context Protocol (`agent_tools.mcp_server`).
Exit codes: 0 all found, 1 something not cached (or Redis unreachable), 2 bad arguments (one line
on stderr, before Redis is asked anything).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import redis
from pydantic import BaseModel

from reader._results import MAX_WAIT_S, Bundle, check_wait_s
from reader.client import DEFAULT_TIMEOUT_S, DEFAULT_WAIT_S, SyncReader
from reader.errors import InvalidRequest, InvalidSymbol, NoData, NotCached, ReaderError, UnknownSymbol
from reader.models import CachedItem
from reader.redis_url import redact_url, resolve_url, url_problem
from reader.symbols import normalize_symbol, shown

EXIT_MISSING = 1
EXIT_USAGE = 2
_MESSAGE_MAX = 300


def _as_json(item: BaseModel) -> dict[str, Any]:
    return item.as_json() if isinstance(item, CachedItem) else item.model_dump(mode="json")


def _part(value: object) -> Any:
    if isinstance(value, BaseModel):
        return _as_json(value)
    if isinstance(value, ReaderError):
        return {"error": str(value)}
    if isinstance(value, tuple):
        return [_part(v) for v in value]
    return value


def _bundle_json(bundle: Bundle) -> dict[str, Any]:
    parts = {"quote": bundle.quote, "chains": bundle.chains, "indicators": bundle.indicators}
    return {"symbol": bundle.symbol, **{k: _part(v) for k, v in parts.items() if v is not None}}


def _quotes(reader: SyncReader, args: argparse.Namespace) -> int:
    malformed: list[InvalidSymbol] = []
    for symbol in args.symbols:
        try:
            normalize_symbol(symbol)
        except InvalidSymbol as e:
            malformed.append(e)
    if malformed:  # a usage error: say so before reading anything
        for refused in malformed:
            print(f"error: {refused}", file=sys.stderr)
        return EXIT_USAGE
    results = reader.quotes(args.symbols)
    found = {s: _as_json(r) for s, r in results.items() if isinstance(r, CachedItem)}
    errors = [r for r in results.values() if isinstance(r, ReaderError)]
    if found:
        print(json.dumps(found, indent=2))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_MISSING if errors else 0


def _single(read: Callable[[SyncReader, argparse.Namespace], BaseModel]) -> Callable[..., int]:
    def run(reader: SyncReader, args: argparse.Namespace) -> int:
        print(json.dumps(_as_json(read(reader, args)), indent=2))
        return 0

    return run


def _bundle(reader: SyncReader, args: argparse.Namespace) -> int:
    bundle = reader.bundle(args.symbol, options=args.options, technical=args.technical)
    print(json.dumps(_bundle_json(bundle), indent=2))
    return 0 if isinstance(bundle.quote, CachedItem) else EXIT_MISSING


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr (no usage block), cut when long."""

    def error(self, message: str) -> NoReturn:
        line = " ".join(message.split())
        if len(line) > _MESSAGE_MAX:
            line = line[: _MESSAGE_MAX - 3] + "..."
        self.exit(EXIT_USAGE, f"error: {line}; see {self.prog} --help\n")


_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def _wait_s(text: str) -> float:
    """--wait: plain decimal seconds from 0 to MAX_WAIT_S (no sign, exponent, nan or inf)."""
    if _SECONDS.fullmatch(text) is None or float(text) > MAX_WAIT_S:
        raise argparse.ArgumentTypeError(
            f"{shown(text)!r}: expected seconds from 0 (do not wait) to {MAX_WAIT_S:g}, e.g. 3"
        )
    return check_wait_s(float(text))


def _timeout_s(text: str) -> float:
    """--timeout: plain decimal seconds above 0, at most MAX_WAIT_S."""
    if _SECONDS.fullmatch(text) is None or not 0 < float(text) <= MAX_WAIT_S:
        raise argparse.ArgumentTypeError(
            f"{shown(text)!r}: expected seconds above 0 and up to {MAX_WAIT_S:g}, e.g. 2"
        )
    return float(text)


def _common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--url, --wait and --timeout, accepted before the subcommand (`defaults`) and after it (where
    an option left out keeps the value given before, or the default)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        default=default(None),
        help="Redis URL (default: $REDIS_URL, else redis://localhost:6379/0)",
    )
    parser.add_argument(
        "--wait",
        type=_wait_s,
        default=default(DEFAULT_WAIT_S),
        metavar="SECONDS",
        help=f"on a miss, wait this long for an on-demand fetch (default {DEFAULT_WAIT_S:g}; 0: do not wait)",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout_s,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"longest wait for Redis to connect, then to answer a command (default {DEFAULT_TIMEOUT_S:g})",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m reader", description=__doc__.splitlines()[0])
    _common_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    quote = commands.add_parser("quote", help="the cached quotes of SYMBOLs")
    _common_options(quote, defaults=False)
    quote.add_argument("symbols", nargs="+", metavar="SYMBOL")
    quote.set_defaults(run=_quotes)
    expirations = commands.add_parser("expirations", help="the option expirations listed for SYMBOL")
    _common_options(expirations, defaults=False)
    expirations.add_argument("symbol", metavar="SYMBOL")
    expirations.set_defaults(run=_single(lambda r, a: r.expirations(a.symbol)))
    chain = commands.add_parser("chain", help="an option chain of SYMBOL (default: the nearest expiration)")
    _common_options(chain, defaults=False)
    chain.add_argument("symbol", metavar="SYMBOL")
    chain.add_argument("--expiration", metavar="YYYY-MM-DD")
    chain.add_argument(
        "--side", default="both", metavar="{calls,puts,both}", help="the contracts to print (default both)"
    )
    chain.set_defaults(run=_single(lambda r, a: r.chain(a.symbol, a.expiration, a.side)))
    history = commands.add_parser("history", help="cached price bars of SYMBOL")
    _common_options(history, defaults=False)
    history.add_argument("symbol", metavar="SYMBOL")
    history.add_argument("--interval", default="1d", help="1d (default), 1m, 5m or 15m")
    history.set_defaults(run=_single(lambda r, a: r.history(a.symbol, a.interval)))
    indicators = commands.add_parser("indicators", help="SMA, EMA, RSI and MACD of SYMBOL")
    _common_options(indicators, defaults=False)
    indicators.add_argument("symbol", metavar="SYMBOL")
    indicators.set_defaults(run=_single(lambda r, a: r.indicators(a.symbol)))
    bundle = commands.add_parser("bundle", help="quote, and optionally chains and indicators, of SYMBOL")
    _common_options(bundle, defaults=False)
    bundle.add_argument("symbol", metavar="SYMBOL")
    bundle.add_argument("--options", action="store_true", help="add the cached chains from today on")
    bundle.add_argument("--technical", action="store_true", help="add the indicators")
    bundle.set_defaults(run=_bundle)
    status = commands.add_parser(
        "status", help="the market's phase and next open/close, by the worker's calendar"
    )
    _common_options(status, defaults=False)
    status.set_defaults(run=_single(lambda r, a: r.market_status()))
    mcp = commands.add_parser(
        "mcp",
        help="serve the agent tools and the cache's items to MCP clients (stdio, or --http HOST:PORT)",
        description="Serve the agent tools and the cached quotes, chains and market status over the "
        "Model Context Protocol: over stdio (what desktop clients launch), or as Streamable HTTP at "
        "http://HOST:PORT/mcp. Needs the mcp extra: pip install 'marketcache[mcp]'.",
    )
    _common_options(mcp, defaults=False)
    mcp.add_argument("--http", type=_host_port, metavar="HOST:PORT", help="serve Streamable HTTP there")
    mcp.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="with --http: a host name clients reach the server by, besides loopback (repeatable); "
        "requests naming another host are refused (DNS rebinding)",
    )
    return parser


def _host_port(value: str) -> tuple[str, int]:
    host, colon, port = value.strip().rpartition(":")
    host = host.strip("[]")  # [::1]:8000
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not HOST:PORT; e.g. 127.0.0.1:8000 (this machine only) or 0.0.0.0:8000"
        )
    return host, int(port)


def _mcp(args: argparse.Namespace) -> int:
    """`python -m reader mcp`: the one subcommand that imports the agent layer (`agent_tools`)."""
    if args.allow_host and args.http is None:
        print(
            "error: --allow-host names hosts of the HTTP server: pass --http HOST:PORT too", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        from agent_tools.mcp_server import CacheServer, serve
    except ImportError as e:
        if e.name is None or not e.name.startswith("mcp"):
            raise
        print(
            "error: python -m reader mcp needs the MCP SDK: pip install 'marketcache[mcp]' "
            "(from a clone: pip install -e '.[mcp]')",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # stdout is the protocol's over stdio: the server's log lines go to stderr.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    serve(CacheServer(args.url, wait_s=args.wait, timeout_s=args.timeout), args.http, args.allow_host)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problem = url_problem(resolve_url(args.url))
    if problem is not None:
        print(f"error: {problem}; set --url or REDIS_URL", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "mcp":
        return _mcp(args)
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader of our output went away (`... | head`): not an error of ours. Python's own
        # recipe: point stdout at devnull so that the flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    with SyncReader(args.url, wait_s=args.wait, timeout_s=args.timeout) as reader:
        try:
            code: int = args.run(reader, args)
        except (InvalidSymbol, InvalidRequest) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except (NotCached, UnknownSymbol, NoData) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_MISSING
        except redis.RedisError as e:
            print(
                f"error: cannot read from Redis at {redact_url(reader.url)}: {e}; set REDIS_URL or "
                "--url to the Redis the worker writes to (make run starts one)",
                file=sys.stderr,
            )
            return EXIT_MISSING
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
    return code


if __name__ == "__main__":
    sys.exit(main())
