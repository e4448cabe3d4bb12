"""The `sigap` command: one entry point, a subcommand per job (CONTRACT §5)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from controller.errors import UserError

__all__ = ["UserError", "main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sigap",
        description="Sigap: edge firmware and controller for public-service queues and flood warning.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="run the whole system on one machine")
    d.add_argument("--broker", help="external broker mqtt://host:port (default: embedded)")
    d.add_argument("--listen", default="127.0.0.1:8000", help="web server HOST:PORT")
    d.add_argument("--scenario", help="run this scenario (mpp-pagi, banjir, gangguan, or a file) instead of the "
                   "endless busy hall; its summary is printed at its end")
    d.add_argument("--data-dir", help="where the demo keeps its database (default: a temp dir)")
    d.add_argument("--secrets", metavar="FILE",
                   help="with --broker mqtt://controller:PASSWORD@host:port of a broker secured by `sigap provision`: "
                   "its secrets.toml, for the boards' passwords")
    d.add_argument("--sim-control", default="127.0.0.1:8001", metavar="HOST:PORT",
                   help="the virtual boards' HTTP control (press keys, set levels, cut WiFi); 'off' for none")

    c = sub.add_parser("controller", help="run the controller (production)")
    c.add_argument("--config", required=True, help="site config TOML file")
    c.add_argument("--broker", default=os.environ.get("SIGAP_BROKER") or "mqtt://127.0.0.1:1883",
                   help="broker mqtt://[user:password@]host:port (default: $SIGAP_BROKER, else mqtt://127.0.0.1:1883)")
    c.add_argument("--db", help="sqlite:///PATH (default: a file beside the config) or postgresql://…")
    c.add_argument("--listen", default="127.0.0.1:8000", help="web server HOST:PORT")

    s = sub.add_parser("simulate", help="virtual boards from a site config, running the real firmware")
    s.add_argument("--config", required=True, help="site config TOML file")
    s.add_argument("--broker", required=True, help="broker mqtt://host:port")
    s.add_argument("--scenario", help="scenario name (simulator/scenarios/NAME.toml) or a scenario file")
    s.add_argument("--speed", type=float, default=1.0, help="time factor: the boards and the scenario run X times faster")
    s.add_argument("--minutes", type=float, help="scenario minutes to run (default: the scenario's own)")
    s.add_argument("--controller", help="controller base URL (http://host:port), for the summary")
    s.add_argument("--board-clock", choices=("host", "scenario"), default="host",
                   help="the boards' NTP time: the host's (a controller on real time) or the scenario's")
    s.add_argument("--control", metavar="HOST:PORT", help="serve the boards' HTTP control there (simulator/control.py)")
    s.add_argument("--secrets", metavar="FILE",
                   help="secrets TOML with each board's mqtt_password (what `sigap provision` writes), for a secured broker")

    dp = sub.add_parser("deploy", help="compile and copy firmware and settings onto a board")
    dp.add_argument("--device", required=True)
    dp.add_argument("--config", required=True)
    dp.add_argument("--port", help="serial port or socket://host:port")
    dp.add_argument("--secrets", help="secrets TOML (WiFi, broker credentials); never committed")
    dp.add_argument("--dry-run", action="store_true", help="list what would be copied")
    dp.add_argument("--romfs", action="store_true",
                    help="put the compiled modules into the board's ROMFS partition (MicroPython 1.25+), "
                    "read in place from flash: less heap (firmware/README.md)")

    pv = sub.add_parser(
        "provision",
        help="per-device MQTT credentials and broker ACL files",
        description="Write the broker's passwd, acl and mosquitto.conf, the boards' secrets.toml and "
        "the controller's controller.env into DIR. Re-running keeps existing passwords.",
    )
    pv.add_argument("--config", required=True, help="site config TOML file")
    pv.add_argument("--out", required=True, metavar="DIR", help="output directory (created with mode 0700)")
    pv.add_argument("--rotate", action="append", metavar="ID|all",
                    help="issue a new password to a device, to `controller`, or to all (repeatable)")
    pv.add_argument("--broker", metavar="URL", help="the broker as the controller reaches it, mqtt://host:port "
                    "(default: as before, else mqtt://127.0.0.1:1883)")
    pv.add_argument("--broker-dir", default="/etc/mosquitto/sigap", metavar="PATH",
                    help="where passwd and acl will live on the broker host (default: %(default)s)")
    pv.add_argument("--show", action="store_true", help="also print every password")

    ck = sub.add_parser("check", help="validate a site config file")
    ck.add_argument("file")

    au = sub.add_parser("audit", help="audit log tools")
    ausub = au.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    av = ausub.add_parser("verify", help="check the audit log's hash chain")
    av.add_argument("--config")
    av.add_argument("--db")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `sigap` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as e:
        print(f"sigap {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        from controller.config import check_main

        return check_main(args.file)
    if args.command == "demo":
        from controller.demo import demo_main

        return demo_main(args)
    if args.command == "controller":
        from controller.service import controller_main

        return controller_main(args)
    if args.command == "simulate":
        from simulator.cli import simulate_main

        return simulate_main(args)
    if args.command == "deploy":
        from firmware.tools.deploy import deploy_main

        return deploy_main(args)
    if args.command == "provision":
        from controller.provision import provision_main

        return provision_main(args)
    if args.command == "audit":
        return _audit_verify(args)
    raise UserError(f"'{args.command}' is not available yet in this version")


def _audit_verify(args: argparse.Namespace) -> int:
    import pathlib

    from controller.store.db import default_db_url, verify_main

    if args.db:
        url = args.db
    elif args.config:
        url = default_db_url(args.config)
    else:
        raise UserError("give --db URL or --config FILE (the database is beside the config)")
    if url.startswith("sqlite:///") and not pathlib.Path(url[len("sqlite:///"):]).exists():
        raise UserError(f"no database at {url}")
    return verify_main(url)


if __name__ == "__main__":
    sys.exit(main())
