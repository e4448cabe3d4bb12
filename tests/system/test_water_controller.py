"""Flood early warning (CONTRACT §1 evt/reading, cmd/siren, cmd/config, site/…/water, §3, §4)
through the real broker and the real controller.

The water boards are `MqttPeer`s publishing readings with exact (boot, seq) and
`ts`; the controller runs in-process with a `SettableClock` (moved by hand,
so hold times and the offline rule take no real time) and a real SQLite file.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from controller.config import parse_config
from protocol import wire
from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import Hall, metric, metric_in, running_hall, topic, until_handled
from tests.harness.mqtt_peer import MqttPeer

pytestmark = pytest.mark.timeout(60)

SITE = "kota-uji"
SENSOR = "wl-uji-01"
OTHER = "wl-uji-02"
"""A second water board whose siren follows SENSOR too (`sirens = [OTHER]`)."""
MOUNT = 4000
START = "2026-11-23T09:00:00+07:00"

_TOML = f"""
[sigap]
prefix = "sigap"

[[sites]]
id = "{SITE}"
name = "Kota Uji"

[[devices]]
id = "{SENSOR}"
site = "{SITE}"
role = "water"
name = "Kali Uji, pos pantau 1"
lat = -8.0954
lon = 112.1609
mount_mm = {MOUNT}
interval_s = 300
fast_interval_s = 30
thresholds_mm = {{ waspada = 1500, siaga = 2200, awas = 2800 }}
hysteresis_mm = 50
hold_s = 120
sirens = ["{OTHER}"]

[[devices]]
id = "{OTHER}"
site = "{SITE}"
role = "water"
name = "Kali Uji, pos pantau 2"
lat = -8.1
lon = 112.17
mount_mm = {MOUNT}
thresholds_mm = {{ waspada = 1500, siaga = 2200, awas = 2800 }}
"""

WATER = f"sigap/v1/site/{SITE}/water/{SENSOR}"


class WaterBoard:
    """A water board peer that publishes readings at the test clock's time."""

    def __init__(self, hall: Hall, peer: MqttPeer, clock: SettableClock):
        self.hall = hall
        self.peer = peer
        self.clock = clock

    def now(self) -> int:
        return int(self.clock().timestamp())

    async def publish(self, level: int | None = None, *, seq: int | None = None, ts: int | None = -1,
                      **extra: Any) -> int:
        """Publish one reading (ts: the clock's now unless given; None leaves it out); returns its seq."""
        seq = self.peer.next_seq() if seq is None else seq
        msg: dict[str, Any] = {"boot": self.peer.boot, "seq": seq}
        if ts is not None:
            msg["ts"] = self.now() if ts == -1 else ts
        if level is not None:
            msg["dist_mm"] = MOUNT - level
        msg.update(extra)
        await self.peer.publish(self.peer.dev_topic("evt/reading"), msg)
        return seq

    async def read(self, level: int | None = None, **kw: Any) -> int:
        """Publish one reading and wait until the controller has applied it."""
        seq = await self.publish(level, **kw)
        await self.hall.applied(self.peer.client_id, seq, self.peer.boot)
        return seq


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(START)


@pytest.fixture
async def hall(broker, tmp_path, clock):
    async with running_hall(broker, tmp_path, clock, cfg=parse_config(_TOML), http=True) as h:
        yield h


@pytest.fixture
async def watcher(hall) -> MqttPeer:
    w = await hall.peer("watcher", subscribe_cmds=False)
    await w.subscribe(f"sigap/v1/site/{SITE}/water/#", "sigap/v1/dev/+/cmd/#")
    return w


@pytest.fixture
async def board(hall, clock) -> WaterBoard:
    return WaterBoard(hall, await hall.peer(SENSOR), clock)


async def wait_status(w: MqttPeer, status: str, start: int = 0) -> dict[str, Any]:
    m = await w.wait_for(WATER, lambda m: m.data["status"] == status, start=start)
    wire.validate_water(dict(m.data))
    data: dict[str, Any] = m.data
    return data


def last(w: MqttPeer, t: str) -> dict[str, Any]:
    msgs = w.messages(t)
    assert msgs, f"nothing on {t}"
    data: dict[str, Any] = msgs[-1].data
    return data


