"""Water reading ingest: readings/s the controller commits from 5,000 sensors publishing as fast
as they can, beside the receive rate of a bare MQTT subscriber on the same broker in the same run.

Publishers are 20 MQTT clients each speaking for 250 sensor ids (QoS 1, 1,000 in flight), so the
load is not limited by connection count. The bare subscriber counts what the broker delivers
with no controller; the controller run counts rows committed to the readings table.
Goal (flood issue): at least 0.8 of the bare rate.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import threading
import time

import sqlalchemy as sa

from tests.bench.mqtt_timing import client
from tests.harness.broker import MosquittoBroker
from tests.harness.controller import SubprocessController

SENSORS = 5000
PUBLISHERS = 20
SECONDS = 5.0


def site_toml() -> str:
    lines = ["[sigap]", 'prefix = "sigap"', "", "[[sites]]", 'id = "kota"', 'name = "Kota bench"']
    for i in range(SENSORS):
        lines += ["", "[[devices]]", f'id = "wl-{i:04d}"', 'site = "kota"', 'role = "water"', f'name = "Pos {i}"',
                  "lat = -8.1", "lon = 112.16", "mount_mm = 4000",
                  "thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }"]
    return "\n".join(lines) + "\n"


def publish_flood(port: int, seconds: float) -> int:
    """Every publisher sends readings round-robin over its sensors until time is up; returns count."""
    stop = time.monotonic() + seconds
    counts = [0] * PUBLISHERS

    def run(p: int) -> None:
        c = client(port, f"bench-pub-{p}", max_inflight=1000)
        ids = [f"wl-{i:04d}" for i in range(p, SENSORS, PUBLISHERS)]
        seq = 0
        ts0 = int(time.time())
        while time.monotonic() < stop:
            seq += 1
            for dev in ids:
                body = json.dumps({"boot": 1, "seq": seq, "ts": ts0 + seq, "dist_mm": 3000 - seq % 50,
                                   "temp_c": 28.5, "batt_mv": 3950, "n": 5})
                c.publish(f"sigap/v1/dev/{dev}/evt/reading", body, qos=1)
                counts[p] += 1
                if time.monotonic() >= stop:
                    break
        c.loop_stop()
        c.disconnect()

    threads = [threading.Thread(target=run, args=(p,)) for p in range(PUBLISHERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def bare_rate(port: int) -> tuple[float, int]:
    got = [0]
    first = [0.0]
    last = [0.0]

    def on_msg(c, u, m):  # type: ignore[no-untyped-def]
        if not got[0]:
            first[0] = time.perf_counter()
        got[0] += 1
        last[0] = time.perf_counter()

    sub = client(port, "bench-bare", on_msg)
    sub.subscribe("sigap/v1/dev/+/evt/+", qos=1)
    time.sleep(0.5)
    sent = publish_flood(port, SECONDS)
    deadline = time.monotonic() + 30
    while got[0] < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    sub.loop_stop()
    sub.disconnect()
    return got[0] / max(last[0] - first[0], 1e-9), sent


def controller_rate(port: int, work: pathlib.Path, url: str) -> tuple[float, int, int]:
    cfg = work / "sites.toml"
    cfg.write_text(site_toml())
    db = work / "ingest.db"
    ctl = SubprocessController(cfg, db, url, work / "controller.log")
    ctl.start()
    engine = sa.create_engine(f"sqlite:///{db}")

    def committed() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM readings")).scalar() or 0)

    try:
        t0 = time.perf_counter()
        sent = publish_flood(port, SECONDS)
        # Keep counting until the controller has caught up (or 60 s more).
        deadline = time.monotonic() + 60
        n = committed()
        while n < sent and time.monotonic() < deadline:
            time.sleep(0.5)
            n = committed()
        elapsed = time.perf_counter() - t0
    finally:
        ctl.stop()
        engine.dispose()
    return n / elapsed, n, sent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        broker = MosquittoBroker(work / "broker").start()
        try:
            bare, bare_sent = bare_rate(broker.port)
            ingest, n, sent = controller_rate(broker.port, work, broker.url)
        finally:
            broker.stop()
    print(f"  load: {SENSORS} sensors via {PUBLISHERS} publishers, QoS 1, {SECONDS:.0f} s flood, Mosquitto on loopback")
    print(f"  bare subscriber receive rate : {bare:9.0f} msg/s ({bare_sent} sent)")
    print(f"  controller readings committed: {ingest:9.0f} readings/s ({n} of {sent} committed)")
    print(f"  ratio ingest/bare            : {ingest / bare:.2f}   (goal: at least 0.8)")


if __name__ == "__main__":
    main()
