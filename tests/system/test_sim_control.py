"""The simulator's HTTP control (simulator/control.py) over a virtual fleet running the real
firmware, against a real broker and the real controller: what a person does over HTTP
reaches the boards and, through them, the controller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from controller.config import parse_config
from controller.service import Controller
from simulator.board import VirtualStorage, wait_until
from simulator.control import ControlServer
from simulator.fleet import Fleet
from tests.harness.controller import InProcessController, midday_timezone
from tests.harness.mqtt_peer import MqttPeer

SITE = f"""
[sigap]
prefix = "sigap"
public_url = "http://sigap.test"

[[sites]]
id = "mpp"
name = "MPP uji"
timezone = "{midday_timezone()}"

[[sites.services]]
code = "A"
name = "Perekaman KTP-el"
agency = "Dispendukcapil"
open = "06:00"
close = "18:00"

[[sites.services]]
code = "B"
name = "Kartu Keluarga"
agency = "Dispendukcapil"
open = "06:00"
close = "18:00"

[[sites.counters]]
id = "1"
name = "Loket 1"
services = ["A", "B"]

[[sites]]
id = "kota"
name = "Kota uji"

[[devices]]
id = "kiosk-01"
site = "mpp"
role = "kiosk"
services = ["A", "B"]

[[devices]]
id = "loket-01"
site = "mpp"
role = "counter"
counter = "1"

[[devices]]
id = "disp-01"
site = "mpp"
role = "display"
counters = ["1"]

