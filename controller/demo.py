"""`sigap demo`: broker, controller, simulated boards and web UI on one machine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import socket
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from controller.bus import parse_broker_url, redact_broker_url
from controller.config import DEMO_CONFIG, load_config
from controller.service import Controller, check_listen, parse_listen, run_until_signal, utcnow
from controller.store import open_store

log = logging.getLogger("sigap.demo")


def demo_clock(tz: ZoneInfo, real: Callable[[], datetime] = utcnow) -> Callable[[], datetime]:
    """Scenario time: starts at 08:30 local on the next weekday and runs at real speed,
    so the demo's services are open whenever it is started."""
    start_real = real()
    local = start_real.astimezone(tz)
    day = local.date()
    if local.time() >= time(8, 30) or day.isoweekday() > 5:
        day += timedelta(days=1)
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    start_demo = datetime.combine(day, time(8, 30), tz).astimezone(UTC)
    offset = start_demo - start_real
    return lambda: real() + offset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _embedded_broker(port: int) -> Any:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    return broker


async def _sim_control(fleet: Any, listen: str | None) -> Any:
    """The virtual boards' HTTP control on listen ('off': none); a taken port only costs a warning."""
    from simulator.control import ControlServer

    if not listen or listen.lower() == "off":
        return None
    server = ControlServer(fleet, listen)
    try:
        await server.start()
    except OSError as e:
        log.warning("simulator control not started on %s: %s (use --sim-control HOST:PORT)", listen, e.strerror or e)
        return None
    return server


async def _scenario_to_its_end(engine: Any) -> None:
    """Run the scenario for its minutes, print its summary; the web UI stays up until Ctrl-C."""
    await engine.until_end()
    summary = await engine.stop()
    print(summary.text(), flush=True)
    print("The scenario has ended (its boards are off); the web UI stays up. Press Ctrl-C to stop.", flush=True)


async def run_demo(args: argparse.Namespace, data_dir: pathlib.Path) -> None:
    """Everything in one event loop; returns when cancelled (Ctrl-C / SIGTERM)."""
    from simulator.fleet import Fleet
    from simulator.live import busy_hall

    cfg = load_config(DEMO_CONFIG)
    broker = None
    if args.broker:
        host, port = parse_broker_url(args.broker)
        broker_url = args.broker
    else:
        host, port = "127.0.0.1", _free_port()
        broker = await _embedded_broker(port)
        broker_url = f"mqtt://{host}:{port}"
    store = open_store(f"sqlite:///{data_dir / 'sigap-demo.db'}")
    scenario = getattr(args, "scenario_loaded", None)
    engine = None
    if scenario is not None:  # a scenario file: its own clock, citizens, staff, river and faults
        from simulator.engine import Engine

        engine = Engine(scenario, cfg, host, port, say=lambda text: print(text, flush=True))
        clock: Callable[[], datetime] = engine.clock
        fleet = engine.fleet
    else:
        clock = demo_clock(ZoneInfo(cfg.sites[0].timezone))
        # The boards' clocks follow the demo's scenario time, as NTP would follow real time.
        fleet = Fleet(cfg, host, port, wall_clock=lambda: clock().timestamp())
    if getattr(args, "secrets", None):  # an external broker secured by `sigap provision`
        from simulator.cli import board_passwords

        fleet.set_passwords(board_passwords(cfg, args.secrets))
    ctrl = Controller(cfg, store, broker_url, clock=clock)
    ready = asyncio.Event()
    ctrl_task = asyncio.create_task(ctrl.run(args.listen, ready=ready))
    sim_task = None
    control = None
    try:
        await asyncio.wait_for(ready.wait(), 30)
        if engine is not None:
            await engine.start()
            sim_task = asyncio.create_task(_scenario_to_its_end(engine))
        else:
            fleet.start()
            sim_task = asyncio.create_task(busy_hall(fleet))
        control = await _sim_control(fleet, getattr(args, "sim_control", None))
        print(f"Sigap demo is running ({len(fleet.boards)} virtual boards of {cfg.sites[0].name}).")
        print(f"  web UI:   http://{args.listen}/")
        print(f"  API docs: http://{args.listen}/api/docs")
        if ctrl.auth.generated_password:
            print(f"  login:    admin / {ctrl.auth.generated_password}")
        else:
            print("  login:    admin (password as printed on this data dir's first run, or $SIGAP_ADMIN_PASSWORD)")
        print(f"  broker:   {redact_broker_url(broker_url)} ({'embedded' if broker else 'external'})")
        if control is not None:
            print(f"  boards:   {control.url}/boards (simulator control: press keys, set levels, cut WiFi; {control.url}/docs)")
        print(f"  data:     {data_dir}")
        print(f"  demo time starts at {clock().astimezone(ZoneInfo(cfg.sites[0].timezone)):%A %d %B %Y %H:%M} (services open)")
        print("Press Ctrl-C to stop.", flush=True)
        await ctrl_task
    finally:
        scenario_ended = sim_task is not None and sim_task.done() and not sim_task.cancelled()
        if sim_task:
            sim_task.cancel()
            await asyncio.gather(sim_task, return_exceptions=True)
        if control is not None:
            await control.stop()
        log.info("stopping the virtual boards")
        if engine is not None and not scenario_ended:
            print((await engine.stop()).text(), flush=True)  # Ctrl-C before the end: what happened so far
        await fleet.stop()
        log.info("stopping the controller")
        ctrl_task.cancel()
        await asyncio.gather(ctrl_task, return_exceptions=True)
        if broker is not None:
            log.info("stopping the embedded broker")
            await broker.shutdown()
        print("Sigap demo stopped.", flush=True)


def demo_main(args: argparse.Namespace) -> int:
    """`sigap demo`"""
    from controller.service import setup_logging

    setup_logging()
    logging.getLogger("amqtt").setLevel(logging.ERROR)
    logging.getLogger("transitions").setLevel(logging.ERROR)
    parse_listen(args.listen)
    sim_control = getattr(args, "sim_control", None)
    if sim_control and sim_control.lower() != "off":
        from controller.errors import UserError
        from simulator.control import parse_hostport

        try:
            parse_hostport(sim_control)
        except ValueError as e:
            raise UserError(f"--sim-control: {e}") from None
    if args.broker:
        from controller.errors import UserError

        try:
            parse_broker_url(args.broker)
        except ValueError as e:
            raise UserError(str(e)) from None
    if getattr(args, "scenario", None):
        from controller.errors import UserError
        from simulator.scenario import ScenarioError, check_against, load_scenario

        try:
            sc = load_scenario(args.scenario)
        except ScenarioError as e:
            raise UserError(f"bad scenario {e.source}:\n  " + "\n  ".join(e.errors)) from None
        problems = check_against(sc, load_config(DEMO_CONFIG))
        if problems:
            raise UserError(f"scenario {sc.scenario.name} does not fit the demo site:\n  " + "\n  ".join(problems))
        args.scenario_loaded = sc
    check_listen(args.listen)
    if args.data_dir:
        data_dir = pathlib.Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run_until_signal(run_demo(args, data_dir)))
    else:
        with tempfile.TemporaryDirectory(prefix="sigap-demo-") as tmp:
            asyncio.run(run_until_signal(run_demo(args, pathlib.Path(tmp))))
    return 0
