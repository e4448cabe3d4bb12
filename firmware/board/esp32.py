# The real board: ESP32 with MicroPython. Only this file (and the drivers it
# builds) touches `machine` and `network`; roles see the duck-typed board API
# described in firmware/README.md.
import asyncio
import gc
import json
import os
import random
import time

import machine
import network

from firmware.core import clock
from firmware.core.timekeeping import Timekeeper

SETTINGS_FILE = "settings.json"


def read_settings(path=SETTINGS_FILE):
    """settings.json as a dict, its text when it is not JSON, or None when missing.

    The runtime validates what it gets (firmware/core/settings.py): a broken
    file must not stop the board from booting on its last good copy."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


class FlashStorage:
    """Small text files on the board's flash filesystem (survive reboots)."""

    def __init__(self, root="/data"):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:
            pass  # exists

    def read(self, name):
        try:
            with open(self.root + "/" + name) as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, text):
        # Write then rename, so a brown-out mid-write never leaves half a file.
        # A full flash raises OSError(28, ENOSPC): the half-written temporary
        # file is removed (it holds blocks the next write needs) and the error
        # goes to the caller, which counts it and carries on (Device.write).
        tmp = self.root + "/" + name + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(text)
        except OSError:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        os.rename(tmp, self.root + "/" + name)


class SwitchedRanger:
    """A ranger behind a power switch (the water board's AO3401 on sensor_pwr):
    powered only while it measures, warm_ms before the first echo."""

    warm_ms = 300  # A02YYUW: first frame ~300 ms after power-up (hardware/water.md t_warm)

    def __init__(self, ranger, power, on_level):
        self.ranger = ranger
        self.power = power
        self.on_level = on_level
        power.value(1 - on_level)

    async def measure(self, temp_c=None):
        self.power.value(self.on_level)
        try:
            await clock.sleep_ms(self.warm_ms)
            return await self.ranger.measure(temp_c)
        finally:
            self.power.value(1 - self.on_level)


class ConsoleDisplay:
    """Fallback display: prints what would be shown on the serial console."""

    def show(self, lines, chime=False):
        print("[display]", " | ".join(lines), "(chime)" if chime else "")