[[devices]]
id = "wl-01"
site = "kota"
role = "water"
name = "Kali uji"
lat = -8.1
lon = 112.16
mount_mm = 4000
interval_s = 1
fast_interval_s = 1
thresholds_mm = {{ waspada = 1500, siaga = 2200, awas = 2800 }}
"""


@dataclass
class Rig:
    ctrl: Controller
    fleet: Fleet
    http: httpx.AsyncClient


@pytest.fixture
async def rig(broker, tmp_path) -> AsyncIterator[Rig]:
    """Controller, four virtual boards (all online) and an HTTP client of their control server."""
    cfg = parse_config(SITE)
    ctl = InProcessController(cfg, tmp_path / "sigap.db", broker.url)
    ctrl = await ctl.start()
    fleet = Fleet(cfg, "127.0.0.1", broker.port)
    fleet.boards["loket-01"].settings["transfer_to"] = ["B"]  # a transfer key: short and long press
    fleet.start()
    try:
        for b in fleet.boards.values():
            await b.device_ready(timeout=10)
        async with ControlServer(fleet, "127.0.0.1:0") as control, \
                httpx.AsyncClient(base_url=control.url, timeout=10) as http:
            yield Rig(ctrl, fleet, http)
    finally:
        await fleet.stop()
        await ctl.stop()


def online_at_controller(ctrl: Controller, dev_id: str) -> bool:
    d = ctrl.presence.devices.get(dev_id)
    return d is not None and d.online


@pytest.mark.timeout(30)
async def test_kiosk_key_pressed_over_http_prints_a_ticket_on_that_board(rig):
    r = await rig.http.post("/boards/kiosk-01/press", json={"key": "svc_A"})
    assert r.status_code == 200
    board = rig.fleet.board("kiosk-01")
    await wait_until(lambda: board.printed, 10)
    state = (await rig.http.get("/boards/kiosk-01")).json()
    assert state["printed"] == 1 and state["last_slip"]["big"] == ["A001"]
    assert state["role"] == "kiosk" and state["online"] is True
    assert state["keys"] == ["prio", "svc_A", "svc_B"]
    # The service's own name is a key too ("B" is wired to svc_B).
    assert (await rig.http.post("/boards/kiosk-01/press", json={"key": "B"})).status_code == 200
    await wait_until(lambda: len(board.printed) == 2, 10)
    assert board.printed[-1]["double"] == ["B001"]


@pytest.mark.timeout(30)
async def test_long_press_over_http_sends_the_counters_transfer(broker, rig):
    async with MqttPeer(broker.port, "test-watch") as peer:
        topic = peer.dev_topic("evt/press", "loket-01")
        await peer.subscribe(topic)
        r = await rig.http.post("/boards/loket-01/press", json={"key": "transfer", "long": True})
        assert r.status_code == 200
        m = await peer.wait_for(topic)
        assert m.data["key"] == "transfer" and m.data["to"] == "B"


@pytest.mark.timeout(40)
async def test_cut_wifi_takes_the_board_offline_at_the_controller_and_restore_brings_it_back(rig):
    await wait_until(lambda: online_at_controller(rig.ctrl, "disp-01"), 10)
    r = await rig.http.post("/boards/disp-01/wifi", json={"up": False})
    assert r.status_code == 200 and r.json()["wifi"] is False
    await wait_until(lambda: not online_at_controller(rig.ctrl, "disp-01"), 15)  # the broker sent the Will
    assert (await rig.http.get("/boards/disp-01")).json()["online"] is False
    assert (await rig.http.post("/boards/disp-01/wifi", json={"up": True})).status_code == 200
    await wait_until(lambda: online_at_controller(rig.ctrl, "disp-01"), 15)
    await wait_until(lambda: rig.fleet.board("disp-01").device.mqtt.isconnected(), 5)
    listed = {b["id"]: b for b in (await rig.http.get("/boards", params={"role": "display"})).json()}
    assert list(listed) == ["disp-01"] and listed["disp-01"]["online"] is True


@pytest.mark.timeout(30)
async def test_power_cycle_boots_the_board_again_and_it_comes_back_online(rig):
    boot = rig.fleet.board("loket-01").device.boot
    r = await rig.http.post("/boards/loket-01/power-cycle")
    assert r.status_code == 200 and r.json()["boot"] == boot + 1 and r.json()["powered"] is True
    await rig.fleet.board("loket-01").device_ready(timeout=10)
    await wait_until(lambda: rig.ctrl.presence.devices["loket-01"].boot == boot + 1, 10)
    assert online_at_controller(rig.ctrl, "loket-01")


@pytest.mark.timeout(30)
async def test_level_set_over_http_reaches_the_controller_as_readings(rig):
    r = await rig.http.post("/boards/wl-01/level", json={"mm": 2300})
    assert r.status_code == 200 and r.json()["level_mm"] == 2300

    def level_at_controller() -> int | None:
        view = next(v for v in rig.ctrl.water.sensor_views() if v["id"] == "wl-01")
        return view["level_mm"]

    await wait_until(lambda: (level_at_controller() or 0) > 2250, 15)
    assert abs(level_at_controller() - 2300) < 30  # measured through the echo, not copied
    # A ramp starts from the level now.
    r = await rig.http.post("/boards/wl-01/level", json={"to_mm": 3000, "over_s": 600})
    assert r.status_code == 200 and 2290 <= r.json()["level_mm"] <= 2310


@pytest.mark.timeout(30)
async def test_errors_name_the_problem(rig):
    r = await rig.http.get("/boards/kiosk-1")
    assert r.status_code == 404 and "kiosk-01" in r.json()["detail"]
    r = await rig.http.post("/boards/kioks-01/press", json={"key": "svc_A"})
    assert r.status_code == 404 and "did you mean kiosk-01" in r.json()["detail"]
    # Bad bodies.
    assert (await rig.http.post("/boards/kiosk-01/press", json={})).status_code == 422
    assert (await rig.http.post("/boards/kiosk-01/press", json={"key": "svc_A", "hold": 5})).status_code == 422
    assert (await rig.http.post("/boards/wl-01/level", json={"mm": 100, "to_mm": 200})).status_code == 422
    assert (await rig.http.post("/boards/wl-01/level", json={"to_mm": 200})).status_code == 422
    assert (await rig.http.post("/boards/wl-01/level", json={"mm": 5000})).status_code == 422  # above the sensor
    assert (await rig.http.post("/boards/wl-01/wifi", json={"up": "maybe"})).status_code == 422
    # Controls the board does not have.
    r = await rig.http.post("/boards/kiosk-01/press", json={"key": "next"})
    assert r.status_code == 409 and "svc_A" in r.json()["detail"]
    r = await rig.http.post("/boards/wl-01/press", json={"key": "siren"})
    assert r.status_code == 409 and "water" in r.json()["detail"]
    r = await rig.http.post("/boards/kiosk-01/level", json={"mm": 100})
    assert r.status_code == 409 and "kiosk" in r.json()["detail"]
    assert rig.fleet.board("kiosk-01").printed == []  # nothing of that reached a board


@pytest.mark.timeout(30)
async def test_fill_flash_fills_the_boards_storage_or_says_it_cannot(rig):
    r = await rig.http.post("/boards/wl-01/flash/fill", json={"free_bytes": 0})
    if not hasattr(VirtualStorage, "fill"):
        assert r.status_code == 501 and "fill" in r.json()["detail"]
        return
    assert r.status_code == 200 and r.json()["flash_free"] == 0
    with pytest.raises(OSError):
        rig.fleet.board("wl-01").storage.write("probe", "x" * 4096)
