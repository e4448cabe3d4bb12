"""A battery water board that deep-sleeps between readings (site config
`sleep = true`): the real firmware in the simulator's Fleet (each wake is a
boot through the Fleet's power-on, reset cause "deepsleep"), a real broker
and the real controller in-process on the real clock, with its offline rule
(3 × interval_s without a reading) checked every 0.2 s.

interval_s is 2 s, so the offline rule would fire after 6 s of silence: every
test below runs longer than that, so "no offline alert" is a real check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.config import parse_config
from controller.service import utcnow
from firmware.core.spool import Spool
from firmware.roles.water import SPOOL_FILE
from protocol import wire
from simulator.board import VirtualBoard, wait_until
from simulator.fleet import Fleet
from tests.harness.mpp_hall import Hall, running_hall, until_handled
from tests.harness.mqtt_peer import MqttPeer

pytestmark = pytest.mark.timeout(90)

DEV = "wl-sleepy-01"
SITE = f"""
[sigap]
prefix = "sigap"

[[sites]]
id = "kota-blitar"
name = "Kota Blitar"

[[devices]]
id = "{DEV}"
site = "kota-blitar"
role = "water"
name = "Kali Lahar, pos pantau tenaga surya"
lat = -8.0954
lon = 112.1609
mount_mm = 4000
interval_s = 2
fast_interval_s = 1
thresholds_mm = {{ waspada = 1500, siaga = 2200, awas = 2800 }}
hysteresis_mm = 50
hold_s = 600
siren_mm = 2600
sleep = true
"""


class Site:
    """The controller, the fleet with the sleeping board, and a watcher peer."""

    def __init__(self, hall: Hall, fleet: Fleet, watch: MqttPeer):
        self.hall = hall
        self.fleet = fleet
        self.board: VirtualBoard = fleet.board(DEV)
        self.watch = watch

    def applied(self, boot: int, seq: int = 1) -> bool:
        return bool(self.hall.ctrl.store.applied(DEV, boot, seq)[0])

    def stored(self) -> list[dict[str, Any]]:
        return self.hall.rows("SELECT * FROM readings WHERE sensor = :s ORDER BY id", s=DEV)

    def alerts(self) -> list[dict[str, Any]]:
        return self.hall.rows("SELECT * FROM alerts WHERE sensor = :s", s=DEV)


@pytest.fixture
async def site(broker, tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr("controller.service.WATER_CHECK_S", 0.2)
    cfg = parse_config(SITE)
    async with running_hall(broker, tmp_path, utcnow, cfg=cfg) as hall:
        watch = await hall.peer("test-watch", subscribe_cmds=False)
        await watch.subscribe(watch.dev_topic("evt/reading", DEV), watch.dev_topic("state", DEV))
        fleet = Fleet(cfg, "127.0.0.1", broker.port, device_ids=[DEV])
        board = fleet.board(DEV)
        board.settings["awake_max_s"] = 1  # a wake without a broker gives up after 1 s
        board.set_level(1000, noise_mm=3)
        fleet.start()
        try:
            yield Site(hall, fleet, watch)
        finally:
            await fleet.stop()


async def test_sleeping_board_delivers_every_reading_once_and_raises_no_offline_alert(site):
    board, hall = site.board, site.hall
    await wait_until(lambda: len(board.sleeps) >= 5, 40)
    woke = len(board.sleeps)
    # Each wake is a boot with one reading (seq 1), delivered before it slept.
    await until_handled(hall.ctrl, lambda: all(site.applied(b) for b in range(1, woke + 1)), 15)
    states = [m.data for m in site.watch.messages(site.watch.dev_topic("state", DEV))]
    await site.fleet.stop()  # the Will of a board powered off mid-wake is not this test's business

    seen = [(r.data["boot"], r.data["seq"]) for r in site.watch.messages(site.watch.dev_topic("evt/reading", DEV))]
    assert len(seen) == len(set(seen)), "no reading twice"
    assert {(b, 1) for b in range(1, woke + 1)} <= set(seen)
    assert len(site.stored()) == len(set(seen))
    # Asleep on purpose, never a Will: every offline state carries sleep_s.
    offline = [s for s in states if not s["online"]]
    assert len(offline) >= woke - 1
    for s in offline:
        wire.validate_state(s)
        assert 1 <= s["sleep_s"] <= 2
    births = [s for s in states if s["online"]]
    assert births and all(s["reset"] in ("power", "deepsleep") for s in births)
    assert births[-1]["reset"] == "deepsleep"
    assert all(1000 <= ms <= 2000 for ms in board.sleeps)
    # Judged by its readings: online for the water service, no offline alert.
    assert hall.ctrl.water.online(DEV)
    assert site.alerts() == []
    assert not board.siren_on


async def test_broker_down_across_wakes_keeps_readings_on_flash_and_delivers_them_in_order(site, broker):
    board, hall = site.board, site.hall
    await until_handled(hall.ctrl, lambda: site.applied(1), 15)
    await wait_until(lambda: len(board.sleeps) >= 1, 15)
    broker.stop()
    cut = len(board.sleeps)
    await wait_until(lambda: len(board.sleeps) >= cut + 3, 40)  # three wakes with no broker
    spool = Spool(board.storage, SPOOL_FILE, 288)
    assert len(spool) >= 2  # kept on flash through deep sleep (RAM is lost at each)
    waiting = spool.peek()
    assert waiting is not None and waiting["boot"] > 1 and waiting["seq"] == 1
    broker.start()
    await wait_until(lambda: len(board.sleeps) >= cut + 5, 40)
    woke = len(board.sleeps)
    await until_handled(hall.ctrl, lambda: all(site.applied(b) for b in range(1, woke + 1)), 60)
    await site.fleet.stop()

    rows = site.stored()
    ts = [r["ts"] for r in rows]
    assert ts == sorted(ts), "stored in the order they were measured"
    # Readings from before, during and after the outage: each boot's one reading, once.
    applied = hall.rows("SELECT boot, seq FROM applied_events WHERE device_id = :d ORDER BY boot", d=DEV)
    assert len(applied) == len(rows) >= woke
    assert all(a["seq"] == 1 for a in applied)
    assert all(r["level_mm"] is not None and abs(r["level_mm"] - 1000) <= 20 for r in rows)
    # The controller could not hear while the broker was down: no offline alert, no level alert.
    assert site.alerts() == []
    assert hall.ctrl.water.online(DEV)


async def test_board_above_siren_mm_keeps_its_siren_on_with_no_network_and_stays_awake(site, broker):
    board = site.board
    await wait_until(lambda: len(board.sleeps) >= 1, 15)
    broker.stop()
    board.set_level(2900)  # siren_mm 2600
    await wait_until(lambda: board.siren_on, 20)
    slept = len(board.sleeps)
    device = board.device
    # Awake, reading at the fast interval, the siren on, the readings on flash.
    await wait_until(lambda: device.role is not None and len(device.role.spool) >= 3, 20)
    assert board.siren_on and board.device is device and len(board.sleeps) == slept
    assert device.role.period_ms() == 1000
    # The water goes down and the broker comes back: the readings go out, the
    # siren holds (hold_s 600) and the board stays awake meanwhile.
    board.set_level(1000)
    broker.start()
    await wait_until(lambda: len(device.role.spool) == 0 and device.role.sent >= 3, 30)
    assert board.siren_on and len(board.sleeps) == slept
