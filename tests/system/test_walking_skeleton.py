"""The whole chain once: a staff member presses NEXT on a counter board, the
controller calls a ticket, and the number appears on the counter's display board.

Boards are virtual boards running the real firmware (its own MQTT client);
the broker is a real Mosquitto; the controller is the real one with SQLite.
"""

from __future__ import annotations

import asyncio

import pytest

from controller.config import parse_config
from simulator.board import wait_until
from simulator.fleet import Fleet
from tests.harness.controller import InProcessController, fixed_clock

SKELETON = """
[sigap]
prefix = "sigap"

[[sites]]
id = "blitar-mpp"
name = "Mal Pelayanan Publik Kota Blitar"
timezone = "Asia/Jakarta"

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
id = "kiosk-01"
site = "blitar-mpp"
role = "kiosk"
services = ["A"]

[[devices]]
id = "loket-01"
site = "blitar-mpp"
role = "counter"
counter = "1"

[[devices]]
id = "disp-01"
site = "blitar-mpp"
role = "display"
counters = ["1"]
"""

OPEN_HOURS = fixed_clock("2026-11-23T09:00:00+07:00")


@pytest.fixture
async def hall(broker, tmp_path):
    """Controller + three virtual boards (kiosk, counter, display) on a real broker."""
    cfg = parse_config(SKELETON)
    ctl = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=OPEN_HOURS)
    ctrl = await ctl.start()
    fleet = Fleet(cfg, "127.0.0.1", broker.port)
    fleet.start()
    for b in fleet.boards.values():
        await b.device_ready(timeout=10)
    try:
        yield ctrl, fleet
    finally:
        await fleet.stop()
        await ctl.stop()


async def take_ticket(fleet: Fleet, expect: str) -> None:
    kiosk = fleet.board("kiosk-01")
    await kiosk.press("svc_A")
    await kiosk.display.wait_for(lambda lines: lines[:1] == [expect], timeout=10)


@pytest.mark.timeout(30)
async def test_next_press_on_counter_shows_called_number_on_display(hall):
    ctrl, fleet = hall
    await take_ticket(fleet, "A001")
    await fleet.board("loket-01").press("next")
    lines = await fleet.board("disp-01").display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=10)
    assert lines == ["A001", "LOKET 1"]
    assert fleet.board("disp-01").display.chimes == 1
    # The counter board shows its own ticket too, and the snapshot agrees.
    await fleet.board("loket-01").display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=10)
    snap = ctrl.queues.snapshot("blitar-mpp")
    assert snap["counters"]["1"]["serving"] == "A001"
    assert snap["calls"][0]["ticket"] == "A001"


async def restart_broker(broker, ctrl, fleet) -> None:
    """Kill the broker (as a crash would), start it again, wait for everyone to notice."""
    broker.kill()
    for b in fleet.boards.values():
        await b.wait_offline(timeout=10)
    broker.start()
    await asyncio.wait_for(ctrl.bus.connected.wait(), 30)


@pytest.mark.timeout(60)
async def test_second_press_reaches_display_after_broker_restart(hall, broker):
    ctrl, fleet = hall
    await take_ticket(fleet, "A001")
    await take_ticket(fleet, "A002")
    await fleet.board("loket-01").press("next")
    await fleet.board("disp-01").display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=10)

    await restart_broker(broker, ctrl, fleet)
    counter = fleet.board("loket-01")
    await counter.device_ready(timeout=30)
    await counter.press("next")
    await fleet.board("disp-01").display.wait_for(lambda lines: lines[:1] == ["A002"], timeout=30)
    snap = ctrl.queues.snapshot("blitar-mpp")
    assert snap["counters"]["1"]["serving"] == "A002"
    assert [c["ticket"] for c in snap["calls"][:2]] == ["A002", "A001"]


@pytest.mark.timeout(60)
async def test_press_made_while_offline_is_delivered_after_broker_restart(hall, broker):
    ctrl, fleet = hall
    await take_ticket(fleet, "A001")
    counter = fleet.board("loket-01")

    # The counter's link is down across the broker restart; staff press NEXT anyway.
    counter.set_wifi(False)
    await restart_broker(broker, ctrl, fleet)
    await counter.press("next")
    assert counter.device.mqtt.pending() == 1  # kept in the board's outbox
    counter.set_wifi(True)

    await fleet.board("disp-01").display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=30)
    await counter.display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=10)
    assert ctrl.queues.snapshot("blitar-mpp")["counters"]["1"]["serving"] == "A001"


@pytest.mark.timeout(60)
async def test_boards_announce_themselves_again_when_the_controller_restarts(broker, tmp_path):
    cfg = parse_config(SKELETON)
    first = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=OPEN_HOURS)
    await first.start()
    fleet = Fleet(cfg, "127.0.0.1", broker.port)
    fleet.start()
    try:
        for b in fleet.boards.values():
            await b.device_ready(timeout=10)
        await first.stop()  # clean stop: ctl/state goes offline (retained)
        second = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=OPEN_HOURS)
        ctrl = await second.start()
        try:
            for dev_id, b in fleet.boards.items():
                await wait_until(lambda b=b: b.device.rebirths >= 1, 10)
                seen = ctrl.presence.devices[dev_id]
                assert seen.online and seen.boot == b.device.boot
        finally:
            await second.stop()
    finally:
        await fleet.stop()