class Esp32Board:
    """Pins, WiFi, clock, flash and watchdog of a real ESP32, configured from settings.json."""

    # WiFi join: one attempt waits up to wifi_timeout_ms for the association
    # and DHCP; failures back off exponentially from wifi_backoff_min_ms to
    # wifi_backoff_max_ms, half of each wait random, so a hall of boards coming
    # back from a power cut does not hit the access point in one burst.
    wifi_timeout_ms = 20000
    wifi_backoff_min_ms = 2000
    wifi_backoff_max_ms = 120000
    ntp_host = "pool.ntp.org"
    watchdog_ms = 30000

    def __init__(self, settings=None):
        if settings is None:
            settings = read_settings()
        self.settings = settings  # as found on flash; the runtime picks the copy to use
        self.active = settings if type(settings) is dict else {}
        self.pins = self.active.get("pins") or {}
        self.parts = {}  # name -> driver (or None), built on first use
        self.storage = FlashStorage()
        self.wlan = network.WLAN(network.STA_IF)
        self.wdt = None
        self.wifi_failures = 0
        self.clock = Timekeeper(self._ntp_sync)
        # After a soft reset or a deep sleep the RTC kept counting: if it shows
        # a plausible date, it was set by an earlier NTP sync and still holds.
        self.clock.trust_rtc()

    # -- settings ---------------------------------------------------------------

    def use_settings(self, settings):
        """The validated settings the runtime chose (the file, or the last good copy)."""
        self.active = settings
        self.pins = settings.get("pins") or {}
        self.parts = {}

    def reload_settings(self):
        """settings.json read again (an unconfigured board retries it)."""
        return read_settings()

    # -- pins and parts ---------------------------------------------------------
    # Everything comes from the settings that firmware/tools/settings.py wrote
    # from hardware/pins/<profile>.json (one source of truth): `pins` and
    # `pin_modes` for single pins, `buses` for UART/I2C/SPI/TM1637/1-Wire
    # parts, `active_low`, `hold` and `adc` for the water board. A part the map
    # does not have is None; an optional part that does not answer (an OLED
    # not fitted) is None too, so the role goes on without it.

    def _bus(self, name):
        return (self.active.get("buses") or {}).get(name)

    def _out_level(self, name, on):
        """The pin level that switches part `name` on (on=True) or off."""
        low = name in (self.active.get("active_low") or ())
        return (0 if on else 1) if low else (1 if on else 0)

    def _gpio(self, num, mode, pull=-1, **kw):
        return machine.Pin(num, mode, pull, **kw)

    def pin(self, name):
        """The GPIO wired to `name`, set up as pin_modes says (default: input with pull-up), or None."""
        num = self.pins.get(name)
        if num is None:
            return None
        mode = (self.active.get("pin_modes") or {}).get(name, "in_pullup")
        if mode == "out":
            return self._gpio(num, machine.Pin.OUT, value=self._out_level(name, False))
        if mode == "in":
            return self._gpio(num, machine.Pin.IN)
        return self._gpio(num, machine.Pin.IN, machine.Pin.PULL_UP)

    def _part(self, name, build):
        if name not in self.parts:
            try:
                self.parts[name] = build()
            except (OSError, ImportError) as e:  # not fitted (no I2C ACK, ...), or a port without its module
                self.log("no " + name + ": " + str(e))
                self.parts[name] = None
        return self.parts[name]

    def _uart(self, spec):
        return machine.UART(spec["id"], baudrate=spec["baud"], tx=spec["tx"], rx=spec["rx"])

    def status_led(self):
        """The status LED's GPIO (pin map name "status_led") as an output, or None."""
        num = self.pins.get("status_led")
        if num is None:
            return None
        return self._gpio(num, machine.Pin.OUT, value=0)

    def led_pattern(self, name):
        print("[led]", name)

    def text_display(self, name):
        """The display of the pin map: TM1637, MAX7219 chain or SSD1306 OLED (console fallback)."""
        d = self._part("display", self._build_display)
        return d if d is not None else ConsoleDisplay()

    def _build_display(self):
        from firmware.drivers.displays import text

        spec = self._bus("tm1637")
        if spec is not None:
            from firmware.drivers.displays.tm1637 import TM1637

            od = machine.Pin.OPEN_DRAIN  # the driver releases DIO (writes 1) for the chip's ACK
            clk = self._gpio(spec["clk"], od, value=1)
            dio = self._gpio(spec["dio"], od, value=1)
            drv = TM1637(clk, dio, time.sleep_us, spec.get("brightness", 7), spec.get("digits", 4))
            return text.SevenSegText(drv)
        spec = self._bus("max7219")
        if spec is not None:
            from firmware.drivers.displays.max7219 import MAX7219

            spi = machine.SPI(
                spec["id"],
                baudrate=spec.get("baud", 1000000),
                sck=machine.Pin(spec["sck"]),
                mosi=machine.Pin(spec["mosi"]),
                miso=machine.Pin(spec["miso"]),
            )
            cs = self._gpio(spec["cs"], machine.Pin.OUT, value=1)
            return text.MatrixText(MAX7219(spi, cs, spec.get("modules", 4), spec.get("intensity", 3)))
        spec = self._bus("oled")
        if spec is not None:
            from firmware.drivers.displays.ssd1306 import SSD1306

            i2c = machine.I2C(
                spec["id"], sda=machine.Pin(spec["sda"]), scl=machine.Pin(spec["scl"]), freq=spec.get("freq", 400000)
            )
            return text.OledText(SSD1306(i2c, addr=spec.get("addr", 0x3C)))
        return None

    def printer(self):
        """ESC/POS thermal printer on the `printer` UART, or None."""

        def build():
            spec = self._bus("printer")
            if spec is None:
                return None
            from firmware.drivers.printer.escpos import EscPos

            return EscPos(self._uart(spec))

        return self._part("printer", build)

    def rangefinder(self):
        """The ultrasonic ranger of settings `ranger`: "a02yyuw" (UART, default) or
        "jsn-sr04t" (trigger/echo), behind the sensor_pwr switch when the map has one."""

        def build():
            from firmware.drivers.sensors import ultrasonic

            kind = self.active.get("ranger") or "a02yyuw"
            spec = self._bus("a02yyuw")
            if kind == "a02yyuw" and spec is not None:
                r = ultrasonic.A02YYUW(self._uart(spec))  # type: ultrasonic.Ranger
            elif kind == "jsn-sr04t" and "jsn_trig" in self.pins and "jsn_echo" in self.pins:
                trig = self._gpio(self.pins["jsn_trig"], machine.Pin.OUT, value=0)
                echo = self._gpio(self.pins["jsn_echo"], machine.Pin.IN)
                r = ultrasonic.JSNSR04T(trig, echo, machine.time_pulse_us, time.sleep_us)
            else:
                return None
            if "sensor_pwr" in self.pins:
                pwr = self._gpio(self.pins["sensor_pwr"], machine.Pin.OUT, value=self._out_level("sensor_pwr", False))
                return SwitchedRanger(r, pwr, self._out_level("sensor_pwr", True))
            return r

        return self._part("rangefinder", build)

    def thermometer(self):
        """DS18B20 on the `ds18b20` 1-Wire bus, or None."""

        def build():
            spec = self._bus("ds18b20")
            if spec is None:
                return None
            import ds18x20
            import onewire

            from firmware.drivers.sensors.ds18b20 import DS18B20

            return DS18B20(sensor=ds18x20.DS18X20(onewire.OneWire(machine.Pin(spec["data"]))))

        return self._part("thermometer", build)

    def battery(self):
        """Battery voltage on the `battery` ADC pin (ADC1, 11 dB) through its divider, or None."""

        def build():
            num = self.pins.get("battery")
            if num is None:
                return None
            from firmware.drivers.sensors.battery import Battery

            ratio = ((self.active.get("adc") or {}).get("battery") or {}).get("ratio", 2.0)
            return Battery(machine.ADC(machine.Pin(num), atten=machine.ADC.ATTN_11DB), ratio=ratio)

        return self._part("battery", build)

    def siren(self):
        """The siren relay on the `siren` output, or None."""

        def build():
            num = self.pins.get("siren")
            if num is None:
                return None
            from firmware.drivers.outputs.siren import Siren

            pin = self._gpio(num, machine.Pin.OUT, value=self._out_level("siren", False))
            self._release_hold(pin)
            return Siren(pin, self._out_level("siren", True))

        return self._part("siren", build)

    def _release_hold(self, pin):
        # A pin held through deep sleep keeps its level until the hold is released.
        try:
            pin.init(hold=False)  # type: ignore[call-arg]  # ESP32 port only; not in the stubs
        except (TypeError, ValueError):
            pass

    def deep_sleep(self, ms):
        """machine.deepsleep(ms): RAM lost, flash and RTC kept; the wake is a reset (cause "deepsleep").

        The outputs in `hold` (the siren relay) keep their level asleep."""
        for name in self.active.get("hold") or ():
            num = self.pins.get(name)
            if num is not None:
                try:
                    machine.Pin(num).init(hold=True)  # type: ignore[call-arg]
                except (TypeError, ValueError):
                    pass
        machine.deepsleep(ms)

    def log(self, text):
        print("sigap:", text)

    # -- network ----------------------------------------------------------------

    async def open_connection(self, host, port):
        return await asyncio.open_connection(host, port)

    def network_up(self):
        """True while WiFi is associated and has an address."""
        return self.wlan.isconnected()

    def wifi_backoff_ms(self, attempt):
        """Wait after attempt failed joins in a row: capped exponential, half jitter."""
        cap = self.wifi_backoff_min_ms << min(attempt, 16)
        if cap > self.wifi_backoff_max_ms:
            cap = self.wifi_backoff_max_ms
        half = cap // 2
        return half + half * random.getrandbits(10) // 1023

    async def _try_join(self):
        wlan = self.wlan
        wlan.active(True)
        if wlan.isconnected():
            return True
        ssid = self.active.get("wifi_ssid")
        if not ssid:
            return False  # nothing to join; the runtime keeps retrying (slowly)
        try:
            wlan.connect(ssid, self.active.get("wifi_password") or "")
        except OSError:
            pass  # "Wifi Internal Error": a connect is already under way; wait for it
        waited = 0
        while waited < self.wifi_timeout_ms:
            if wlan.isconnected():
                return True
            await clock.sleep_ms(100)
            waited += 100
        try:
            # Stop the driver's own retries, so our back-off really is a pause.
            wlan.disconnect()
        except OSError:
            pass
        return False

    async def connect_network(self):
        """Join the configured WiFi, retrying with back-off until it is up; True."""
        attempt = 0
        while not await self._try_join():
            self.wifi_failures += 1
            await clock.sleep_ms(self.wifi_backoff_ms(attempt))
            attempt += 1
        return True

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except Exception:
            return 0

    # -- clock ------------------------------------------------------------------

    def _ntp_sync(self):
        # ntptime is frozen into the ESP32 firmware; imported here so the module
        # loads on ports without it. settime() blocks for at most its 1 s socket
        # timeout and sets the RTC to UTC.
        import ntptime

        ntptime.host = self.active.get("ntp_host") or self.ntp_host
        ntptime.settime()
        return True

    async def keep_time(self):
        """Sync the RTC by NTP whenever WiFi is up; re-sync every ntp_resync_s (runs forever)."""
        resync = self.active.get("ntp_resync_s")
        if resync:
            self.clock.resync_s = resync
        await self.clock.run(self.network_up)

    def time(self):
        """Unix seconds, or None until the clock was synced."""
        return self.clock.time()

    # -- health -----------------------------------------------------------------

    def heap_free(self):
        return gc.mem_free()

    def feed_watchdog(self):
        # Started on the first feed so a slow WiFi join at boot cannot trip it.
        # Once started, the ESP32's WDT cannot be stopped (esp_task_wdt).
        if self.wdt is None:
            self.wdt = machine.WDT(timeout=self.active.get("watchdog_ms") or self.watchdog_ms)
        self.wdt.feed()

    def reset_cause(self):
        """Why the chip restarted, when the firmware did not say ("watchdog", "power", ...)."""
        cause = machine.reset_cause()
        if cause == machine.WDT_RESET:
            return "watchdog"
        if cause == machine.DEEPSLEEP_RESET:
            return "deepsleep"
        if cause == machine.SOFT_RESET:
            return "soft"  # also a panic (ESP_RST_PANIC maps here)
        return "power"

    def reset(self, reason):
        """Reboot now; reason is kept in flash for the next birth."""
        try:
            self.storage.write("reset_reason", reason)
        except OSError:
            pass  # a full flash: reboot all the same (the birth then says "soft")
        machine.reset()
