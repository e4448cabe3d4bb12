"""The runtime core on virtual boards (the real firmware) and a real Mosquitto:
broker-timeout reboots, settings fallback, rebirth on a controller's return,
the status LED, the watchdog, and events kept through a long broker outage.

No controller runs here: test peers on the broker watch what the boards
publish and play the controller's `ctl/state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import pytest

from controller.config import parse_config
from firmware.core.settings import SETTINGS_GOOD
from protocol import wire
from simulator.board import VirtualBoard, wait_until
from simulator.fleet import Fleet
from tests.harness.broker import MosquittoBroker
from tests.harness.mqtt_peer import MqttPeer, Received

SITE = """
[sigap]
prefix = "sigap"

[[sites]]
id = "blitar-mpp"
name = "Mal Pelayanan Publik Kota Blitar"

[[sites.services]]
code = "A"
name = "Perekaman KTP-el"
agency = "Dispendukcapil"
open = "08:00"
close = "15:00"

[[sites.counters]]
id = "1"
name = "Loket 1"
services = ["A"]

[[devices]]
id = "loket-01"
site = "blitar-mpp"
role = "counter"
counter = "1"
"""

DEV = "loket-01"
STATE = wire.dev_topic("sigap", DEV, "state")


@contextlib.asynccontextmanager
async def counter_board(broker: MosquittoBroker, **settings: Any) -> AsyncIterator[tuple[Fleet, VirtualBoard]]:
    """A fleet of one counter board with extra settings, powered on; off at the end."""
    fleet = Fleet(parse_config(SITE), "127.0.0.1", broker.port)
    board = fleet.board(DEV)
    board.settings.update(settings)
    fleet.start()
    try:
        yield fleet, board
    finally:
        await fleet.stop()


def birth_where(**want: Any) -> Any:
    """Predicate: a birth (online state) whose fields include want."""

    def match(m: Received) -> bool:
        d = m.data
        return isinstance(d, dict) and d.get("online") is True and all(d.get(k) == v for k, v in want.items())

    return match


@pytest.mark.timeout(60)
async def test_board_reboots_when_broker_unreachable_for_broker_reboot_s_and_reports_why(broker):
    async with counter_board(broker, broker_reboot_s=2, mqtt_backoff_max_s=1) as (_fleet, board):
        await board.device_ready(timeout=10)
        first_boot = board.device.boot
        assert board.device.birth()["reset"] == "power"

        broker.kill()
        await wait_until(lambda: "broker_timeout" in board.resets, 15)
        broker.start()
        async with MqttPeer(broker.port, "test-watch") as peer:
            await peer.subscribe(STATE)
            m = await peer.wait_for(STATE, birth_where(reset="broker_timeout"), timeout=20)
        birth = wire.validate_state(m.data)
        assert birth["boot"] > first_boot and birth["role"] == "counter"
        assert "cfg_err" not in birth
        # The reason was for that boot only: flash holds none now.
        assert not board.storage.read("reset_reason")


@pytest.mark.timeout(60)
async def test_board_with_invalid_settings_runs_on_last_good_copy_and_reports_cfg_err(broker):
    async with MqttPeer(broker.port, "test-watch") as peer:
        await peer.subscribe(STATE)
        async with counter_board(broker) as (fleet, board):
            await board.device_ready(timeout=10)
            # The first broker connection proves the file: it becomes the good copy.
            await wait_until(lambda: board.storage.read(SETTINGS_GOOD) is not None, 10)
            good = json.loads(board.storage.read(SETTINGS_GOOD) or "{}")
            assert good["device_id"] == DEV and good["broker_port"] == broker.port

            # A hand edit breaks settings.json; the board is power-cycled.
            await fleet.power_off(DEV)
            board.settings["broker_port"] = str(broker.port)
            board.settings["keepalive_s"] = -1
            fleet.power_on(DEV)
            await board.device_ready(timeout=10)
            assert board.device.settings_source == "good"
            m = await peer.wait_for(STATE, birth_where(boot=2), timeout=10)
            assert m.data["cfg_err"] == ["type:broker_port", "range:keepalive_s"]
            wire.validate_state(m.data)
            # The bad file never replaces the good copy.
            assert json.loads(board.storage.read(SETTINGS_GOOD) or "{}") == good

            # With no good copy either, the board boots unconfigured and says so.
            await fleet.power_off(DEV)
            del board.storage.files[SETTINGS_GOOD]
            fleet.power_on(DEV)
            await board.wait_led("error", timeout=10)
            assert not board.device.configured
            assert board.display.lines == ["CONFIG ERROR", "type:broker_port"]


@pytest.mark.timeout(60)
async def test_birth_is_published_again_when_ctl_state_turns_online(broker):
    async with MqttPeer(broker.port, "test-ctl") as ctl:
        await ctl.subscribe(STATE)
        async with counter_board(broker) as (_fleet, board):
            await board.device_ready(timeout=10)
            first = await ctl.wait_for(STATE, birth_where(boot=1), timeout=10)
            start = ctl.mark(STATE)
            await ctl.publish(wire.ctl_state_topic("sigap"), {"online": True, "version": "test"}, retain=True)
            again = await ctl.wait_for(STATE, birth_where(boot=1), timeout=10, start=start)
            assert again.data["role"] == first.data["role"] == "counter"
            await wait_until(lambda: board.device.rebirths == 1, 5)
            # ctl/state going offline asks for nothing.
            await ctl.publish(wire.ctl_state_topic("sigap"), {"online": False}, retain=True)
            await ctl.publish(wire.ctl_state_topic("sigap"), {"online": True, "version": "test"}, retain=True)
            await wait_until(lambda: board.device.rebirths == 2, 5)


@pytest.mark.timeout(60)
async def test_status_led_follows_wifi_and_broker(broker):
    async with counter_board(broker, mqtt_backoff_max_s=1) as (_fleet, board):
        await board.wait_led("online", timeout=10)
        assert board.led_history == ["joining_broker", "online"]
        broker.kill()
        await board.wait_led("joining_broker", timeout=10)
        board.set_wifi(False)
        await board.wait_led("joining_wifi", timeout=10)
        broker.start()
        board.set_wifi(True)
        await board.wait_led("online", timeout=15)
        assert board.led_history[2:] == ["joining_broker", "joining_wifi", "joining_broker", "online"]


@pytest.mark.timeout(60)
async def test_watchdog_reboots_a_board_whose_role_task_died(broker):
    async with counter_board(broker) as (_fleet, board):
        board.watchdog_timeout_s = 1.0
        await board.device_ready(timeout=10)
        first = board.device
        role_task = first.health.task("role")
        assert role_task is not None
        role_task.cancel()  # as if the role had crashed
        await wait_until(lambda: "watchdog" in board.resets, 10)
        await wait_until(lambda: board.device is not first, 10)
        await board.device_ready(timeout=10)
        assert board.device.birth()["reset"] == "watchdog"
        assert board.device.boot == first.boot + 1


class PersistentWatcher:
    """A subscriber with a persistent session: the broker keeps QoS 1 messages
    for it while it is away, and across a broker crash once saved to disk."""

    def __init__(self, broker: MosquittoBroker, topic: str):
        self.broker = broker
        self.topic = topic
        self.got: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.subscribed.clear()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client(
                "127.0.0.1", self.broker.port, identifier="test-watch-persistent",
                protocol=aiomqtt.ProtocolVersion.V311, clean_session=False, keepalive=30,
            ) as client:
                await client.subscribe(self.topic, qos=1)
                self.subscribed.set()
                async for m in client.messages:
                    self.got.append(json.loads(bytes(m.payload)))
                    self.arrived.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def seqs(self, boot: int) -> set[int]:
        return {e["seq"] for e in self.got if e["boot"] == boot}

    async def wait_seqs(self, boot: int, want: set[int], timeout: float) -> None:
        async def _wait() -> None:
            while not want <= self.seqs(boot):
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_events_made_during_a_60_s_broker_outage_arrive_after_reconnect(broker):
    watcher = PersistentWatcher(broker, wire.dev_topic("sigap", DEV, "evt/#"))
    watcher.start()
    await asyncio.wait_for(watcher.subscribed.wait(), 10)
    async with counter_board(broker, mqtt_backoff_max_s=5) as (_fleet, board):
        await board.device_ready(timeout=10)
        boot = board.device.boot
        await board.press("next")
        await watcher.wait_seqs(boot, {1}, timeout=10)
        # The watcher's session must be on disk before the crash (autosave_interval 1).
        db = broker.workdir / "data" / "mosquitto.db"
        saved_after = time.time()
        await wait_until(lambda: db.exists() and db.stat().st_mtime > saved_after, 10)

        broker.kill()
        down = time.monotonic()
        await board.wait_offline(timeout=10)
        keys = ["next", "rate4", "recall", "skip", "done", "next"]
        for i, key in enumerate(keys):
            await board.press(key)
            # Spread the presses over the outage: the broker stays away 60 s in all.
            await asyncio.sleep(max(0.0, down + 60 * (i + 1) / len(keys) - 5 - time.monotonic()))
        assert board.device.mqtt.pending() == len(keys)  # all kept in the board's outbox
        await asyncio.sleep(max(0.0, down + 60 - time.monotonic()))
        assert "broker_timeout" not in board.resets  # 60 s is well under the default 900 s

        await watcher.stop()
        broker.start()
        watcher.start()
        want = set(range(1, len(keys) + 2))
        await watcher.wait_seqs(boot, want, timeout=60)
        await wait_until(lambda: board.device.mqtt.pending() == 0, 10)
        assert board.device.mqtt.stats["dropped"] == 0
        assert watcher.seqs(boot) == want  # every seq at least once, nothing unknown
        kinds = [("score" in e, e.get("key")) for e in sorted(watcher.got, key=lambda e: e["seq"])]
        assert (True, None) in kinds and (False, "skip") in kinds
    await watcher.stop()
