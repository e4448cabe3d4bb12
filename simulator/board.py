"""Virtual hardware for one simulated board: pins, display, flash, WiFi.

It implements the board API of firmware/README.md, so the real firmware code
runs on it unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

from firmware.drivers.outputs.siren import Siren
from firmware.drivers.printer.escpos import EscPos
from firmware.drivers.sensors.battery import Battery
from firmware.drivers.sensors.ds18b20 import DS18B20
from firmware.drivers.sensors.ultrasonic import JSNSR04T
from simulator.clock import loop_time
from simulator.flash import VirtualFlash
from simulator.hw import VirtualADC, VirtualDS18X20, VirtualEcho, VirtualUART, decode_escpos

# The parts a board of each role carries unless told otherwise (VirtualBoard(parts=...)).
ROLE_PARTS: dict[str, tuple[str, ...]] = {
    "kiosk": ("printer",),
    "water": ("rangefinder", "thermometer", "battery", "siren"),
}


async def wait_until(predicate: Any, timeout: float, step: float = 0.01) -> None:
    """Wait for a condition owned by code that has no event to offer (bounded)."""

    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(step)

    await asyncio.wait_for(_poll(), timeout)


class VirtualPin:
    """A GPIO: buttons read it (active low, idle high), outputs write it."""

    def __init__(self, name: str, idle: int = 1):
        self.name = name
        self._value = idle
        self._edge: asyncio.Event | None = None  # made by the first wait_edge()

    def value(self, v: int | None = None) -> int:
        if v is not None:
            v = 1 if v else 0
            if v != self._value and self._edge is not None:
                self._edge.set()
            self._value = v
        return self._value

    async def wait_edge(self) -> None:
        """Return at the next level change: an idle Button sleeps here instead of polling."""
        if self._edge is None:
            self._edge = asyncio.Event()
        self._edge.clear()
        await self._edge.wait()


class VirtualTextDisplay:
    """A display whose content can be read back as text; tests wait on `changed`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.chimes = 0
        self.history: list[list[str]] = []
        self._changed = asyncio.Event()

    history_max = 256  # recent contents kept: a board that runs for days must not grow without end

    def show(self, lines: list[str], chime: bool = False) -> None:
        self.lines = list(lines)
        self.history.append(self.lines)
        if len(self.history) > self.history_max:
            del self.history[: len(self.history) - self.history_max]
        if chime:
            self.chimes += 1
        self._changed.set()

    @property
    def text(self) -> str:
        """All lines joined by ' | '."""
        return " | ".join(self.lines)

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[str]:
        """Wait until predicate(lines) holds; returns the lines."""

        async def _wait() -> list[str]:
            while not predicate(self.lines):
                self._changed.clear()
                await self._changed.wait()
            return self.lines

        return await asyncio.wait_for(_wait(), timeout)


class VirtualStorage:
    """Flash as the firmware sees it (`board.storage`): text files under /data on the board's file tree.

    The tree (`flash`, a simulator.flash.VirtualFlash) survives a power cycle
    of the virtual board (RAM does not) and is what the raw REPL (mpremote)
    lists and copies. `files` is a name -> text view of /data, as before.
    """

    root = "/data"  # firmware/board/esp32.py FlashStorage keeps its files there too

    def __init__(self, flash: VirtualFlash | None = None) -> None:
        self.flash = flash if flash is not None else VirtualFlash()
        if not self.flash.isdir(self.root):
            self.flash.makedirs(self.root)
        self.files = _DataFiles(self)

    def _path(self, name: str) -> str:
        return self.root + "/" + name

    def read(self, name: str) -> str | None:
        try:
            return self.flash.read_bytes(self._path(name)).decode("utf-8")
        except (OSError, UnicodeError):
            return None

    def write(self, name: str, text: str) -> None:
        """Stored whole or not at all; OSError(ENOSPC) when the flash is full."""
        if not self.flash.isdir(self.root):
            self.flash.makedirs(self.root)
        self.flash.write_bytes(self._path(name), text.encode("utf-8"))

    def fill(self, free_bytes: int = 0) -> None:
        """Fill the flash until `free_bytes` are left: later writes raise OSError(28, ENOSPC)."""
        self.flash.fill(free_bytes)