def alert_rows(hall: Hall, kind: str = "level", sensor: str = SENSOR) -> list[dict[str, Any]]:
    return hall.rows("SELECT * FROM alerts WHERE kind = :k AND sensor = :s ORDER BY id", k=kind, s=sensor)


# ---------------------------------------------------------------- thresholds


async def test_crossings_up_are_immediate_and_awas_sounds_every_siren(hall, clock, watcher, board):
    siren_own, siren_other = topic(SENSOR, "cmd/siren"), topic(OTHER, "cmd/siren")
    for level, status in ((1000, "normal"), (1250, "normal"), (1500, "waspada"), (1750, "waspada"),
                          (2000, "waspada"), (2250, "siaga"), (2550, "siaga")):
        mark = watcher.mark(WATER)
        await board.read(level)
        msg = await wait_status(watcher, status, start=mark)
        assert msg["level_mm"] == level and msg["ts"] == board.now()
        clock.advance(seconds=30)
    assert not last(watcher, siren_own)["on"] and not last(watcher, siren_other)["on"]
    # Above waspada the board is asked for fast readings (retained cmd/config).
    cfg = await watcher.wait_for(topic(SENSOR, "cmd/config"), lambda m: m.data.get("fast") == 1)
    wire.validate_config(dict(cfg.data))
    assert cfg.data["mount_mm"] == MOUNT and cfg.data["siren_mm"] == 2800

    await board.read(2800)
    await wait_status(watcher, "awas")
    for t in (siren_own, siren_other):
        m = await watcher.wait_for(t, lambda m: m.data == {"on": True, "level": "awas"})
        wire.validate_siren(dict(m.data))
    # Retained: a siren board that connects only now still gets the command.
    late = await hall.peer(OTHER)
    m = await late.wait_for(siren_other, lambda m: m.data["on"])
    assert m.retain
    rows = alert_rows(hall)
    assert [(r["level"], r["state"]) for r in rows] == [("awas", "open")]


async def test_crossings_down_wait_for_hysteresis_and_hold(hall, clock, watcher, board):
    for level in (1000, 1250, 1500, 1750, 2000, 2250, 2550, 2800):
        await board.read(level)
        clock.advance(seconds=30)
    await wait_status(watcher, "awas")
    # Below awas but inside the hysteresis band (2750..2800): no hold starts.
    await board.read(2760)
    clock.advance(seconds=30)
    # Below the band: the 120 s hold starts at this reading.
    await board.read(2600)
    for _ in range(3):
        clock.advance(seconds=30)
        await board.read(2600)
        assert last(watcher, WATER)["status"] == "awas"
    mark = watcher.mark(WATER)
    clock.advance(seconds=30)  # 120 s below 2750
    await board.read(2600)
    await wait_status(watcher, "siaga", start=mark)
    for t in (topic(SENSOR, "cmd/siren"), topic(OTHER, "cmd/siren")):
        await watcher.wait_for(t, lambda m: m.data["on"] is False)
    # Down to normal: each latch is released after its own hold below its band.
    mark = watcher.mark(WATER)
    for level in (2350, 2100, 1850, 1600, 1350):  # below 2150 from 2100 on, below 1450 from 1350
        clock.advance(seconds=30)
        await board.read(level)
    assert all(m.data["status"] == "siaga" for m in watcher.messages(WATER)[mark:])
    clock.advance(seconds=30)
    await board.read(1100)  # 120 s below 2150
    await wait_status(watcher, "waspada", start=mark)
    for _ in range(3):
        clock.advance(seconds=30)
        await board.read(1100)
    await wait_status(watcher, "normal", start=mark)
    rows = alert_rows(hall)
    assert len(rows) == 1
    assert rows[0]["state"] == "resolved" and rows[0]["resolved_by"] == "system"
    actions = [r["action"] for r in hall.rows("SELECT action FROM audit_log ORDER BY id")
               if r["action"].startswith("alert_")]
    assert actions == ["alert_open"] + ["alert_update"] * 4 + ["alert_clear"]
    levels = [json.loads(r["detail"])["alert"]["level"] for r in hall.rows("SELECT detail FROM audit_log ORDER BY id")
              if json.loads(r["detail"]).get("alert")]
    assert levels == ["waspada", "siaga", "awas", "siaga", "waspada", "waspada"]
    assert hall.ctrl.store.verify_audit()[1] is None


