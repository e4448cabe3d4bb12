"""Virtual hardware for one simulated board: pins, display, flash, WiFi.

It implements the board API of firmware/README.md, so the real firmware code
runs on it unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any


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

    def value(self, v: int | None = None) -> int:
        if v is not None:
            self._value = 1 if v else 0
        return self._value


class VirtualTextDisplay:
    """A display whose content can be read back as text; tests wait on `changed`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.chimes = 0
        self.history: list[list[str]] = []
        self._changed = asyncio.Event()

    def show(self, lines: list[str], chime: bool = False) -> None:
        self.lines = list(lines)
        self.history.append(self.lines)
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
    """Flash: survives a power cycle of the virtual board (RAM does not)."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def read(self, name: str) -> str | None:
        return self.files.get(name)

    def write(self, name: str, text: str) -> None:
        self.files[name] = text


class VirtualBoard:
    """One simulated ESP32: hand it to firmware.core.runtime.run_board()."""

    press_ms = 80  # a finger on the key
    release_ms = 80  # before the same finger can press again: keeps presses distinct for the debouncer

    def __init__(self, settings: dict[str, Any]):
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

    def feed_watchdog(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        self.resets.append(reason)
        self.storage.write("reset_reason", reason)

    # -- control surface used by tests, scenarios and people -----------------
    async def press(self, key: str) -> None:
        """Press and release a button wired to `key` (returns once the key is back up)."""
        pin = self.pin(key)
        pin.value(0)
        await asyncio.sleep(self.press_ms / 1000)
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
