"""Many virtual boards in one process, each its own MQTT connection, on a real broker: they all
come online and each announces itself with its birth. (The 2,000-board figures are in
tests/bench/bench_fleet_scale.py; this proves the mechanics at 200 quickly.)"""

from __future__ import annotations

import pytest

from controller.config import parse_config
from protocol import wire
from simulator.board import wait_until
from simulator.fleet import Fleet
from tests.harness.big_site import big_site_toml
from tests.harness.mqtt_peer import MqttPeer

BOARDS = 200


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_200_boards_all_come_online_and_each_publishes_its_birth(broker):
    cfg = parse_config(big_site_toml(BOARDS))
    assert len(cfg.devices) == BOARDS
    fleet = Fleet(cfg, "127.0.0.1", broker.port)
    async with MqttPeer(broker.port, "test-watch") as peer:
        await peer.subscribe(wire.dev_topic("sigap", "+", "state"))
        topics = {d: peer.dev_topic("state", d) for d in fleet.boards}

        def births() -> dict[str, dict]:
            out = {}
            for dev_id, topic in topics.items():
                for m in peer.messages(topic):
                    if m.data and m.data.get("online") is True:
                        out[dev_id] = m.data
            return out

        fleet.start(stagger_s=1.0)  # 200 boards/s, as the power returns to a site
        try:
            await wait_until(lambda: len(fleet.online()) == BOARDS, 40)
            await wait_until(lambda: len(births()) == BOARDS, 10)
            got = births()
            for dev_id, board in fleet.boards.items():
                assert got[dev_id]["role"] == board.settings["role"]
                assert got[dev_id]["boot"] == 1
        finally:
            await fleet.stop()
