"""Render the wiring tables of `hardware/*.md` from the pin maps in `hardware/pins/`.

The tables are never edited by hand: change the JSON, then

    python -m hardware.tools.render_wiring --write     # rewrite the tables in the .md files
    python -m hardware.tools.render_wiring --check     # exit 1 if any table is stale
    python -m hardware.tools.render_wiring kiosk       # print one table

In a .md file a table sits between `<!-- BEGIN wiring:<profile> -->` and
`<!-- END wiring:<profile> -->`; tests/unit/test_hardware.py checks that what is
there equals `render(profile)`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hardware.pinmap import (
    INPUT_ONLY,
    PROFILES,
    STRAPPING_PINS,
    bus_pin_names,
    load_pinmap,
)

HARDWARE_DIR = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"(<!-- BEGIN wiring:(?P<profile>[a-z-]+) -->\n)(?P<body>.*?)(<!-- END wiring:(?P=profile) -->)",
    re.DOTALL,
)

_MODE_TEXT = {
    "in_pullup": "input, internal pull-up",
    "in": "input",
    "out": "output",
    "adc": "ADC1, 11 dB",
}
_BUS_TEXT = {"uart": "UART", "i2c": "I2C", "spi": "SPI", "tm1637": "TM1637", "onewire": "1-Wire"}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _use(data: Mapping[str, Any], name: str) -> str:
    """What the ESP32 does with pin `name`, with its caveats."""
    gpio = data["pins"][name]
    on_bus = bus_pin_names(data).get(name)
    if on_bus is None:
        text = _MODE_TEXT[data["modes"][name]]
    else:
        bus, key = on_bus
        spec = data["buses"][bus]
        text = f"{_BUS_TEXT[spec['type']]}{spec.get('id', '')} {key.upper()}"
        if spec["type"] == "tm1637":
            text += " (open-drain)"
    flags = []
    if gpio in STRAPPING_PINS:
        flags.append("strapping pin")
    if gpio in INPUT_ONLY:
        flags.append("input-only pin")
    if name in data.get("hold", []):
        flags.append("held in deep sleep")
    if name in data.get("active_low", []):
        flags.append("active low")
    return "; ".join([text, *flags])


def _bus_line(bus: str, spec: Mapping[str, Any]) -> str:
    kind = spec["type"]
    head = f"- `{bus}`" + (" (optional)" if spec.get("optional") else "") + ": "
    if kind == "uart":
        what = f"UART{spec['id']}, {spec['baud']} baud 8N1, TX {spec['tx']}, RX {spec['rx']}"
    elif kind == "i2c":
        what = f"I2C{spec['id']}, {spec.get('freq', 400000) // 1000} kHz, SDA {spec['sda']}, SCL {spec['scl']}"
        if "addr" in spec:
            what += f", address 0x{spec['addr']:02X}"
    elif kind == "spi":
        what = (
            f"SPI{spec['id']}, {spec.get('baud', 1000000) / 1e6:g} MHz, SCK {spec['sck']},"
            f" MOSI {spec['mosi']}, MISO {spec['miso']}, CS {spec['cs']}"
        )
    elif kind == "tm1637":
        what = f"TM1637 two-wire, CLK {spec['clk']}, DIO {spec['dio']}"
    else:
        what = f"1-Wire, DQ {spec['data']}"
    return head + what + (f" — {spec['part']}" if spec.get("part") else "")


def render(profile: str) -> str:
    """The wiring block of one profile, as it appears in the .md files."""
    data = load_pinmap(profile)
    wiring = data["wiring"]
    lines = [
        f"<!-- generated from hardware/pins/{profile}.json by"
        " `python -m hardware.tools.render_wiring --write`: edit the JSON, not this block -->",
        f"Profile `{profile}` on `{data['board']}`.",
        "",
        "| GPIO | Signal | ESP32 side | Part | Part pin | Notes |",
        "|---:|---|---|---|---|---|",
    ]
    for name, gpio in sorted(data["pins"].items(), key=lambda kv: (kv[1], kv[0])):
        w = wiring[name]
        lines.append(
            f"| {gpio} | `{name}` | {_cell(_use(data, name))} | {_cell(w['part'])}"
            f" | {_cell(w['pin'])} | {_cell(w.get('note', ''))} |"
        )
    if data.get("buses"):
        lines += ["", "Buses:", ""]
        lines += [_bus_line(bus, spec) for bus, spec in data["buses"].items()]
    if data.get("adc"):
        lines += ["", "ADC scaling:", ""]
        for name, spec in data["adc"].items():
            note = f" ({spec['note']})" if spec.get("note") else ""
            lines.append(f"- `{name}`: battery V = pin V x {spec['ratio']}{note}")
    if data.get("power"):
        lines += ["", "Power:", "", "| From | To | Notes |", "|---|---|---|"]
        for row in data["power"]:
            lines.append(
                f"| {_cell(row['from'])} | {_cell(row['to'])} | {_cell(row.get('note', ''))} |"
            )
    if data.get("notes"):
        lines += ["", "Notes:", ""]
        lines += [f"- {key}: {text}" for key, text in data["notes"].items()]
    return "\n".join(lines) + "\n"


def blocks(text: str) -> dict[str, str]:
    """Profile -> the wiring block found between the markers of a .md text."""
    return {m["profile"]: m["body"] for m in BLOCK.finditer(text)}


def rewrite(text: str) -> str:
    """`text` with every wiring block replaced by a fresh rendering."""
    return BLOCK.sub(lambda m: m[1] + render(m["profile"]) + m[4], text)


def md_files(root: Path = HARDWARE_DIR) -> list[Path]:
    """The .md files of hardware/ that hold at least one wiring block."""
    return [p for p in sorted(root.glob("*.md")) if blocks(p.read_text(encoding="utf-8"))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profiles", nargs="*", help=f"print these ({', '.join(PROFILES)})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the tables in hardware/*.md")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if a table in hardware/*.md is stale"
    )
    args = parser.parse_args(argv)
    unknown = [p for p in args.profiles if p not in PROFILES]
    if unknown:
        parser.error(f"no profile {unknown[0]!r} (one of {', '.join(PROFILES)})")
    if args.write or args.check:
        stale = []
        for path in md_files():
            old = path.read_text(encoding="utf-8")
            new = rewrite(old)
            if new != old:
                stale.append(path.name)
                if args.write:
                    path.write_text(new, encoding="utf-8")
        verb = "rewrote" if args.write else "stale"
        if stale:
            print(f"{verb}: {', '.join(stale)}")
        return 1 if stale and args.check else 0
    for profile in args.profiles or PROFILES:
        print(render(profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
