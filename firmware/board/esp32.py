# The real board: ESP32 with MicroPython. Only this file (and the drivers it
# builds) touches `machine` and `network`; roles see the duck-typed board API
# described in firmware/README.md.
import asyncio
import gc
import json
import os

import machine
import network

SETTINGS_FILE = "settings.json"


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
    """Pins, WiFi, flash and watchdog of a real ESP32, configured from settings.json."""

    wifi_timeout_ms = 20000

    def __init__(self, settings=None):
        if settings is None:
            with open(SETTINGS_FILE) as f:
                settings = json.load(f)
        self.settings = settings
        self.storage = FlashStorage()
        self.pins = settings.get("pins", {})
        self.wlan = network.WLAN(network.STA_IF)
        self.wdt = None

    def pin(self, name):
        """The GPIO wired to `name` in the pin map, as an input with pull-up, or None."""
        num = self.pins.get(name)
        if num is None:
            return None
        return machine.Pin(num, machine.Pin.IN, machine.Pin.PULL_UP)

    def text_display(self, name):
        """The display driver named in the settings (console fallback)."""
        return ConsoleDisplay()

    async def open_connection(self, host, port):
        return await asyncio.open_connection(host, port)

    async def connect_network(self):
        """Join the configured WiFi; True when connected."""
        self.wlan.active(True)
        if self.wlan.isconnected():
            return True
        self.wlan.connect(self.settings.get("wifi_ssid", ""), self.settings.get("wifi_password", ""))
        waited = 0
        while not self.wlan.isconnected() and waited < self.wifi_timeout_ms:
            await asyncio.sleep(0.1)
            waited += 100
        return self.wlan.isconnected()

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except Exception:
            return 0

    def heap_free(self):
        return gc.mem_free()

    def feed_watchdog(self):
        # Started on the first feed so a slow WiFi join at boot cannot trip it.
        if self.wdt is None:
            self.wdt = machine.WDT(timeout=self.settings.get("watchdog_ms", 30000))
        self.wdt.feed()

    def reset(self, reason):
        self.storage.write("reset_reason", reason)
        machine.reset()
