"""Pin maps of the board profiles, kept as data in `hardware/pins/<profile>.json`.

One source of truth for which ESP32 GPIO goes where: the deploy tool and the
settings generator read these files (`settings_pins`) and write the result
into the board's settings.json; the wiring tables in `hardware/*.md` are
rendered from the same files (`hardware/tools/render_wiring.py`).

A pin map holds:

- `board`, `role`, `profile`: which board it is drawn for, the device role;
- `pins`: every GPIO in use, name -> number. Bus pins are named
  `<bus>_<key>` (`printer_tx`) and repeat the number given in `buses`;
- `modes`: how each pin that is not on a bus is used: `in_pullup` (a button
  to GND, internal pull-up), `in` (driven by a part or an external pull),
  `out`, `adc` (ADC1 with 11 dB attenuation);
- `buses`: `uart`, `i2c`, `spi`, `tm1637` (two-wire, bit-banged), `onewire`,
  each with its pins and parameters; `optional: true` when the part may be
  absent (the firmware must then tolerate its absence);
- `hold`: outputs that must keep their level through deep sleep (RTC GPIOs);
- `active_low`: outputs that switch their part on at 0 (default: on at 1);
- `adc`: per `adc` pin, the divider `ratio` (battery V / pin V) and `atten_db`;
- `strapping`: for each strapping pin in use, why it is safe there;
- `wiring`: for each pin, the part and part pin it goes to, with a note;
- `power`: the supply wiring, for the tables; `notes`: anything else.

CPython only (the engineer's PC); the board never imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PINS_DIR = Path(__file__).resolve().parent / "pins"
"""Where the profiles' JSON files live."""

PROFILES = ("kiosk", "counter", "display-counter", "display-hall", "water")
"""Every board profile, one JSON file each."""

ROLES = ("kiosk", "counter", "display", "water")

# ESP32 (ESP32-D0WD in the WROOM-32 module) GPIO facts, from the ESP32
# datasheet §2.2 "Pin Description" and §2.4 "Strapping Pins", and the
# ESP32-WROOM-32 datasheet §3 "Pin Definitions".
GPIOS = frozenset([*range(0, 20), 21, 22, 23, 25, 26, 27, *range(32, 40)])
"""GPIO numbers that exist on the ESP32 (20, 24 and 28-31 do not)."""
FLASH_PINS = frozenset(range(6, 12))
"""GPIO 6-11 drive the module's SPI flash: using one crashes the board."""
CONSOLE_PINS = frozenset({1, 3})
"""UART0 TX/RX: the USB serial console that mpremote and esptool use."""
STRAPPING_PINS = frozenset({0, 2, 5, 12, 15})
"""Sampled at reset: a level held on them at boot changes how the chip starts.
GPIO0 low = download mode; GPIO12 high = 1.8 V flash (the board will not boot);
GPIO2 must be low or floating to flash; GPIO5/15 set SDIO timing and boot log."""
INPUT_ONLY = frozenset(range(34, 40))
"""GPIO 34-39: inputs only, with no internal pull-up or pull-down."""
ADC1_PINS = frozenset(range(32, 40))
"""ADC1 channels. ADC2 (the other ADC pins) cannot be read while WiFi is on."""
RTC_GPIOS = frozenset({0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39})
"""GPIOs of the RTC domain: the only ones that can hold a level in deep sleep."""

MODES = ("in_pullup", "in", "out", "adc")
"""How a pin outside a bus is used."""

BUS_PINS: dict[str, dict[str, str]] = {
    "uart": {"tx": "out", "rx": "in"},
    "i2c": {"sda": "io", "scl": "io"},
    "spi": {"sck": "out", "mosi": "out", "miso": "in", "cs": "out"},
    "tm1637": {"clk": "out", "dio": "io"},
    "onewire": {"data": "io"},
}
"""Per bus type: its pin keys and the direction each needs."""

BUS_IDS: dict[str, frozenset[int]] = {
    "uart": frozenset({1, 2}),  # UART0 is the console
    "i2c": frozenset({0, 1}),
    "spi": frozenset({1, 2}),  # SPI(1) = HSPI, SPI(2) = VSPI; SPI0 holds the flash
}
DOC_KEYS = frozenset({"part", "note"})
"""Bus keys that document the part and are not sent to the board."""