async def test_level_oscillating_around_a_threshold_raises_one_alert(hall, clock, watcher, board):
    await board.read(1400)
    for i in range(12):
        clock.advance(seconds=30)
        await board.read(1530 if i % 2 == 0 else 1470)
    await wait_status(watcher, "waspada")
    statuses = [m.data["status"] for m in watcher.messages(WATER)]
    assert statuses.count("normal") >= 1 and "normal" not in statuses[statuses.index("waspada"):]
    rows = alert_rows(hall)
    assert len(rows) == 1 and rows[0]["state"] == "open" and rows[0]["level"] == "waspada"
    assert len(hall.rows("SELECT * FROM readings WHERE sensor = :s", s=SENSOR)) == 13


# ---------------------------------------------------------------- exactly once


async def test_redelivered_reading_is_stored_once_even_after_a_restart(hall, clock, board):
    seq = await board.read(1000)
    before = hall.ctrl.handled
    for _ in range(2):
        await board.publish(1000, seq=seq)
    await hall.ctrl.wait_handled(before + 2)
    assert metric(hall.ctrl, "sigap_events_duplicate_total") == 2
    await hall.stop_controller()
    await hall.start_controller()
    before = hall.ctrl.handled
    await board.publish(1000, seq=seq)
    await until_handled(hall.ctrl, lambda: metric(hall.ctrl, "sigap_events_duplicate_total") == 1)
    assert len(hall.rows("SELECT * FROM readings WHERE sensor = :s", s=SENSOR)) == 1
    assert metric(hall.ctrl, "sigap_readings_total") == 0
    # The restarted controller resumed the sensor: a new reading goes on from its state.
    clock.advance(seconds=300)
    await board.read(1010)
    assert len(hall.rows("SELECT * FROM readings WHERE sensor = :s", s=SENSOR)) == 2
    assert hall.ctrl.water.sensors[SENSOR].state.level_mm == 1010


async def test_state_and_open_alerts_survive_a_restart(hall, clock, watcher, board):
    for level in (1000, 1250, 1500, 1750):
        await board.read(level)
        clock.advance(seconds=30)
    await hall.stop_controller()
    await hall.start_controller()
    s = hall.ctrl.water.sensors[SENSOR].state
    assert (s.status, s.level_mm) == ("waspada", 1750)
    assert [a.level for a in hall.ctrl.water.book.open_alerts(SENSOR)] == ["waspada"]
    for level in (2000, 2250):
        await board.read(level)
        clock.advance(seconds=30)
    await wait_status(watcher, "siaga")
    assert [(r["level"], r["state"]) for r in alert_rows(hall)] == [("siaga", "open")]


async def test_a_clean_stop_writes_the_sensor_rows_that_wait(hall, clock, board):
    def row_level() -> Any:
        return hall.rows("SELECT level_mm FROM sensor_state WHERE sensor = :s", s=SENSOR)[0]["level_mm"]

    for level in (1000, 1005, 1010):  # the clock stands still: within the row's 5 s window
        await board.read(level)
    assert row_level() == 1000  # only the level moved: the row waits
    await hall.stop_controller()
    assert row_level() == 1010


# ---------------------------------------------------------------- backlog