class _DataFiles(MutableMapping[str, str]):
    """name -> text of the files in /data (what tests used to read as a dict)."""

    def __init__(self, storage: VirtualStorage):
        self._s = storage

    def __getitem__(self, name: str) -> str:
        text = self._s.read(name)
        if text is None:
            raise KeyError(name)
        return text

    def __setitem__(self, name: str, text: str) -> None:
        self._s.write(name, text)

    def __delitem__(self, name: str) -> None:
        try:
            self._s.flash.remove(self._s._path(name))
        except OSError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        flash = self._s.flash
        root = self._s.root
        names = flash.listdir(root) if flash.isdir(root) else []
        return iter([n for n in names if not flash.isdir(root + "/" + n)])

    def __len__(self) -> int:
        return len(list(iter(self)))


class _PrinterUART(VirtualUART):
    """The printer's UART: every slip (bytes up to a cut) is decoded as it ends."""

    def __init__(self, on_slip: Callable[[bytes], None]):
        super().__init__()
        self.pending = bytearray()
        self.on_slip = on_slip

    def write(self, buf: Any) -> int:
        n = super().write(buf)
        self.pending += bytes(buf)
        p = self.pending
        # GS V 65/66 n ends a slip. Text and QR data never hold 0x1D: the driver
        # sends printable ASCII only (ascii_text), so this cannot match inside them.
        if len(p) >= 4 and p[-4] == 0x1D and p[-3] == 0x56 and p[-2] in (65, 66):
            slip = bytes(p)
            self.pending = bytearray()
            self.on_slip(slip)
        return n


class _BatteryADC(VirtualADC):
    """The ADC pin behind the battery's 2:1 divider, following the board's battery model."""

    def __init__(self, board: VirtualBoard, ratio: float):
        super().__init__(0.0)
        self.board = board
        self.ratio = ratio

    def _mv(self) -> float:
        self.reads += 1
        return self.board.battery_mv() / self.ratio


class _SirenPin:
    """The siren relay's GPIO: each level change is logged with the loop's time (loop_time)."""

    def __init__(self, log: list[tuple[float, bool]]):
        self.level = 0
        self.log = log

    def value(self, v: int | None = None) -> int:
        if v is not None:
            v = 1 if v else 0
            if v != self.level or not self.log:
                self.log.append((loop_time(), bool(v)))
            self.level = v
        return self.level


