"""SIGKILL the controller in the middle of a burst of water readings, restart it, and prove
that every reading the broker accepted is committed exactly once, in order per sensor.

The controller (its own process, real SQLite file) holds a persistent QoS 1 session and
acknowledges a reading only after the batch holding it is committed (group commit): what it
had received but not committed when killed, the broker delivers again; what it had
committed but not yet acknowledged comes again too and is recognised as a repeat.
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa

from tests.harness.controller import SubprocessController

SENSORS = 40
ROUNDS = 250
TOTAL = SENSORS * ROUNDS


def site_toml() -> str:
    lines = ["[sigap]", 'prefix = "sigap"', "", "[[sites]]", 'id = "kota"', 'name = "Kota uji"']
    for i in range(SENSORS):
        lines += ["", "[[devices]]", f'id = "wl-{i:02d}"', 'site = "kota"', 'role = "water"', f'name = "Pos {i}"',
                  "lat = -8.1", "lon = 112.16", "mount_mm = 4000",
                  "thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }"]
    return "\n".join(lines) + "\n"


def connected_client(port: int, client_id: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(200)
    up = threading.Event()
    c.on_connect = lambda *a: up.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not up.wait(10):
        raise TimeoutError(f"{client_id} could not connect")
    return c


class ControllerOnline:
    """Watches the retained ctl/state: set once the controller has subscribed and announced itself."""

    def __init__(self, port: int):
        self.online = threading.Event()
        self.client = connected_client(port, "test-watch")
        self.client.on_message = self._on_message
        self.client.subscribe("sigap/v1/ctl/state", qos=1)

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        if json.loads(msg.payload).get("online"):
            self.online.set()
        else:
            self.online.clear()

    def wait(self, timeout: float = 30) -> None:
        if not self.online.wait(timeout):
            raise TimeoutError("the controller did not come online")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_mid_burst_loses_no_delivered_reading_and_applies_none_twice(broker, tmp_path):
    cfg = tmp_path / "sites.toml"
    cfg.write_text(site_toml())
    db = tmp_path / "sigap.db"
    ctl = SubprocessController(cfg, db, broker.url, tmp_path / "controller.log")
    engine = sa.create_engine(f"sqlite:///{db}")

    def count() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM readings")).scalar() or 0)

    watch = ControllerOnline(broker.port)
    ctl.start()
    watch.wait()
    ts0 = int(time.time()) - ROUNDS - 60
    boards = [connected_client(broker.port, f"test-boards-{k}") for k in range(2)]
    try:
        # The burst: two clients speaking for 20 sensors each, every reading acknowledged by the broker.
        infos = []
        for seq in range(1, ROUNDS + 1):
            for i in range(SENSORS):
                body = json.dumps({"boot": 1, "seq": seq, "ts": ts0 + seq, "dist_mm": 3000 - seq % 40, "n": 5})
                infos.append(boards[i % 2].publish(f"sigap/v1/dev/wl-{i:02d}/evt/reading", body, qos=1))
        wait_until(lambda: count() >= TOTAL // 10, 60, "the controller committed nothing")
        ctl.kill()
        at_kill = count()
        assert at_kill < TOTAL, "the kill came after the whole burst: the test proves nothing"
        for info in infos:
            info.wait_for_publish(60)  # the broker has every reading

        ctl.start()
        watch.wait()
        # One more reading after the burst: once it is committed, the session has been drained.
        boards[0].publish("sigap/v1/dev/wl-00/evt/reading",
                          json.dumps({"boot": 1, "seq": ROUNDS + 1, "ts": ts0 + ROUNDS + 1, "dist_mm": 3000}),
                          qos=1).wait_for_publish(10)
        wait_until(lambda: count() >= TOTAL + 1, 120, "readings are missing after the restart")
        with engine.connect() as conn:
            applied = conn.execute(sa.text("SELECT COUNT(*) FROM applied_events WHERE kind = 'reading'")).scalar()
            twice = conn.execute(sa.text(
                "SELECT sensor, ts FROM readings GROUP BY sensor, ts HAVING COUNT(*) > 1")).all()
            order = conn.execute(sa.text("SELECT sensor, ts FROM readings ORDER BY id")).all()
    finally:
        for b in boards:
            b.loop_stop()
            b.disconnect()
        watch.close()
        ctl.stop()
        engine.dispose()

    assert count_of(order) == TOTAL + 1
    assert applied == TOTAL + 1
    assert twice == []
    # Each sensor's readings were committed in the order they were sent.
    by_sensor: dict[str, list[int]] = {}
    for sensor, ts in order:
        by_sensor.setdefault(sensor, []).append(ts)
    assert all(ts == sorted(ts) for ts in by_sensor.values())
    assert len(by_sensor["wl-01"]) == ROUNDS
    assert "Traceback" not in ctl.log_text()


def count_of(rows: list[object]) -> int:
    return len(rows)