class PinmapError(ValueError):
    """A pin map that does not exist, does not parse or does not validate."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.load keeps the last of two equal keys silently: a pin listed
    # twice would vanish from the map instead of failing the check.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PinmapError(f"key {key!r} appears twice")
        out[key] = value
    return out


def load_pinmap(profile: str) -> dict[str, Any]:
    """The pin map of `profile` (one of PROFILES), validated; PinmapError if bad."""
    if profile not in PROFILES:
        raise PinmapError(f"no board profile {profile!r} (one of {', '.join(PROFILES)})")
    path = PINS_DIR / f"{profile}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (OSError, json.JSONDecodeError, PinmapError) as e:
        raise PinmapError(f"{path.name}: {e}") from e
    problems = validate_pinmap(data)
    if isinstance(data, Mapping) and data.get("profile") != profile:
        problems.append(f"'profile' must be {profile!r}, the file's name")
    if problems:
        raise PinmapError(f"{path.name}: " + "; ".join(problems))
    return data


def _field(device: Any, name: str, default: Any = None) -> Any:
    if isinstance(device, Mapping):
        return device.get(name, default)
    return getattr(device, name, default)


def profile_for(device: Any) -> str:
    """The board profile of a device of the site config (model or dict): role + hall flag."""
    role = _field(device, "role")
    if role == "display":
        return "display-hall" if _field(device, "hall", False) else "display-counter"
    if role in ROLES:
        return str(role)
    raise PinmapError(f"no board profile for role {role!r} (one of {', '.join(ROLES)})")


def bus_pin_names(data: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Pin name -> (bus, key) for every pin a bus of the map uses."""
    out: dict[str, tuple[str, str]] = {}
    for bus, spec in (data.get("buses") or {}).items():
        if isinstance(spec, Mapping):
            for key in BUS_PINS.get(spec.get("type", ""), {}):
                out[f"{bus}_{key}"] = (bus, key)
    return out


def pin_direction(data: Mapping[str, Any], name: str) -> str:
    """How pin `name` is driven: `in`, `out`, `io` (both), or a mode (`in_pullup`, `adc`)."""
    on_bus = bus_pin_names(data).get(name)
    if on_bus is not None:
        bus, key = on_bus
        return BUS_PINS[data["buses"][bus]["type"]][key]
    return str((data.get("modes") or {}).get(name, ""))


def validate_pinmap(data: Any) -> list[str]:
    """Every problem of a pin map, one sentence each (empty: the map is sound)."""
    if not isinstance(data, Mapping):
        return ["a pin map is a JSON object"]
    problems: list[str] = []
    for key in ("board", "role"):
        if not isinstance(data.get(key), str) or not data.get(key):
            problems.append(f"missing {key!r}")
    if data.get("role") not in (*ROLES, None):
        problems.append(f"role {data.get('role')!r} is not one of {', '.join(ROLES)}")
    pins = data.get("pins")
    if not isinstance(pins, Mapping) or not pins:
        return problems + ["missing 'pins': name -> GPIO number"]
    for section in ("modes", "buses", "wiring", "strapping"):
        if not isinstance(data.get(section, {}), Mapping):
            problems.append(f"{section!r} must be an object")
    if problems:
        return problems
    modes: Mapping[str, Any] = data.get("modes", {})
    buses: Mapping[str, Any] = data.get("buses", {})
    wiring: Mapping[str, Any] = data.get("wiring", {})
    strapping: Mapping[str, Any] = data.get("strapping", {})

    # 1. Each number is a usable GPIO, used once.
    by_gpio: dict[int, str] = {}
    for name, gpio in pins.items():
        if not isinstance(gpio, int) or isinstance(gpio, bool):
            problems.append(f"{name}: {gpio!r} is not a GPIO number")
            continue
        if gpio in FLASH_PINS:
            problems.append(f"{name}: GPIO{gpio} drives the SPI flash (GPIO 6-11 are never usable)")
        elif gpio in CONSOLE_PINS:
            problems.append(
                f"{name}: GPIO{gpio} is the USB serial console (UART0), needed to deploy"
            )
        elif gpio not in GPIOS:
            problems.append(f"{name}: the ESP32 has no GPIO{gpio}")
        if gpio in by_gpio:
            problems.append(f"{name}: GPIO{gpio} is already used by {by_gpio[gpio]}")
        else:
            by_gpio[gpio] = name

    # 2. Buses: known type, all their pins, numbers equal to the `pins` entries.
    on_bus = bus_pin_names(data)
    for bus, spec in buses.items():
        if not isinstance(spec, Mapping) or spec.get("type") not in BUS_PINS:
            problems.append(f"bus {bus}: 'type' must be one of {', '.join(BUS_PINS)}")
            continue
        kind = spec["type"]
        for key in BUS_PINS[kind]:
            name = f"{bus}_{key}"
            if key not in spec:
                problems.append(f"bus {bus}: missing {key!r}")
            elif name not in pins:
                problems.append(f"bus {bus}: {key} is not listed in 'pins' as {name!r}")
            elif pins[name] != spec[key]:
                problems.append(
                    f"bus {bus}: {key} is GPIO{spec[key]} but pins.{name} is GPIO{pins[name]}"
                )
        if kind in BUS_IDS and spec.get("id") not in BUS_IDS[kind]:
            ids = ", ".join(str(i) for i in sorted(BUS_IDS[kind]))
            problems.append(f"bus {bus}: {kind} 'id' must be one of {ids}")
        if kind == "uart" and not isinstance(spec.get("baud"), int):
            problems.append(f"bus {bus}: missing 'baud'")

    # 3. Every other pin has a mode; no mode for an unknown pin.
    for name in pins:
        if name in on_bus:
            if name in modes:
                problems.append(f"{name}: a bus pin takes its mode from the bus; drop modes.{name}")
        elif modes.get(name) not in MODES:
            problems.append(f"{name}: modes.{name} must be one of {', '.join(MODES)}")
    for name in modes:
        if name not in pins:
            problems.append(f"modes.{name}: no such pin")

    # 4. What each GPIO can do.
    for name, gpio in pins.items():
        if not isinstance(gpio, int) or gpio not in GPIOS:
            continue
        how = pin_direction(data, name)
        if gpio in INPUT_ONLY:
            if how in ("out", "io"):
                problems.append(f"{name}: GPIO{gpio} is input-only and cannot drive an output")
            elif how == "in_pullup":
                problems.append(
                    f"{name}: GPIO{gpio} has no internal pull-up; fit an external one and use mode 'in'"
                )
        if how == "adc" and gpio not in ADC1_PINS:
            problems.append(
                f"{name}: GPIO{gpio} is on ADC2, unreadable while WiFi is on (use 32-39)"
            )
        if gpio in STRAPPING_PINS:
            if how != "out":
                problems.append(
                    f"{name}: GPIO{gpio} is a strapping pin; an input held at boot changes how"
                    " the chip starts (use it only for an output)"
                )
            elif not strapping.get(name):
                problems.append(
                    f"{name}: GPIO{gpio} is a strapping pin; say in strapping.{name} why it is safe"
                )
    for name in strapping:
        if pins.get(name) not in STRAPPING_PINS:
            problems.append(f"strapping.{name}: not a pin on a strapping GPIO")

    # 5. Deep-sleep holds need RTC outputs.
    for name in data.get("hold", []):
        if name not in pins:
            problems.append(f"hold: no pin {name!r}")
        elif pins[name] not in RTC_GPIOS or pin_direction(data, name) != "out":
            problems.append(
                f"hold: {name} must be an output on an RTC GPIO to keep its level asleep"
            )

    # 6. Output polarity and ADC scaling name the right kind of pin.
    for name in data.get("active_low", []):
        if pin_direction(data, name) != "out":
            problems.append(f"active_low: {name!r} is not an output pin")
    for name, spec in (data.get("adc") or {}).items():
        if pin_direction(data, name) != "adc":
            problems.append(f"adc.{name}: not a pin in mode 'adc'")
        elif not isinstance(spec, Mapping) or not isinstance(spec.get("ratio"), int | float):
            problems.append(f"adc.{name}: needs a numeric 'ratio' (battery V / pin V)")
    for name in pins:
        if modes.get(name) == "adc" and name not in (data.get("adc") or {}):
            problems.append(f"{name}: an ADC pin needs adc.{name} with its divider 'ratio'")

    # 7. The wiring table covers every pin, and nothing else.
    for name in pins:
        entry = wiring.get(name)
        if not isinstance(entry, Mapping) or not entry.get("part") or not entry.get("pin"):
            problems.append(f"{name}: wiring.{name} needs 'part' and 'pin'")
    for name in wiring:
        if name not in pins:
            problems.append(f"wiring.{name}: no such pin")
    return problems


