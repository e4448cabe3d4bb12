"""GET /api/devices (CONTRACT §4): the registry's boards and unknown ids, with presence; login required."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from protocol import wire
from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import OPEN_HOURS, Hall, running_hall, until_handled

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def hall(broker, tmp_path) -> AsyncIterator[Hall]:
    async with running_hall(broker, tmp_path, SettableClock(OPEN_HOURS), http=True) as h:
        yield h


async def _viewer(hall: Hall, http: httpx.AsyncClient) -> dict[str, str]:
    hall.ctrl.auth.add_user("pemantau", "lihat-saja-99", "viewer")
    r = await http.post("/api/token", data={"username": "pemantau", "password": "lihat-saja-99"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_devices_need_a_login(hall):
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as http:
        assert (await http.get("/api/devices")).status_code == 401
        r = await http.get("/api/devices", headers={"Authorization": "Bearer not.a.token"})
        assert r.status_code == 401


async def test_devices_list_registry_presence_and_unknown_ids(hall):
    devices = hall.ctrl.presence.devices
    kiosk = await hall.peer("kiosk-01", boot=7)
    await kiosk.publish(kiosk.dev_topic("state"), wire.birth("kiosk", "1.2.3", 7, rssi=-61, heap=81234, up=3),
                        retain=True)
    stranger = await hall.peer("stranger-01", boot=2)
    await stranger.birth("kiosk", boot=2)
    loket = await hall.peer("loket-01", boot=4)
    await loket.birth("counter", boot=4)
    await until_handled(hall.ctrl, lambda: all(
        k in devices for k in ("kiosk-01", "stranger-01", "loket-01")) and devices["loket-01"].online)
    await loket.publish(loket.dev_topic("state"), wire.offline(4), retain=True)
    await until_handled(hall.ctrl, lambda: not devices["loket-01"].online)

    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as http:
        r = await http.get("/api/devices", headers=await _viewer(hall, http))
    assert r.status_code == 200, r.text
    rows = {d["id"]: d for d in r.json()}
    registry = sorted(d.id for d in hall.cfg.devices)
    assert [d["id"] for d in r.json()] == registry + ["stranger-01"]

    k = rows["kiosk-01"]
    assert {key: k[key] for key in ("role", "site", "known", "online", "fw", "rssi", "heap", "boot")} == {
        "role": "kiosk", "site": hall.cfg.device("kiosk-01").site, "known": True, "online": True,
        "fw": "1.2.3", "rssi": -61, "heap": 81234, "boot": 7,
    }
    assert k["last_seen"] is not None and k["sleeping"] is False
    assert rows["loket-01"]["online"] is False and rows["loket-01"]["known"] is True
    s = rows["stranger-01"]
    assert (s["known"], s["online"], s["role"], s["site"]) == (False, False, None, None)
    never = [d for d in registry if d not in ("kiosk-01", "loket-01")]
    assert never and all(rows[d]["last_seen"] is None and rows[d]["online"] is False for d in never)


async def test_a_board_gone_to_deep_sleep_is_listed_sleeping(hall):
    devices = hall.ctrl.presence.devices
    kiosk = await hall.peer("kiosk-01", boot=3)
    await kiosk.birth("kiosk", boot=3)
    await until_handled(hall.ctrl, lambda: "kiosk-01" in devices and devices["kiosk-01"].online)
    await kiosk.publish(kiosk.dev_topic("state"), wire.offline(3, sleep_s=300), retain=True)
    await until_handled(hall.ctrl, lambda: not devices["kiosk-01"].online)
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as http:
        r = await http.get("/api/devices", headers=await _viewer(hall, http))
    k = next(d for d in r.json() if d["id"] == "kiosk-01")
    assert (k["online"], k["sleeping"], k["sleep_s"]) == (False, True, 300)
