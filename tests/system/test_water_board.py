"""A virtual water board (the real firmware over a virtual JSN-SR04T, DS18B20,
battery and siren relay) on a real broker; no controller needed: the siren is
the board's own decision first.

The river is a level the test sets (board.set_level); the ranger's echoes
are timed for that water surface, so a reading's dist_mm is measured, not
copied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.config import parse_config
from firmware.core.runtime import Device, run_device
from firmware.roles.water import WaterRole
from firmware.tools.settings import board_settings
from protocol import wire
from simulator.board import VirtualBoard, VirtualStorage, wait_until
from tests.harness.mqtt_peer import MqttPeer

SITE = """
[sigap]
prefix = "sigap"

[[sites]]
id = "kota-blitar"
name = "Kota Blitar"

[[devices]]
id = "wl-lahar-02"
site = "kota-blitar"
role = "water"
name = "Kali Lahar, pos pantau 2"
lat = -8.0954
lon = 112.1609
mount_mm = 4000
interval_s = 1
fast_interval_s = 1
thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }
hysteresis_mm = 50
hold_s = 600
siren_mm = 2600
"""

DEV = "wl-lahar-02"


@pytest.fixture
async def water(broker) -> AsyncIterator[tuple[VirtualBoard, MqttPeer]]:
    """The water board running, and a peer that sees its readings."""
    settings = board_settings(parse_config(SITE), DEV, "127.0.0.1", broker.port)
    board = VirtualBoard(settings)
    board.set_level(1000, noise_mm=3)
    async with MqttPeer(broker.port, "test-watch") as peer:
        await peer.subscribe(peer.dev_topic("evt/reading", DEV))
        # Booted like runtime.boot() would, with the water role.
        board.device = Device(board)
        board.device.role = WaterRole(board.device)
        task = asyncio.create_task(run_device(board.device))
        try:
            await board.device_ready(timeout=10)
            yield board, peer
        finally:
            board.set_wifi(False)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def readings(peer: MqttPeer) -> list[dict[str, Any]]:
    return [m.data for m in peer.messages(peer.dev_topic("evt/reading", DEV))]


@pytest.mark.timeout(30)
async def test_board_publishes_measured_readings_at_its_interval(water):
    board, peer = water
    got = [m.data for m in await peer.wait_count(peer.dev_topic("evt/reading", DEV), 3, timeout=10)]
    for r in got:
        wire.validate_reading(r)
        assert abs(r["dist_mm"] - 3000) <= 15  # mount 4000 - level 1000, from echo timing
        assert r["n"] >= 3 and r["temp_c"] == 28.0 and 3300 <= r["batt_mv"] <= 4150
        assert abs(r["ts"] - time.time()) < 30
    assert [r["seq"] for r in got] == sorted(r["seq"] for r in got)
    # One reading per interval_s (1 s): three readings span about two seconds.
    assert 1 <= got[2]["ts"] - got[0]["ts"] <= 4
    assert not board.siren_on


@pytest.mark.timeout(30)
async def test_level_above_siren_mm_sounds_the_local_siren(water):
    board, peer = water
    board.set_level(2700)  # siren_mm 2600
    await wait_until(lambda: board.siren_on, 10)
    r = await peer.wait_for(peer.dev_topic("evt/reading", DEV), lambda m: m.data.get("dist_mm", 9999) < 1400)
    assert abs(r.data["dist_mm"] - 1300) <= 15


@pytest.mark.timeout(40)
async def test_siren_stays_on_through_a_network_cut_and_readings_arrive_afterwards(water):
    board, peer = water
    board.set_level(2900)
    await wait_until(lambda: board.siren_on, 10)
    board.set_wifi(False)
    await board.wait_offline()
    cut_at = time.time()
    spool = board.device.role.spool
    await wait_until(lambda: len(spool) >= 3, 15)  # kept on flash
    assert board.siren_on
    offline_seqs = set(range(spool.peek()["seq"], board.device.seq + 1))  # the spool is in seq order

    board.set_wifi(True)
    await board.device_ready(timeout=15)
    await wait_until(lambda: offline_seqs <= {r["seq"] for r in readings(peer)}, 15)
    late = [r for r in readings(peer) if r["seq"] in offline_seqs]
    assert all(r["ts"] >= int(cut_at) - 1 and abs(r["dist_mm"] - 1100) <= 15 for r in late)
    # The siren never stopped: one switch-on, no switch-off.
    assert [on for _, on in board.siren_history] == [False, True]


@pytest.mark.timeout(30)
async def test_cmd_siren_from_the_controller_turns_it_on_and_off(water):
    board, peer = water
    siren = peer.dev_topic("cmd/siren", DEV)
    await peer.publish(siren, {"on": True, "level": "awas"}, retain=True)
    await wait_until(lambda: board.siren_on, 10)
    await peer.publish(siren, {"on": False}, retain=True)
    await wait_until(lambda: not board.siren_on, 10)


class FullFlash(VirtualStorage):
    """A flash with no room left: every write raises OSError(28, ENOSPC)."""

    def write(self, name: str, text: str) -> None:
        raise OSError(28, "No space left on device")


@pytest.mark.timeout(30)
async def test_board_on_a_full_flash_keeps_measuring_sounding_and_sending(broker):
    settings = board_settings(parse_config(SITE), DEV, "127.0.0.1", broker.port)
    board = VirtualBoard(settings)
    board.storage = FullFlash()
    board.set_level(2700, noise_mm=3)  # above siren_mm 2600
    async with MqttPeer(broker.port, "test-watch") as peer:
        await peer.subscribe(peer.dev_topic("evt/reading", DEV), peer.dev_topic("state", DEV))
        board.device = Device(board)
        board.device.role = WaterRole(board.device)
        task = asyncio.create_task(run_device(board.device))
        try:
            got = await peer.wait_count(peer.dev_topic("evt/reading", DEV), 3, timeout=15)
            assert [m.data["seq"] for m in got[:3]] == [1, 2, 3]
            assert board.siren_on
            birth = await peer.wait_for(peer.dev_topic("state", DEV), lambda m: m.data.get("online") is True)
            assert birth.data["flash_err"] >= 1  # the boot counter, at least, could not be kept
            assert not task.done()
        finally:
            board.set_wifi(False)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