def settings_pins(device: Any, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pin part of one device's settings.json (`board`, `pins`, `pin_modes`, `buses`, ...).

    `pins` holds only pins outside the buses, under the names the firmware asks
    for (`board.pin(name)`): a kiosk's positional buttons `svc1`, `svc2`, ...
    become `svc_<code>` in the order of its `services`, unused ones are left out,
    and `prio` only when it has a priority button. Buses lose their doc keys.
    """
    if data is None:
        data = load_pinmap(profile_for(device))
    on_bus = bus_pin_names(data)
    modes = data.get("modes", {})
    # Map name -> name on the board; None leaves the pin out.
    rename: dict[str, str | None] = {n: n for n in data["pins"] if n not in on_bus}
    if _field(device, "role") == "kiosk":
        services = list(_field(device, "services", []) or [])
        slots = sorted((n for n in rename if n.startswith("svc")), key=lambda n: int(n[3:]))
        if len(services) > len(slots):
            raise PinmapError(
                f"{_field(device, 'id', 'kiosk')}: {len(services)} services but the kiosk"
                f" board has {len(slots)} service buttons"
            )
        for i, slot in enumerate(slots):
            rename[slot] = "svc_" + services[i] if i < len(services) else None
        if not _field(device, "prio_button", True):
            rename["prio"] = None
    kept = {old: new for old, new in rename.items() if new is not None}
    return {
        "board": data["board"],
        "pins": {new: data["pins"][old] for old, new in kept.items()},
        "pin_modes": {new: modes[old] for old, new in kept.items()},
        "buses": {
            bus: {k: v for k, v in spec.items() if k not in DOC_KEYS}
            for bus, spec in data.get("buses", {}).items()
        },
        "hold": list(data.get("hold", [])),
        "active_low": list(data.get("active_low", [])),
        "adc": {
            name: {k: v for k, v in spec.items() if k not in DOC_KEYS}
            for name, spec in (data.get("adc") or {}).items()
        },
    }
