"""firmware/board/esp32.py under CPython with a fake `machine`: each role's
parts are built on the pins of hardware/pins/*.json (through the settings
that firmware/tools/settings.py writes from them), deep sleep holds the
siren, and a full flash does not stop a reboot.

The fake machine records every Pin/UART/ADC/I2C/SPI construction with its
arguments; nothing here needs a board.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from hardware.pinmap import load_pinmap, settings_pins

pytestmark = pytest.mark.timeout(30)


class FakeMachine(types.ModuleType):
    """machine, as far as Esp32Board uses it; `made` lists (kind, args, kwargs)."""

    IN, OUT, OPEN_DRAIN, PULL_UP = 1, 3, 7, 2
    WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 3, 4, 5

    def __init__(self) -> None:
        super().__init__("machine")
        self.made: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.slept: list[int] = []
        self.resets = 0
        self.held: list[int] = []
        self.named: set[int] = set()  # every GPIO a Pin was made for, bare Pin(n) included
        m = self

        class Pin:
            IN, OUT, OPEN_DRAIN, PULL_UP = m.IN, m.OUT, m.OPEN_DRAIN, m.PULL_UP

            def __init__(self, num: int, *args: Any, **kw: Any) -> None:
                self.num = num
                m.named.add(num)
                self.v = kw.get("value", 0)
                if args or kw:  # Pin(n) alone only names a pin for a bus or ADC
                    m.made.append(("Pin", (num, *args), kw))

            def value(self, v: int | None = None) -> int:
                if v is not None:
                    self.v = v
                return int(self.v)

            def init(self, **kw: Any) -> None:
                if kw.get("hold"):
                    m.held.append(self.num)

        class UART:
            def __init__(self, *args: Any, **kw: Any) -> None:
                m.made.append(("UART", args, kw))

            def write(self, buf: Any) -> int:
                return len(buf)

            def read(self) -> bytes | None:
                return None

        class ADC:
            ATTN_11DB = 3

            def __init__(self, pin: Any, **kw: Any) -> None:
                m.made.append(("ADC", (pin.num,), kw))

            def read_uv(self) -> int:
                return 500_000  # 0.5 V at the pin

        class I2C:
            def __init__(self, bus: int, **kw: Any) -> None:
                m.made.append(("I2C", (bus,), {k: getattr(v, "num", v) for k, v in kw.items()}))

            def writeto(self, addr: int, buf: Any) -> None:
                pass

        class SPI:
            def __init__(self, bus: int, **kw: Any) -> None:
                m.made.append(("SPI", (bus,), {k: getattr(v, "num", v) for k, v in kw.items()}))

            def write(self, buf: Any) -> None:
                pass

        self.Pin, self.UART, self.ADC, self.I2C, self.SPI = Pin, UART, ADC, I2C, SPI

    def deepsleep(self, ms: int) -> None:
        self.slept.append(ms)

    def reset(self) -> None:
        self.resets += 1

    def reset_cause(self) -> int:
        return self.DEEPSLEEP_RESET

    def time_pulse_us(self, pin: Any, level: int, timeout_us: int) -> int:
        return -2

    def pins(self, kind: str) -> set[int]:
        """GPIO numbers a construction of this kind used (Pin: its number; buses: their pins)."""
        out: set[int] = set()
        for k, args, kw in self.made:
            if k != kind:
                continue
            if kind in ("Pin", "ADC"):
                out.add(args[0])
            else:
                out.update(v for key, v in kw.items() if key in ("tx", "rx", "sda", "scl", "sck", "mosi", "miso"))
        return out


class FakeWLAN:
    def __init__(self, iface: int) -> None:
        pass

    def isconnected(self) -> bool:
        return False


class FakeOneWire:
    def __init__(self, pin: Any) -> None:
        self.pin = pin


class FakeDS18X20:
    def __init__(self, bus: FakeOneWire) -> None:
        self.bus = bus


@pytest.fixture
def esp32(monkeypatch, tmp_path) -> Iterator[tuple[Any, FakeMachine]]:
    """The esp32 board module imported against the fakes; its flash in tmp_path."""
    machine = FakeMachine()
    network = types.ModuleType("network")
    network.STA_IF = 0  # type: ignore[attr-defined]
    network.WLAN = FakeWLAN  # type: ignore[attr-defined]
    onewire = types.ModuleType("onewire")
    onewire.OneWire = FakeOneWire  # type: ignore[attr-defined]
    ds18x20 = types.ModuleType("ds18x20")
    ds18x20.DS18X20 = FakeDS18X20  # type: ignore[attr-defined]
    for name, mod in (("machine", machine), ("network", network), ("onewire", onewire), ("ds18x20", ds18x20)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(time, "sleep_us", lambda us: None, raising=False)  # MicroPython's time has it
    monkeypatch.delitem(sys.modules, "firmware.board.esp32", raising=False)
    mod = importlib.import_module("firmware.board.esp32")
    real_storage = mod.FlashStorage
    monkeypatch.setattr(mod, "FlashStorage", lambda: real_storage(str(tmp_path / "data")))
    try:
        yield mod, machine
    finally:
        sys.modules.pop("firmware.board.esp32", None)


DEVICES: dict[str, dict[str, Any]] = {
    "kiosk": {"id": "kiosk-01", "role": "kiosk", "services": ["A", "B"]},
    "counter": {"id": "loket-01", "role": "counter", "counter": "1"},
    "display-counter": {"id": "disp-01", "role": "display", "counters": ["1"]},
    "display-hall": {"id": "disp-hall", "role": "display", "hall": True},
    "water": {"id": "wl-01", "role": "water", "ranger": "a02yyuw"},
}


def board_for(mod: Any, profile: str, **extra: Any) -> Any:
    device = DEVICES[profile]
    settings = {"device_id": device["id"], "role": device["role"], "prefix": "sigap", **settings_pins(device)}
    settings.update({k: v for k, v in device.items() if k not in ("id", "role")})
    settings.update(extra)
    return mod.Esp32Board(settings)


def build_all(board: Any) -> None:
    """Every part a role of this board can ask for, and every named pin."""
    board.text_display("main")
    for part in ("printer", "rangefinder", "thermometer", "battery", "siren", "status_led"):
        getattr(board, part)()
    for name in board.pins:
        board.pin(name)


def test_kiosk_parts_on_the_kiosk_pin_map(esp32):
    mod, m = esp32
    board = board_for(mod, "kiosk")
    build_all(board)
    pins = load_pinmap("kiosk")["pins"]
    assert ("UART", (2,), {"baudrate": 9600, "tx": pins["printer_tx"], "rx": pins["printer_rx"]}) in m.made
    assert ("I2C", (0,), {"sda": pins["oled_sda"], "scl": pins["oled_scl"], "freq": 400000}) in m.made
    assert type(board.printer()).__name__ == "EscPos" and board.printer() is board.printer()
    assert type(board.text_display("main")).__name__ == "OledText"
    assert ("Pin", (pins["svc1"], m.IN, m.PULL_UP), {}) in m.made  # svc1 is service A's button
    assert ("Pin", (pins["svc2"], m.IN, m.PULL_UP), {}) in m.made
    assert pins["svc3"] not in m.pins("Pin")  # the kiosk has two services
    assert ("Pin", (pins["status_led"], m.OUT, -1), {"value": 0}) in m.made
    assert board.rangefinder() is None and board.siren() is None and board.battery() is None


def test_counter_parts_on_the_counter_pin_map(esp32):
    mod, m = esp32
    board = board_for(mod, "counter")
    build_all(board)
    data = load_pinmap("counter")
    used = m.pins("Pin") | m.pins("I2C")
    assert set(data["pins"].values()) == used
    assert type(board.text_display("main")).__name__ == "OledText"
    assert board.printer() is None


def test_counter_display_builds_a_tm1637_on_open_drain_pins(esp32):
    mod, m = esp32
    board = board_for(mod, "display-counter")
    build_all(board)
    pins = load_pinmap("display-counter")["pins"]
    assert type(board.text_display("main")).__name__ == "SevenSegText"
    assert ("Pin", (pins["tm1637_clk"], m.OPEN_DRAIN, -1), {"value": 1}) in m.made
    assert ("Pin", (pins["tm1637_dio"], m.OPEN_DRAIN, -1), {"value": 1}) in m.made
    assert ("Pin", (pins["buzzer"], m.OUT, -1), {"value": 0}) in m.made
    assert ("Pin", (pins["dfplayer_busy"], m.IN, -1), {}) in m.made  # input-only GPIO: no pull-up


def test_hall_display_builds_a_max7219_chain_on_spi(esp32):
    mod, m = esp32
    board = board_for(mod, "display-hall")
    board.text_display("main")
    bus = load_pinmap("display-hall")["buses"]["max7219"]
    assert ("SPI", (bus["id"],), {"baudrate": bus["baud"], "sck": bus["sck"], "mosi": bus["mosi"],
                                  "miso": bus["miso"]}) in m.made
    assert ("Pin", (bus["cs"], m.OUT, -1), {"value": 1}) in m.made
    shown = board.text_display("main")
    assert type(shown).__name__ == "MatrixText" and shown.driver.n == bus["modules"]


@pytest.mark.parametrize("ranger", ["a02yyuw", "jsn-sr04t"])
def test_water_parts_on_the_water_pin_map(esp32, ranger):
    mod, m = esp32
    board = board_for(mod, "water", ranger=ranger)
    build_all(board)
    data = load_pinmap("water")
    pins = data["pins"]
    r = board.rangefinder()
    assert type(r).__name__ == "SwitchedRanger"  # the sensor is powered only while it measures
    assert type(r.ranger).__name__ == ("A02YYUW" if ranger == "a02yyuw" else "JSNSR04T")
    # sensor_pwr is active low: built off (1), switched on at 0.
    assert ("Pin", (pins["sensor_pwr"], m.OUT, -1), {"value": 1}) in m.made and r.on_level == 0
    if ranger == "a02yyuw":
        assert ("UART", (2,), {"baudrate": 9600, "tx": pins["a02yyuw_tx"], "rx": pins["a02yyuw_rx"]}) in m.made
    else:
        assert ("Pin", (pins["jsn_trig"], m.OUT, -1), {"value": 0}) in m.made
        assert ("Pin", (pins["jsn_echo"], m.IN, -1), {}) in m.made
        assert not [k for k, _, _ in m.made if k == "UART"]
    t = board.thermometer()
    assert type(t).__name__ == "DS18B20" and t.sensor.bus.pin.num == pins["ds18b20_data"]
    assert ("ADC", (pins["battery"],), {"atten": 3}) in m.made
    assert board.battery().read_mv() == round(500 * data["adc"]["battery"]["ratio"])
    assert ("Pin", (pins["siren"], m.OUT, -1), {"value": 0}) in m.made
    siren = board.siren()
    siren.on()
    assert siren.pin.value() == 1
    siren.off()
    # Deep sleep: the siren output is held, then machine.deepsleep(ms).
    board.deep_sleep(300_000)
    assert m.held == [pins["siren"]] and m.slept == [300_000]
    assert board.reset_cause() == "deepsleep"


def test_water_switched_ranger_powers_the_sensor_only_while_measuring(esp32):
    mod, m = esp32
    board = board_for(mod, "water", ranger="jsn-sr04t")
    r = board.rangefinder()
    r.warm_ms = 0
    r.ranger.gap_ms = 0
    levels = []
    r.ranger._echo_mm = lambda temp: _record(levels, r.power.value())
    mm, n = asyncio.run(r.measure(25.0))
    assert levels == [0] * r.ranger.samples  # on (active low) for every echo
    assert r.power.value() == 1 and mm is None and n == 0


async def _record(levels: list[int], v: int) -> None:
    levels.append(v)


def test_every_pin_of_every_map_is_built(esp32):
    mod, m = esp32
    for profile in DEVICES:
        data = load_pinmap(profile)
        m.made.clear()
        m.named.clear()
        boards = [board_for(mod, profile)]
        if profile == "water":
            boards.append(board_for(mod, profile, ranger="jsn-sr04t"))
        if profile == "kiosk":
            boards[0] = board_for(mod, profile)
            boards[0].pins.update({f"svc_{c}": data["pins"][f"svc{i}"] for i, c in enumerate("CDEFGH", 3)})
        for b in boards:
            build_all(b)
        used = m.named.union(*(m.pins(k) for k in ("UART", "I2C", "SPI")))
        wanted = set(data["pins"].values())
        # dfplayer: its UART is the display role's sound (not built by the board yet).
        not_yet = {data["pins"][n] for n in data["pins"] if n.startswith("dfplayer_") and n != "dfplayer_busy"}
        assert wanted - not_yet <= used, (profile, sorted(wanted - not_yet - used))


def test_a_full_flash_does_not_stop_a_reboot(esp32, monkeypatch):
    mod, m = esp32
    board = board_for(mod, "counter")

    def full(name: str, text: str) -> None:
        raise OSError(28, "ENOSPC")

    monkeypatch.setattr(board.storage, "write", full)
    board.reset("broker_timeout")
    assert m.resets == 1


def test_flash_storage_removes_its_temporary_file_when_the_flash_is_full(esp32, tmp_path, monkeypatch):
    mod, _ = esp32
    storage = mod.FlashStorage()
    storage.write("boot", "1")
    real_open = open

    class Full:
        def __init__(self, f: Any) -> None:
            self.f = f

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.f.close()

        def write(self, text: str) -> int:
            raise OSError(28, "ENOSPC")

    monkeypatch.setattr("builtins.open", lambda path, mode="r": Full(real_open(path, mode)) if "w" in mode
                        else real_open(path, mode))
    with pytest.raises(OSError):
        storage.write("boot", "2")
    monkeypatch.undo()
    assert storage.read("boot") == "1"
    assert not (tmp_path / "data" / "boot.tmp").exists()


def test_an_oled_that_is_not_fitted_falls_back_to_the_console(esp32, monkeypatch):
    mod, m = esp32

    def no_ack(self: Any, addr: int, buf: Any) -> None:
        raise OSError(19, "ENODEV")

    monkeypatch.setattr(m.I2C, "writeto", no_ack)
    board = board_for(mod, "kiosk")
    assert type(board.text_display("main")).__name__ == "ConsoleDisplay"
    assert board.printer() is not None  # the rest of the board goes on