class VirtualBoard:
    """One simulated ESP32: hand it to firmware.core.runtime.run_board()."""

    press_ms = 80  # a finger on the key
    release_ms = 80  # before the same finger can press again: keeps presses distinct for the debouncer
    long_press_ms = 1500  # a held key: beyond the firmware Button's long_press_ms (1000)
    # The virtual DS18B20 converts faster than the real one (750 ms at 12 bit)
    # so that a test with interval_s = 1 is not dominated by the conversion.
    ds18b20_conversion_ms = 50
    battery_full_mv = 4150
    battery_empty_mv = 3300
    calm_level_mm = 500  # the river until a test or scenario sets another level

    def __init__(self, settings: dict[str, Any], parts: Iterable[str] | None = None):
        self.settings = settings
        self.storage = VirtualStorage()
        self.pins: dict[str, VirtualPin] = {}
        self.displays: dict[str, VirtualTextDisplay] = {}
        self.wifi = True
        self._wifi_up = asyncio.Event()
        self._wifi_up.set()
        self._writers: list[asyncio.StreamWriter] = []
        self.resets: list[str] = []
        self.device: Any = None  # the firmware runtime booted on this board (set by the fleet)
        self.parts = set(ROLE_PARTS.get(settings.get("role", ""), ()) if parts is None else parts)
        self._drivers: dict[str, Any] = {}
        # Clock: the host's, as if NTP had synced; False makes board.time() None.
        # `wall_clock` (seconds since the epoch) lets a scenario run on its own time.
        self.clock_synced = True
        self.wall_clock: Callable[[], float] = time.time
        # Printer: every slip decoded (decode_escpos dicts: lines, double, qr, ...).
        self.printed: list[dict[str, Any]] = []
        self.printer_uart = _PrinterUART(self._slip)
        # Water: the true distance is mount_mm - level; the echo adds noise and drops.
        self.mount_mm: int = int(settings.get("mount_mm", 4000))
        self._level_fn: Callable[[float], float] = lambda t: self.calm_level_mm
        self._level_t0 = loop_time()
        self.echo = VirtualEcho(self.mount_mm, temp_c=28.0)
        self.ds18x20 = VirtualDS18X20(28.0)
        # Battery: drains from full at drain_mv_per_h (set 0 for mains or a panel that keeps up).
        self.battery_start_mv: float = self.battery_full_mv
        self.drain_mv_per_h: float = 10.0  # a cloudy week: the panel does not keep up
        self._battery_t0 = loop_time()
        self.siren_history: list[tuple[float, bool]] = []  # (loop_time() s, on)

    # -- board API used by the firmware --------------------------------------
    def pin(self, name: str) -> VirtualPin:
        if name not in self.pins:
            self.pins[name] = VirtualPin(name)
        return self.pins[name]

    def text_display(self, name: str) -> VirtualTextDisplay:
        if name not in self.displays:
            self.displays[name] = VirtualTextDisplay()
        return self.displays[name]

    async def open_connection(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.wifi:
            raise OSError(113, "EHOSTUNREACH (virtual WiFi is down)")
        reader, writer = await asyncio.open_connection(host, port)
        self._writers = [w for w in self._writers if not w.is_closing()]
        self._writers.append(writer)
        return reader, writer

    async def connect_network(self) -> bool:
        await self._wifi_up.wait()
        return True

    def rssi(self) -> int:
        return -60

    def heap_free(self) -> int:
        return 100_000

    def time(self) -> int | None:
        """Unix seconds, or None while the clock is not synced (`clock_synced`)."""
        return int(self.wall_clock()) if self.clock_synced else None

    def _part(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self.parts:
            return None
        if name not in self._drivers:
            self._drivers[name] = build()
        return self._drivers[name]

    def printer(self) -> EscPos | None:
        """ESC/POS printer on a virtual UART; slips land decoded in `printed`."""
        return self._part("printer", lambda: EscPos(self.printer_uart))

    def rangefinder(self) -> JSNSR04T | None:
        """JSN-SR04T looking down at the virtual river (see set_level)."""
        return self._part(
            "rangefinder", lambda: JSNSR04T(VirtualPin("trig", 0), VirtualPin("echo", 0), self._time_pulse_us)
        )

    def thermometer(self) -> DS18B20 | None:
        """DS18B20 in the ranger's shade; `air_temp_c` sets what it reads."""

        def build() -> DS18B20:
            t = DS18B20(sensor=self.ds18x20)
            t.conversion_ms = self.ds18b20_conversion_ms
            return t

        return self._part("thermometer", build)

    def battery(self) -> Battery | None:
        """Battery voltage through a 2:1 divider (see battery_mv)."""
        return self._part("battery", lambda: Battery(_BatteryADC(self, 2.0), ratio=2.0))

    def siren(self) -> Siren | None:
        """Siren relay; its switching is logged in `siren_history`."""
        return self._part("siren", lambda: Siren(_SirenPin(self.siren_history)))

    # -- control surface used by tests, scenarios and people -----------------
    async def press(self, key: str, hold_ms: float | None = None) -> None:
        """Press `key`, hold it hold_ms (default press_ms; long_press_ms for a long press)
        and release it; returns once the key is back up."""
        pin = self.pin(key)
        pin.value(0)
        await asyncio.sleep((self.press_ms if hold_ms is None else hold_ms) / 1000)
        pin.value(1)
        await asyncio.sleep(self.release_ms / 1000)

    def set_wifi(self, up: bool) -> None:
        """Cut or restore the board's WiFi; a cut drops its open TCP links at once."""
        self.wifi = up
        if up:
            self._wifi_up.set()
            return
        self._wifi_up.clear()
        for w in self._writers:
            transport = w.transport
            transport.abort()
        self._writers.clear()

    async def device_ready(self, timeout: float = 10.0) -> None:
        """Wait until the firmware is connected to the broker."""
        await wait_until(lambda: self.device is not None, timeout)
        await asyncio.wait_for(self.device.mqtt.wait_connected(), timeout)

    async def wait_offline(self, timeout: float = 10.0) -> None:
        """Wait until the firmware has noticed its broker link is gone."""
        await wait_until(lambda: self.device is not None and not self.device.mqtt.isconnected(), timeout)

    @property
    def display(self) -> VirtualTextDisplay:
        """The board's main display."""
        return self.text_display("main")

    def _slip(self, data: bytes) -> None:
        self.printed.append(decode_escpos(data))

    # -- the river under a water board ----------------------------------------
    def set_level(self, mm: float, **echo: float) -> None:
        """Water `mm` above the gauge's zero from now on; `echo` as in set_echo."""
        self.set_level_curve(lambda t: mm, **echo)

    def set_level_curve(self, fn: Callable[[float], float], **echo: float) -> None:
        """Level (mm) as fn(seconds since this call); `echo` as in set_echo."""
        self._level_fn = fn
        self._level_t0 = loop_time()
        self.set_echo(**echo)

    def set_echo(self, noise_mm: float | None = None, drop_rate: float | None = None,
                 spike_rate: float | None = None) -> None:
        """Echo quality: Gaussian noise (mm), share of lost echoes, share of spikes (0..1)."""
        if noise_mm is not None:
            self.echo.noise_mm = noise_mm
        if drop_rate is not None:
            self.echo.drop_rate = drop_rate
        if spike_rate is not None:
            self.echo.spike_rate = spike_rate

    def level_mm(self) -> float:
        """The true water level now."""
        return self._level_fn(loop_time() - self._level_t0)

    @property
    def air_temp_c(self) -> float | None:
        return self.ds18x20.temp_c

    @air_temp_c.setter
    def air_temp_c(self, c: float | None) -> None:
        """Air temperature (the echo's speed of sound); None: the probe is missing."""
        self.ds18x20.temp_c = c
        if c is not None:
            self.echo.temp_c = c

    def _time_pulse_us(self, pin: Any, level: int, timeout_us: int) -> int:
        self.echo.distance_mm = max(0.0, self.mount_mm - self.level_mm())
        return self.echo(pin, level, timeout_us)

    def battery_mv(self) -> float:
        """Battery voltage now: drained from battery_start_mv at drain_mv_per_h."""
        hours = (loop_time() - self._battery_t0) / 3600
        return max(self.battery_empty_mv, self.battery_start_mv - self.drain_mv_per_h * hours)

    def set_battery(self, mv: float, drain_mv_per_h: float | None = None) -> None:
        """The battery reads `mv` now and drains from there."""
        self.battery_start_mv = mv
        self._battery_t0 = loop_time()
        if drain_mv_per_h is not None:
            self.drain_mv_per_h = drain_mv_per_h

    @property
    def siren_on(self) -> bool:
        """Whether the siren relay is energised."""
        return bool(self.siren_history and self.siren_history[-1][1])

    # --- runtime (owned by the runtime work) ---
    # What the runtime (firmware/core/runtime.py) asks of a board beyond pins and
    # parts: network state, the watchdog, reboots, the status LED, a console.
    # The state lives in _runtime_hw(), made on first use (nothing in __init__).
    watchdog_timeout_s: float = 30.0  # the virtual WDT: unfed this long, it reboots the board
    on_reset: Callable[[str], None] | None = None  # set by the Fleet: power-cycles this board

    def _runtime_hw(self) -> _RuntimeHw:
        hw = self.__dict__.get("_rt_hw")
        if hw is None:
            hw = self.__dict__["_rt_hw"] = _RuntimeHw()
        return hw

    def network_up(self) -> bool:
        """WiFi is up (see set_wifi)."""
        return self.wifi

    def feed_watchdog(self) -> None:
        """Feed the virtual WDT; like the ESP32's, it starts on the first feed."""
        hw = self._runtime_hw()
        hw.fed = loop_time()
        hw.feeds += 1
        if hw.timer is None:
            hw.timer = asyncio.get_running_loop().call_later(self.watchdog_timeout_s, self._watchdog_check)

    def _watchdog_check(self) -> None:
        hw = self._runtime_hw()
        hw.timer = None
        left = hw.fed + self.watchdog_timeout_s - loop_time()
        if left > 0:
            hw.timer = asyncio.get_running_loop().call_later(left, self._watchdog_check)
            return
        # Starved: the chip resets. The ESP32 would report WDT_RESET as its reset
        # cause; the virtual board keeps the same answer where the runtime looks.
        self._reboot("watchdog")

    def stop_watchdog(self) -> None:
        """Power is off: the watchdog stops with everything else (the Fleet calls this)."""
        hw = self._runtime_hw()
        if hw.timer is not None:
            hw.timer.cancel()
            hw.timer = None

    def reset(self, reason: str) -> None:
        """The firmware reboots the board: reason kept in flash, the Fleet power-cycles it."""
        self._reboot(reason)

    def _reboot(self, reason: str) -> None:
        self.resets.append(reason)
        try:
            self.storage.write("reset_reason", reason)
        except OSError:
            pass  # a full flash: the chip resets all the same
        self.stop_watchdog()
        if self.on_reset is not None:
            self.on_reset(reason)

    # --- deep sleep ---
    on_sleep: Callable[[int], None] | None = None  # set by the Fleet: power off, boot again after ms

    def deep_sleep(self, ms: int) -> None:
        """machine.deepsleep(ms): power off now (RAM lost, flash kept), wake after ms.

        The next boot's reset_cause() is "deepsleep". The firmware's task ends
        when the Fleet powers the board off; without a Fleet nothing wakes it."""
        self.sleeps.append(ms)
        self.__dict__["_wake_cause"] = "deepsleep"
        self.stop_watchdog()
        if self.on_sleep is not None:
            self.on_sleep(ms)

    @property
    def sleeps(self) -> list[int]:
        """Every deep sleep the firmware asked for (ms), oldest first."""
        return self.__dict__.setdefault("_sleeps", [])

    def reset_cause(self) -> str:
        """Why the chip restarted, when no reason was kept in flash: "deepsleep" after a wake, else "power"."""
        return str(self.__dict__.pop("_wake_cause", "power"))

    def led_pattern(self, name: str) -> None:
        """The status LED switched to pattern name (recorded, see led and led_history)."""
        hw = self._runtime_hw()
        hw.led = name
        hw.led_history.append(name)
        hw.led_changed.set()

    @property
    def led(self) -> str | None:
        """The status LED's pattern now: joining_wifi, joining_broker, online, error."""
        return self._runtime_hw().led

    @property
    def led_history(self) -> list[str]:
        """Every pattern the LED showed, oldest first (across reboots)."""
        return self._runtime_hw().led_history

    async def wait_led(self, name: str, timeout: float = 10.0) -> None:
        """Wait until the status LED shows pattern name."""
        hw = self._runtime_hw()

        async def _wait() -> None:
            while hw.led != name:
                hw.led_changed.clear()
                await hw.led_changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    def log(self, text: str) -> None:
        """The board's serial console."""
        import logging

        logging.getLogger("sigap.simulator").info("%s: %s", self.settings.get("device_id", "?"), text)


class _RuntimeHw:
    """The virtual board's watchdog timer and status LED record."""

    def __init__(self) -> None:
        self.timer: asyncio.TimerHandle | None = None
        self.fed = 0.0
        self.feeds = 0
        self.led: str | None = None
        self.led_history: list[str] = []
        self.led_changed = asyncio.Event()
