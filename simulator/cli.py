"""`sigap simulate`: virtual boards from a site config against a broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from controller.bus import parse_broker_url
from controller.config import ConfigError, load_config
from simulator.control import ControlServer, parse_hostport
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

    control = getattr(args, "control", None)
    if control:
        try:
            parse_hostport(control)
        except ValueError as e:
            raise UserError(f"--control: {e}") from None

    async def main() -> None:
        fleet = Fleet(cfg, host, port)
        fleet.start()
        logging.getLogger("sigap.simulator").info("%d virtual boards running", len(fleet.boards))
        server = ControlServer(fleet, control) if control else None
        try:
            if server is not None:
                try:
                    await server.start()
                except OSError as e:
                    raise UserError(f"--control {control}: {e.strerror or e}") from None
                logging.getLogger("sigap.simulator").info("control: %s/boards (docs: %s/docs)", server.url, server.url)
            await busy_hall(fleet)
        finally:
            if server is not None:
                await server.stop()
            await fleet.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_until_signal(main()))
    return 0
