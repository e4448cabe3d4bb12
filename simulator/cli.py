"""`sigap simulate`: virtual boards from a site config against a broker, optionally in a scenario."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import socket
from pathlib import Path
from typing import Any

from controller.bus import parse_broker_url
from controller.config import ConfigError, load_config
from simulator import clock
from simulator.control import ControlServer, parse_hostport
from simulator.fleet import Fleet
from simulator.live import busy_hall

log = logging.getLogger("sigap.simulator")


def board_passwords(cfg: Any, secrets: str | None) -> dict[str, str]:
    """Each device's `mqtt_password` from a secrets file (`sigap provision` writes one), or none."""
    if not secrets:
        return {}
    from firmware.tools.deploy import load_secrets

    out: dict[str, str] = {}
    for dev in cfg.devices:
        password = load_secrets(Path(secrets), dev.id).get("mqtt_password")
        if isinstance(password, str):
            out[dev.id] = password
    return out


def simulate_main(args: argparse.Namespace) -> int:
    """Run every board of the config on virtual hardware: a scenario to its end, or the busy hall until Ctrl-C."""
    from controller.errors import UserError
    from controller.service import run_until_signal, setup_logging
    from simulator.scenario import ScenarioError, check_against, load_scenario

    setup_logging()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError("invalid config:\n  " + "\n  ".join(e.errors)) from None
    try:
        host, port = parse_broker_url(args.broker)
    except ValueError as e:
        raise UserError(str(e)) from None
    given = getattr(args, "speed", None)
    speed = 1.0 if given is None else float(given)
    if not (math.isfinite(speed) and 0 < speed <= 1000):
        raise UserError(f"--speed must be above 0 and at most 1000, not {speed:g}")
    sc = None
    if getattr(args, "scenario", None):
        try:
            sc = load_scenario(args.scenario)
        except ScenarioError as e:
            raise UserError(f"bad scenario {e.source}:\n  " + "\n  ".join(e.errors)) from None
        problems = check_against(sc, cfg)
        if problems:
            raise UserError(f"scenario {sc.scenario.name} does not fit {args.config}:\n  " + "\n  ".join(problems))

    passwords = board_passwords(cfg, getattr(args, "secrets", None))

    control = getattr(args, "control", None)
    if control:
        try:
            parse_hostport(control)
        except ValueError as e:
            raise UserError(f"--control: {e}") from None

    async def serve_control(fleet: Fleet) -> ControlServer | None:
        if not control:
            return None
        server = ControlServer(fleet, control)
        try:
            await server.start()
        except OSError as e:
            raise UserError(f"--control {control}: {e.strerror or e}") from None
        log.info("control: %s/boards (docs: %s/docs)", server.url, server.url)
        return server

    async def hall() -> None:
        fleet = Fleet(cfg, host, port)
        fleet.set_passwords(passwords)
        fleet.start()
        log.info("%d virtual boards running (%gx)", len(fleet.boards), speed)
        server = None
        try:
            server = await serve_control(fleet)
            await busy_hall(fleet)
        finally:
            if server is not None:
                await server.stop()
            await fleet.stop()

    async def scenario() -> None:
        from simulator.engine import Engine

        assert sc is not None
        engine = Engine(sc, cfg, host, port, board_clock=getattr(args, "board_clock", "host") or "host",
                        controller_url=getattr(args, "controller", None), say=lambda text: print(text, flush=True))
        if engine.board_clock == "host" and speed != 1:
            print(f"note: at {speed:g}x the boards keep the host's clock, so a controller on real time accepts "
                  "their readings; it judges hold times and the offline rule in its own (real) time",
                  flush=True)
        engine.fleet.set_passwords(passwords)
        server = None
        try:
            await engine.start()
            server = await serve_control(engine.fleet)
            await engine.until_end(getattr(args, "minutes", None))
        finally:
            if server is not None:
                await server.stop()
            summary = await engine.stop()  # Ctrl-C too: what happened so far
            print(summary.text(), flush=True)

    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise UserError(f"cannot reach the broker at {args.broker}: {e.strerror or e}") from None
    with contextlib.suppress(KeyboardInterrupt):
        try:
            clock.run(run_until_signal(scenario() if sc is not None else hall()), speed)
        except TimeoutError:
            raise UserError(f"the virtual boards did not all come online through {args.broker}") from None
    return 0
