"""A fleet of virtual boards built from a site config, each running the real firmware."""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any

from firmware.core.runtime import boot, run_device
from firmware.tools.settings import board_settings
from simulator.board import VirtualBoard

log = logging.getLogger("sigap.simulator")


def raise_open_files_limit(needed: int) -> int:
    """Raise this process's open-file limit (RLIMIT_NOFILE) from soft to hard when
    `needed` descriptors would not fit (each board holds a socket); returns the soft limit.

    A real deployment sets it for the service (systemd `LimitNOFILE=`, see simulator/README.md)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed and soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open-file limit raised from %d to %s for %d descriptors", soft,
                 "unlimited" if hard == resource.RLIM_INFINITY else hard, needed)
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("open-file limit %d is below the %d descriptors needed: some boards will not connect "
                    "(raise the hard limit: ulimit -Hn, or systemd LimitNOFILE=)", soft, needed)
    return int(soft)


class Fleet:
    """Virtual boards for (some of) the devices of a site config."""

    def __init__(self, cfg: Any, broker_host: str, broker_port: int, device_ids: list[str] | None = None,
                 wall_clock: Callable[[], float] | None = None):
        self.cfg = cfg
        self.boards: dict[str, VirtualBoard] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reboots: set[asyncio.Task[None]] = set()  # power cycles a board's reset asked for
        self._stopping = False
        self._pending_on: dict[str, asyncio.TimerHandle] = {}  # staggered power-ons still to come
        self.on_boot: Callable[[VirtualBoard], None] | None = None  # called after each boot, before it runs
        ids = device_ids if device_ids is not None else [d.id for d in cfg.devices]
        for dev_id in ids:
            settings = board_settings(cfg, dev_id, broker_host, broker_port)
            self.boards[dev_id] = VirtualBoard(settings)
            if wall_clock is not None:
                self.boards[dev_id].wall_clock = wall_clock  # the boards' NTP time, for a scenario clock

    def set_passwords(self, passwords: dict[str, str]) -> None:
        """Each board's MQTT password (a provisioned broker: `sigap provision`), before it boots."""
        for dev_id, password in passwords.items():
            if dev_id in self.boards:
                self.boards[dev_id].settings["mqtt_password"] = password

    def supported(self, dev_id: str) -> bool:
        """Roles whose firmware exists in this version."""
        return self.boards[dev_id].settings["role"] in ("counter", "display", "kiosk", "water")

    # Descriptors beyond one socket per board: the loop, logs, a web server, the controller's links.
    spare_fds = 256

    # A large fleet powers on at this many boards a second unless start() is told otherwise.
    power_on_rate = 1000
    stagger_from = 500  # boards: smaller fleets power on at once

    def start(self, stagger_s: float | None = None) -> None:
        """Power every board on; with stagger_s, spread the power-ons evenly over that
        many seconds (a site's boards coming back after a power cut do not all boot at once).
        None: at once for a small fleet, power_on_rate boards a second for a large one."""
        self._stopping = False
        raise_open_files_limit(len(self.boards) + self.spare_fds)
        ids = [d for d in self.boards if self.supported(d)]
        if stagger_s is None:
            stagger_s = len(ids) / self.power_on_rate if len(ids) >= self.stagger_from else 0.0
        loop = asyncio.get_running_loop() if stagger_s > 0 and len(ids) > 1 else None
        for i, dev_id in enumerate(ids):
            if loop is None or i == 0:
                self.power_on(dev_id)
            else:
                self._pending_on[dev_id] = loop.call_later(stagger_s * i / len(ids), self._power_on_later, dev_id)

    def _power_on_later(self, dev_id: str) -> None:
        if self._pending_on.pop(dev_id, None) is not None and not self._stopping:
            self.power_on(dev_id)

    def powered(self, dev_id: str) -> bool:
        """Whether the board is powered on (its firmware running, online or not)."""
        return dev_id in self._tasks

    def online(self) -> list[str]:
        """The boards whose firmware is connected to the broker now."""
        return [d for d, b in self.boards.items()
                if b.device is not None and b.device.mqtt is not None and b.device.mqtt.isconnected()]

    def power_on(self, dev_id: str) -> None:
        """Boot one board from its flash."""
        pending = self._pending_on.pop(dev_id, None)
        if pending is not None:
            pending.cancel()  # powered on by hand before its staggered turn
        board = self.boards[dev_id]
        board.on_reset = lambda reason, d=dev_id: self._schedule_reboot(d)
        board.on_sleep = lambda ms, d=dev_id: self._schedule_wake(d, ms)
        try:
            board.device = boot(board)
        except ValueError as e:  # a role this firmware build cannot run: the rest of the fleet goes on
            log.error("virtual board %s cannot boot: %s", dev_id, e)
            return
        if self.on_boot is not None:
            self.on_boot(board)
        task = asyncio.create_task(run_device(board.device), name=f"board:{dev_id}")
        task.add_done_callback(self._board_done)
        self._tasks[dev_id] = task

    def _board_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("virtual board %s crashed: %r", task.get_name(), task.exception())

    async def power_off(self, dev_id: str) -> None:
        """Cut power: no clean disconnect, so the broker fires the Will."""
        task = self._tasks.pop(dev_id, None)
        self.boards[dev_id].stop_watchdog()
        if task:
            self.boards[dev_id].set_wifi(False)
            # CPython 3.11's wait_for returns the inner result instead of raising when a
            # cancel lands in the same step as that result (gh-86296): a board's MQTT task
            # caught that way takes the cancel for a failed connect and retries forever.
            # So cancel until the board is really off.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            self.boards[dev_id].set_wifi(True)

    async def reboot(self, dev_id: str) -> None:
        """Power-cycle one board: what machine.reset() or the watchdog does to a real one."""
        await self.power_off(dev_id)
        self.power_on(dev_id)

    def _schedule_reboot(self, dev_id: str) -> None:
        # Called from inside the board (its firmware or its watchdog): reboot from a task of our own.
        if self._stopping:
            return  # powering everything off: a watchdog firing now must not bring a board back
        task = asyncio.get_running_loop().create_task(self.reboot(dev_id), name=f"reboot:{dev_id}")
        self._reboots.add(task)
        task.add_done_callback(self._reboots.discard)

    def _schedule_wake(self, dev_id: str, ms: int) -> None:
        # machine.deepsleep(): power off now (RAM lost, flash kept), boot again after ms.
        if self._stopping:
            return
        task = asyncio.get_running_loop().create_task(self._sleep_and_wake(dev_id, ms), name=f"sleep:{dev_id}")
        self._reboots.add(task)
        task.add_done_callback(self._reboots.discard)

    async def _sleep_and_wake(self, dev_id: str, ms: int) -> None:
        await self.power_off(dev_id)
        await asyncio.sleep(ms / 1000)
        if not self._stopping:
            self.power_on(dev_id)

    async def stop(self) -> None:
        """Power every board off (and keep it off)."""
        self._stopping = True
        for handle in self._pending_on.values():
            handle.cancel()
        self._pending_on.clear()
        for board in self.boards.values():
            board.stop_watchdog()
        for task in list(self._reboots):
            task.cancel()
        await asyncio.gather(*self._reboots, return_exceptions=True)
        for dev_id in list(self._tasks):
            await self.power_off(dev_id)

    def board(self, dev_id: str) -> VirtualBoard:
        return self.boards[dev_id]
