"""Boards' presence (CONTRACT §1 `dev/{id}/state`, `ctl/state`) through the real broker.

Births mark a board online, a Will or clean shutdown offline; an offline state
from an older boot than the last birth is a late Will and is ignored. Unknown
ids are listed as unknown and never acted on.
"""

from __future__ import annotations

import logging

import pytest

from protocol import wire
from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import CTL_TOPIC, OPEN_HOURS, running_hall, topic, until_handled
from tests.harness.mqtt_peer import MqttPeer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def hall(broker, tmp_path):
    async with running_hall(broker, tmp_path, SettableClock(OPEN_HOURS)) as h:
        yield h


def device_row(hall, device_id: str) -> dict:
    rows = hall.rows("SELECT * FROM devices WHERE id = :id", id=device_id)
    assert len(rows) == 1
    row = rows[0]
    return row | {"known": bool(row["known"]), "online": bool(row["online"])}  # SQLite stores 0/1


async def test_birth_marks_device_online(hall):
    kiosk = await hall.peer("kiosk-01", boot=5)
    await kiosk.publish(kiosk.dev_topic("state"), wire.birth("kiosk", "1.2.3", 5, rssi=-61, heap=81234, up=3),
                        retain=True)
    devices = hall.ctrl.presence.devices
    await until_handled(hall.ctrl, lambda: "kiosk-01" in devices and devices["kiosk-01"].online)
    d = devices["kiosk-01"]
    assert (d.known, d.boot, d.fw, d.rssi, d.heap) == (True, 5, "1.2.3", -61, 81234)
    row = device_row(hall, "kiosk-01")
    assert (row["known"], row["online"], row["boot"], row["fw"]) == (True, True, 5, "1.2.3")
    assert hall.ctrl.presence.online_count() == 1


async def test_offline_state_from_older_boot_is_ignored(hall, caplog):
    caplog.set_level(logging.INFO, logger="sigap.presence")
    loket = await hall.peer("loket-01", boot=5)
    state = loket.dev_topic("state")
    devices = hall.ctrl.presence.devices
    await loket.birth("counter", boot=5)
    await until_handled(hall.ctrl, lambda: "loket-01" in devices and devices["loket-01"].online)

    # The Will of boot 4 arrives late, after boot 5's birth.
    n = hall.ctrl.handled
    await loket.publish(state, wire.offline(4), retain=True)
    await hall.ctrl.wait_handled(n + 1)
    assert devices["loket-01"].online and devices["loket-01"].boot == 5
    assert device_row(hall, "loket-01")["online"] is True
    assert any("stale" in r.getMessage() for r in caplog.records)

    # The same boot's offline state is applied.
    await loket.publish(state, wire.offline(5), retain=True)
    await until_handled(hall.ctrl, lambda: not devices["loket-01"].online)
    assert device_row(hall, "loket-01")["online"] is False


async def test_will_marks_device_offline_when_the_board_drops(hall):
    devices = hall.ctrl.presence.devices
    board = await hall.peer("disp-01", boot=3, will=(topic("disp-01", "state"), wire.offline(3)))
    await board.birth("display", boot=3)
    await until_handled(hall.ctrl, lambda: "disp-01" in devices and devices["disp-01"].online)
    await board.abort()  # TCP cut without DISCONNECT: the broker publishes the Will
    await until_handled(hall.ctrl, lambda: not devices["disp-01"].online)
    assert device_row(hall, "disp-01")["online"] is False


async def test_presence_and_stale_rule_survive_controller_restart(hall):
    kiosk = await hall.peer("kiosk-02", boot=9)
    await kiosk.birth("kiosk", boot=9)
    devices = hall.ctrl.presence.devices
    await until_handled(hall.ctrl, lambda: "kiosk-02" in devices and devices["kiosk-02"].online)
    await hall.stop_controller()
    await hall.start_controller()
    devices = hall.ctrl.presence.devices
    assert devices["kiosk-02"].online and devices["kiosk-02"].boot == 9
    n = hall.ctrl.handled
    await kiosk.publish(kiosk.dev_topic("state"), wire.offline(8), retain=True)
    await hall.ctrl.wait_handled(n + 1)
    assert devices["kiosk-02"].online


async def test_controller_state_is_retained_online_on_connect_and_offline_on_stop(hall):
    version = hall.ctrl.version
    board = await hall.peer("loket-02", subscribe_cmds=False)
    await board.subscribe(CTL_TOPIC)
    first = await board.wait_for(CTL_TOPIC, timeout=2)
    assert first.retain and first.data == {"online": True, "version": version}

    await hall.stop_controller()
    await board.wait_for(CTL_TOPIC, lambda m: m.data == {"online": False}, start=1)
    n = board.mark(CTL_TOPIC)
    await hall.start_controller()
    # A restarted controller announces itself: every board sees online again (and births again).
    await board.wait_for(CTL_TOPIC, lambda m: m.data == {"online": True, "version": version}, start=n)

    # A board that connects later gets the retained state at once.
    async with MqttPeer(hall.broker.port, "loket-03") as late:
        await late.subscribe(CTL_TOPIC)
        m = await late.wait_for(CTL_TOPIC, timeout=2)
        assert m.retain and m.data == {"online": True, "version": version}


async def test_unknown_device_is_listed_and_never_acted_on(hall):
    stranger = await hall.peer("stranger-01", boot=2)
    kiosk = await hall.peer("kiosk-01")
    await stranger.birth("kiosk", boot=2)
    await stranger.press("A", seq=1, boot=2)
    await stranger.press("next", seq=2, boot=2)
    # Handled in order: once the known kiosk's press is answered, the stranger's were seen.
    assert (await hall.ticket(kiosk, "A"))["ticket"] == "A001"

    d = hall.ctrl.presence.devices["stranger-01"]
    assert d.known is False and d.online is False  # its birth is not applied either
    row = device_row(hall, "stranger-01")
    assert row["known"] is False and row["online"] is False
    assert stranger.messages(stranger.dev_topic("cmd/ticket")) == []
    assert [r["label"] for r in hall.rows()] == ["A001"]
    assert hall.rows("SELECT * FROM applied_events WHERE device_id = 'stranger-01'") == []
    assert hall.rows("SELECT * FROM audit_log WHERE actor = 'stranger-01'") == []
