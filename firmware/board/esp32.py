# The real board: ESP32 with MicroPython. Only this file (and the drivers it
# builds) touches `machine` and `network`; roles see the duck-typed board API
# described in firmware/README.md.
import asyncio
import gc
import json
import os
import random

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
        tmp = self.root + "/" + name + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.root + "/" + name)


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

    def reload_settings(self):
        """settings.json read again (an unconfigured board retries it)."""
        return read_settings()

    # -- pins and parts ---------------------------------------------------------

    def pin(self, name):
        """The GPIO wired to `name` in the pin map, as an input with pull-up, or None."""
        num = self.pins.get(name)
        if num is None:
            return None
        return machine.Pin(num, machine.Pin.IN, machine.Pin.PULL_UP)

    def status_led(self):
        """The status LED's GPIO (pin map name "status_led") as an output, or None."""
        num = self.pins.get("status_led")
        if num is None:
            return None
        return machine.Pin(num, machine.Pin.OUT, value=0)

    def led_pattern(self, name):
        print("[led]", name)

    def text_display(self, name):
        """The display driver named in the settings (console fallback)."""
        return ConsoleDisplay()

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
        self.storage.write("reset_reason", reason)
        machine.reset()
