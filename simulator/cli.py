"""`sigap simulate`: virtual boards from a site config against a broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from controller.bus import parse_broker_url
from controller.config import ConfigError, load_config
from simulator.fleet import Fleet
from simulator.live import busy_hall


def simulate_main(args: argparse.Namespace) -> int:
    """Run every board of the config on virtual hardware until Ctrl-C."""
    from controller.errors import UserError
    from controller.service import run_until_signal, setup_logging

    setup_logging()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError("invalid config:\n  " + "\n  ".join(e.errors)) from None
    try:
        host, port = parse_broker_url(args.broker)
    except ValueError as e:
        raise UserError(str(e)) from None

    async def main() -> None:
        fleet = Fleet(cfg, host, port)
        fleet.start()
        logging.getLogger("sigap.simulator").info("%d virtual boards running", len(fleet.boards))
        try:
            await busy_hall(fleet)
        finally:
            await fleet.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_signal(main()))
    return 0