async def test_two_hour_backlog_lands_in_order_without_a_false_alert(hall, clock, watcher, board):
    for _ in range(3):
        await board.read(1000)
        clock.advance(seconds=300)
    last_ts = board.now() - 300
    # The board is cut off for two hours and buffers a reading every 5 minutes,
    # among them a flood peak at siaga an hour ago that has passed.
    clock.advance(seconds=7200 - 300 + 60)
    await hall.ctrl.water.check(clock())
    await wait_status(watcher, "offline")
    levels = [1000, 1000, 1100, 1300, 1550, 1800, 2050, 2300, 2300, 2100, 1850, 1600, 1350, 1100,
              1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
    backlog = [(last_ts + 300 * (k + 1), lv) for k, lv in enumerate(levels)]
    mark = watcher.mark(WATER)
    for ts, lv in backlog:
        await board.publish(lv, ts=ts)
    await board.read(1000)  # live, after the backlog
    await wait_status(watcher, "normal", start=mark)
    assert all(m.data["status"] in ("normal", "offline") for m in watcher.messages(WATER))
    assert alert_rows(hall) == []
    assert [(r["state"]) for r in alert_rows(hall, "offline")] == ["resolved"]
    assert not any(m.data["on"] for m in watcher.messages(topic(SENSOR, "cmd/siren")))
    async with httpx.AsyncClient(base_url=hall.base_url) as http:
        r = await http.get(f"/api/sensors/{SENSOR}/readings", params={"since": last_ts - 3600})
    assert r.status_code == 200
    got = r.json()
    assert [(p["ts"], p["level_mm"]) for p in got] == (
        [(last_ts - 600, 1000), (last_ts - 300, 1000), (last_ts, 1000)] + backlog + [(board.now(), 1000)]
    )
    late = hall.rows("SELECT COUNT(*) AS n FROM readings WHERE late")
    assert late[0]["n"] >= 20


# ---------------------------------------------------------------- bad readings


async def test_bad_readings_are_rejected_and_counted(hall, clock, board):
    await board.read(1000)
    bad = [
        ({"err": "no_echo"}, "err:no_echo"),
        ({"dist_mm": MOUNT + 300}, "negative_level"),
        ({"dist_mm": 0}, "above_mount"),
        ({"dist_mm": 3000, "temp_c": 120.0}, "absurd_temp"),
        ({"dist_mm": 3000, "ts": board.now() + 3600}, "future_ts"),
    ]
    for extra, _ in bad:
        clock.advance(seconds=30)
        await board.read(**extra)
    before = hall.ctrl.handled
    await board.publish(ts=board.now())  # neither dist_mm nor err: bad at the edge
    await hall.ctrl.wait_handled(before + 1)
    async with httpx.AsyncClient(base_url=hall.base_url) as http:
        text = (await http.get("/metrics")).text
    for _, reason in bad:
        assert metric_in(text, "sigap_readings_rejected_total", reason=reason) == 1, reason
    assert metric_in(text, "sigap_mqtt_rejected_total", reason="missing:dist_mm") == 1
    assert metric_in(text, "sigap_readings_total") == 1 + len(bad)
    rows = hall.rows("SELECT * FROM readings WHERE sensor = :s", s=SENSOR)
    assert [r["level_mm"] for r in rows] == [1000]
    assert hall.ctrl.water.sensors[SENSOR].state.level_mm == 1000


async def test_reading_without_ts_gets_the_arrival_time(hall, clock, board):
    await board.read(1200, ts=None)
    rows = hall.rows("SELECT ts, level_mm FROM readings")
    assert rows == [{"ts": board.now(), "level_mm": 1200}]


# ---------------------------------------------------------------- offline


async def test_offline_after_three_intervals_and_back_online(hall, clock, watcher, board):
    await board.read(1000)
    await wait_status(watcher, "normal")
    clock.advance(seconds=3 * 300 - 1)
    await hall.ctrl.water.check(clock())
    assert hall.ctrl.water.online(SENSOR)
    mark = watcher.mark(WATER)
    clock.advance(seconds=2)
    await hall.ctrl.water.check(clock())
    msg = await wait_status(watcher, "offline", start=mark)
    assert msg["level_mm"] == 1000
    rows = alert_rows(hall, "offline")
    assert [r["state"] for r in rows] == ["open"]
    async with httpx.AsyncClient(base_url=hall.base_url) as http:
        view = {s["id"]: s for s in (await http.get("/api/sensors")).json()}
    assert view[SENSOR]["online"] is False and view[SENSOR]["status"] == "offline"
    await board.read(1020)
    await wait_status(watcher, "normal", start=mark)
    assert [r["state"] for r in alert_rows(hall, "offline")] == ["resolved"]
    assert hall.ctrl.water.online(SENSOR)


async def test_periodic_check_runs_on_its_own(hall, clock, watcher, board, monkeypatch):
    await board.read(1000)
    await hall.stop_controller()
    monkeypatch.setattr("controller.service.WATER_CHECK_S", 0.05)
    await hall.start_controller()
    clock.advance(seconds=3 * 300 + 1)
    await watcher.wait_for(WATER, lambda m: m.data["status"] == "offline")
    assert [r["state"] for r in alert_rows(hall, "offline")] == ["open"]


# ---------------------------------------------------------------- HTTP


async def test_sensors_and_readings_over_http(hall, clock, board):
    t0 = board.now()
    await board.read(1270)
    clock.advance(seconds=300)
    await board.read(1300)
    async with httpx.AsyncClient(base_url=hall.base_url) as http:
        sensors = (await http.get("/api/sensors")).json()
        assert [s["id"] for s in sensors] == [SENSOR, OTHER]
        s = sensors[0]
        assert set(s) == {"id", "site", "name", "lat", "lon", "level_mm", "status", "rate_mm_h", "ts", "online"}
        assert (s["site"], s["name"], s["lat"], s["lon"]) == (SITE, "Kali Uji, pos pantau 1", -8.0954, 112.1609)
        assert (s["level_mm"], s["status"], s["ts"], s["online"]) == (1300, "normal", t0 + 300, True)
        assert sensors[1]["online"] is False and sensors[1]["level_mm"] is None

        assert (await http.get(f"/api/sensors/{SENSOR}/readings")).json() == [
            {"ts": t0, "level_mm": 1270}, {"ts": t0 + 300, "level_mm": 1300}]
        iso = clock().isoformat()
        r = await http.get(f"/api/sensors/{SENSOR}/readings", params={"since": iso})
        assert r.json() == [{"ts": t0 + 300, "level_mm": 1300}]
        r = await http.get(f"/api/sensors/{SENSOR}/readings", params={"until": str(t0)})
        assert r.json() == [{"ts": t0, "level_mm": 1270}]
        assert (await http.get("/api/sensors/nope/readings")).status_code == 404
        r = await http.get(f"/api/sensors/{SENSOR}/readings", params={"since": "yesterday"})
        assert r.status_code == 422 and "since" in r.text
        r = await http.get(f"/api/sensors/{SENSOR}/readings", params={"since": t0 + 10, "until": t0})
        assert r.status_code == 422 and "after" in r.text


async def test_long_ranges_are_answered_from_five_minute_aggregates(hall, clock, board):
    t0 = board.now() - board.now() % 300
    clock.now = clock.now.fromtimestamp(t0, clock.now.tzinfo)
    for level in (1000, 1060, 1030):  # one bucket: 0 s, 100 s, 200 s
        await board.read(level)
        clock.advance(seconds=100)
    await board.read(1090)  # the next bucket
    async with httpx.AsyncClient(base_url=hall.base_url) as http:
        r = await http.get(f"/api/sensors/{SENSOR}/readings", params={"since": t0 - 3 * 86400})
    assert r.json() == [
        {"ts": t0, "level_mm": 1030, "min_mm": 1000, "max_mm": 1060, "n": 3},
        {"ts": t0 + 300, "level_mm": 1090, "min_mm": 1090, "max_mm": 1090, "n": 1},
    ]


# ---------------------------------------------------------------- alerts over HTTP


async def _token(http: httpx.AsyncClient, user: str, password: str) -> dict[str, str]:
    r = await http.post("/api/token", data={"username": user, "password": password})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "bearer"
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_alerts_are_listed_acked_and_resolved_by_operators(hall, clock, board):
    for level in (1000, 1250, 1500):
        await board.read(level)
        clock.advance(seconds=30)
    auth = hall.ctrl.auth
    assert auth.generated_password
    auth.add_user("budi", "lihat-saja-1", "viewer")
    auth.add_user("sari", "operator-rahasia", "operator")
    async with httpx.AsyncClient(base_url=hall.base_url) as http:
        assert (await http.get("/api/alerts")).status_code == 401
        r = await http.post("/api/token", data={"username": "admin", "password": "wrong"})
        assert r.status_code == 401
        admin = await _token(http, "admin", auth.generated_password)
        viewer = await _token(http, "budi", "lihat-saja-1")
        op = await _token(http, "sari", "operator-rahasia")
        assert (await http.get("/api/alerts", headers={"Authorization": "Bearer forged.token"})).status_code == 401

        listed = (await http.get("/api/alerts", params={"state": "open"}, headers=viewer)).json()
        assert [(a["kind"], a["sensor"], a["level"], a["state"], a["site"]) for a in listed] == [
            ("level", SENSOR, "waspada", "open", SITE)]
        alert_id = listed[0]["id"]
        assert {"id", "kind", "sensor", "level", "state", "opened", "acked_by"} <= set(listed[0])
        assert (await http.post(f"/api/alerts/{alert_id}/ack", headers=viewer)).status_code == 403

        r = await http.post(f"/api/alerts/{alert_id}/ack", json={"note": "petugas menuju lokasi"}, headers=op)
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["acked_by"], r.json()["note"]) == (
            "acknowledged", "sari", "petugas menuju lokasi")
        assert (await http.post(f"/api/alerts/{alert_id}/ack", headers=op)).status_code == 409
        assert (await http.get("/api/alerts", params={"state": "open"}, headers=viewer)).json() == []

        # Escalation to siaga asks again: the alert is open once more.
        for level in (1750, 2000, 2250):
            await board.read(level)
            clock.advance(seconds=30)
        listed = (await http.get("/api/alerts", params={"state": "open"}, headers=admin)).json()
        assert [(a["id"], a["level"], a["acked_by"]) for a in listed] == [(alert_id, "siaga", None)]

        r = await http.post(f"/api/alerts/{alert_id}/resolve", headers=op)
        assert (r.json()["state"], r.json()["resolved_by"]) == ("resolved", "sari")
        assert (await http.post(f"/api/alerts/{alert_id}/resolve", headers=op)).status_code == 409
        assert (await http.post("/api/alerts/999/ack", headers=op)).status_code == 404
        assert (await http.get("/api/alerts", params={"state": "bogus"}, headers=op)).status_code == 422
    rows = alert_rows(hall)
    assert [(r["state"], r["resolved_by"]) for r in rows] == [("resolved", "sari")]
    actions = [r["action"] for r in hall.rows("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["alert_open", "alert_ack", "alert_escalate", "alert_resolve"]
    assert hall.ctrl.store.verify_audit()[1] is None


async def test_steady_rise_below_waspada_raises_a_rate_alert(broker, tmp_path):
    """A river rising 900 mm/h is an alert before it reaches any threshold."""
    toml = _TOML.replace("hold_s = 120\n", "hold_s = 120\nrate_alert_mm_h = 500\n", 1)
    clock = SettableClock(START)
    async with running_hall(broker, tmp_path, clock, cfg=parse_config(toml)) as hall:
        board = WaterBoard(hall, await hall.peer(SENSOR), clock)
        level = 400
        for _ in range(20):  # one reading a minute, +15 mm each: 900 mm/h
            await board.read(level)
            clock.advance(seconds=60)
            level += 15
        alerts = hall.ctrl.water.book.open_alerts(SENSOR)
        kinds = {a.kind for a in alerts}
        assert "rate" in kinds, alerts
        assert "level" not in kinds  # still far below waspada (1500 mm)
        state = hall.ctrl.water.sensors[SENSOR].state
        assert state.status == "normal" and state.rate_mm_h is not None and 700 < state.rate_mm_h < 1100


async def test_raw_readings_past_retention_are_pruned_and_aggregates_kept(hall, clock, board):
    await board.read(1000)
    clock.advance(days=91)
    await board.read(1010)
    before = hall.rows("SELECT COUNT(*) AS n FROM readings_5min")[0]["n"]
    assert hall.ctrl.water.prune(clock()) == 1  # the reading from 91 days ago (retention 90 days)
    assert [r["level_mm"] for r in hall.rows("SELECT level_mm FROM readings ORDER BY ts")] == [1010]
    assert hall.rows("SELECT COUNT(*) AS n FROM readings_5min")[0]["n"] == before


async def test_a_level_waiting_for_its_window_goes_out_at_a_clean_shutdown(hall, clock, watcher, board):
    hall.ctrl.water.level_window_s = 3600  # nothing leaves by the timer during this test
    await board.read(1000)
    msg = await wait_status(watcher, "normal")
    assert msg["level_mm"] == 1000
    clock.advance(seconds=30)
    await board.read(1010)  # level only: waits for the window's end
    assert hall.ctrl.water.levels_waiting == 1
    assert [m.data["level_mm"] for m in watcher.messages(WATER)] == [1000]
    await hall.stop_controller()
    m = await watcher.wait_for(WATER, lambda m: m.data["level_mm"] == 1010)
    assert m.data["status"] == "normal"
    # Retained: a viewer arriving later gets the final level.
    late = await hall.peer("late-viewer", subscribe_cmds=False)
    await late.subscribe(WATER)
    got = await late.wait_for(WATER)
    assert got.data["level_mm"] == 1010
