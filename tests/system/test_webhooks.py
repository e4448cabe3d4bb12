"""Webhooks: a receiver that is down, then up, gets every alert change once, in order."""

from __future__ import annotations

import asyncio
import json

import pytest

from controller.config import parse_config
from tests.harness.broker import free_port
from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import running_hall
from tests.system import test_water_controller as water


class Receiver:
    """A minimal HTTP endpoint on loopback that records each POST (asyncio, no framework)."""

    def __init__(self, port: int):
        self.port = port
        self.posts: list[tuple[str, dict]] = []
        self.changed = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(
            line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
        )
        headers = {k.lower(): v for k, v in headers.items()}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.posts.append((headers["x-sigap-delivery"], json.loads(body)))
        self.changed.set()
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    async def wait_posts(self, n: int, timeout: float = 20.0) -> None:
        async def _wait() -> None:
            while len(self.posts) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(_wait(), timeout)


@pytest.mark.timeout(60)
async def test_receiver_down_then_up_gets_every_alert_change_once(broker, tmp_path):
    port = free_port()
    toml = water._TOML.replace('prefix = "sigap"', f'prefix = "sigap"\nwebhooks = ["http://127.0.0.1:{port}/hook"]', 1)
    clock = SettableClock(water.START)
    async with running_hall(broker, tmp_path, clock, cfg=parse_config(toml)) as hall:
        ctrl = hall.ctrl
        ctrl.webhooks.backoff_base_s = 0.2
        ctrl.webhooks.backoff_max_s = 0.5
        board = water.WaterBoard(hall, await hall.peer(water.SENSOR), clock)
        # The river rises steadily through waspada to siaga while the receiver is down
        # (steps small enough that the spike filter accepts each reading).
        for level in (1000, 1200, 1400, 1600, 1800, 2000, 2200, 2300, 2350):
            await board.read(level)
            clock.advance(seconds=60)
        changes = ctrl.webhooks.pending()
        assert changes >= 2  # opened at waspada, escalated to siaga
        await asyncio.wait_for(_until(lambda: ctrl.webhooks.failures >= 2), 20)

        receiver = Receiver(port)
        await receiver.start()
        try:
            await receiver.wait_posts(changes)
            await asyncio.wait_for(_until(lambda: ctrl.webhooks.pending() == 0), 10)
            ids = [d for d, _ in receiver.posts]
            assert len(ids) == len(set(ids)) == changes  # each change once
            assert [int(i) for i in ids] == sorted(int(i) for i in ids)  # in order
            bodies = [b for _, b in receiver.posts]
            assert all(b["type"] == "alert" and b["alert"]["sensor"] == water.SENSOR for b in bodies)
            assert bodies[0]["action"] == "open"
            assert bodies[-1]["alert"]["level"] == "siaga"
        finally:
            await receiver.stop()


async def _until(pred) -> None:  # type: ignore[no-untyped-def]
    while not pred():
        await asyncio.sleep(0.05)
