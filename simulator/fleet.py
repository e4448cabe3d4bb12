"""A fleet of virtual boards built from a site config, each running the real firmware."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from firmware.core.runtime import boot, run_device
from firmware.tools.settings import board_settings
from simulator.board import VirtualBoard

log = logging.getLogger("sigap.simulator")


class Fleet:
    """Virtual boards for (some of) the devices of a site config."""

    def __init__(self, cfg: Any, broker_host: str, broker_port: int, device_ids: list[str] | None = None,
                 wall_clock: Callable[[], float] | None = None):
        self.cfg = cfg
        self.boards: dict[str, VirtualBoard] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._reboots: set[asyncio.Task[None]] = set()  # power cycles a board's reset asked for
        self._stopping = False
        self.on_boot: Callable[[VirtualBoard], None] | None = None  # called after each boot, before it runs
        ids = device_ids if device_ids is not None else [d.id for d in cfg.devices]
        for dev_id in ids:
            settings = board_settings(cfg, dev_id, broker_host, broker_port)
            self.boards[dev_id] = VirtualBoard(settings)
            if wall_clock is not None:
                self.boards[dev_id].wall_clock = wall_clock  # the boards' NTP time, for a scenario clock

    def supported(self, dev_id: str) -> bool:
        """Roles whose firmware exists in this version."""
        return self.boards[dev_id].settings["role"] in ("counter", "display", "kiosk", "water")

    def start(self) -> None:
        """Power every board on."""
        self._stopping = False
        for dev_id in self.boards:
            if self.supported(dev_id):
                self.power_on(dev_id)

    def power_on(self, dev_id: str) -> None:
        """Boot one board from its flash."""
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
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
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
        for board in self.boards.values():
            board.stop_watchdog()
        for task in list(self._reboots):
            task.cancel()
        await asyncio.gather(*self._reboots, return_exceptions=True)
        for dev_id in list(self._tasks):
            await self.power_off(dev_id)

    def board(self, dev_id: str) -> VirtualBoard:
        return self.boards[dev_id]
