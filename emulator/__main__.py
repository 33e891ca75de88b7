"""`python -m emulator --port 8080`: serve the Tradier/Polygon emulator on localhost."""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from emulator.app import create_app
from emulator.state import POLYGON_PLANS, EmulatorOptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated market (default 0)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API answer")
    parser.add_argument(
        "--rate-per-min", type=int, default=120, help="Tradier allowance per token (default 120)"
    )
    parser.add_argument(
        "--api-key", action="append", default=[], help="accepted token (repeatable; default: any non-empty)"
    )
    parser.add_argument(
        "--polygon-rate-per-min", type=int, default=0, help="Polygon allowance per key (default 0: unlimited)"
    )
    parser.add_argument(
        "--polygon-plan",
        choices=POLYGON_PLANS,
        default="advanced",
        help="Polygon plan; basic refuses the snapshot endpoints (default advanced)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    options = EmulatorOptions(
        seed=args.seed,
        latency_ms=args.latency_ms,
        rate_per_min=args.rate_per_min,
        api_keys=frozenset(args.api_key),
        polygon_rate_per_min=args.polygon_rate_per_min,
        polygon_plan=args.polygon_plan,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.INFO if args.access_log else logging.WARNING)
    log = logging.getLogger("emulator")
    web.run_app(
        create_app(options),
        host=args.host,
        port=args.port,
        print=lambda _: log.info("listening on http://%s:%d seed=%d", args.host, args.port, args.seed),
    )


if __name__ == "__main__":
    main()
