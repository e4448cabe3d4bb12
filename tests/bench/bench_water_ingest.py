"""Water reading ingest: readings/s the controller commits from 5,000 sensors publishing as fast
as they can, beside the receive rate of a bare MQTT subscriber on the same broker in the same run.

The load comes from its own processes (``water_load``: 4 MQTT clients each speaking for 1,250
sensor ids, QoS 1, 1,000 in flight), so neither the bare subscriber nor the controller shares a
process with it. Both phases get the same offered load: every sensor sends ``ROUNDS`` readings
(50,000 in all, below the broker's per-client queue limit, so nothing is dropped). Each rate is
the count divided by the same window: from the moment the load starts until the last message
is received (bare subscriber, auto-ack, nothing else) or until the last reading is committed
(controller: rows in its readings table, polled every 50 ms, so the window can only be too long).
Goal (flood issue): at least 0.8 of the bare rate.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from tests.bench.mqtt_timing import client
from tests.harness.broker import MosquittoBroker
from tests.harness.controller import ROOT, SubprocessController

SENSORS = 5000
ROUNDS = 10
LOADERS = 4
POLL_S = 0.05


def site_toml() -> str:
    lines = ["[sigap]", 'prefix = "sigap"', "", "[[sites]]", 'id = "kota"', 'name = "Kota bench"']
    for i in range(SENSORS):
        lines += ["", "[[devices]]", f'id = "wl-{i:04d}"', 'site = "kota"', 'role = "water"', f'name = "Pos {i}"',
                  "lat = -8.1", "lon = 112.16", "mount_mm = 4000",
                  "thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }"]
    return "\n".join(lines) + "\n"


class Load:
    """The load generator processes, connected and waiting for the start signal."""

    def __init__(self, port: int):
        self.procs = [
            subprocess.Popen([sys.executable, "-m", "tests.bench.water_load", str(port), str(i), str(LOADERS),
                              str(SENSORS), str(ROUNDS)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True)
            for i in range(LOADERS)
        ]
        for p in self.procs:
            if p.stdout is None or p.stdout.readline().strip() != "ready":
                raise RuntimeError("a load generator did not start")

    def go(self) -> float:
        """Start every generator at once; returns the start time (perf_counter)."""
        t0 = time.perf_counter()
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        return t0

    def wait(self) -> int:
        """Messages the broker acknowledged, over every generator."""
        sent = 0
        for p in self.procs:
            out, _ = p.communicate(timeout=300)
            sent += int(out.split()[-1])
        return sent


def until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(POLL_S)


def bare_rate(port: int) -> tuple[float, int, int]:
    """(msg/s, received, sent) of a subscriber that only counts."""
    got = [0, 0.0]
    expected = SENSORS * ROUNDS
    done = threading.Event()

    def on_msg(c, u, m):  # type: ignore[no-untyped-def]
        got[0] += 1
        if got[0] >= expected:
            got[1] = time.perf_counter()
            done.set()

    subscribed = threading.Event()
    sub = client(port, "bench-bare", on_msg)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe("sigap/v1/dev/+/evt/+", qos=1)
    subscribed.wait(10)
    load = Load(port)
    t0 = load.go()
    sent = load.wait()
    done.wait(120)
    sub.loop_stop()
    sub.disconnect()
    end = got[1] if done.is_set() else time.perf_counter()
    return got[0] / (end - t0), int(got[0]), sent


def controller_rate(port: int, work: pathlib.Path, url: str) -> tuple[float, int, int]:
    """(readings/s committed, committed, sent) of the controller in its own process."""
    cfg = work / "sites.toml"
    cfg.write_text(site_toml())
    db = work / "ingest.db"
    ctl = SubprocessController(cfg, db, url, work / "controller.log")
    online = threading.Event()
    watch = client(port, "bench-watch", lambda c, u, m: m.payload.startswith(b'{"online":true') and online.set())
    watch.subscribe("sigap/v1/ctl/state", qos=1)
    ctl.start()
    engine = sa.create_engine(f"sqlite:///{db}")

    def committed() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT COUNT(*) FROM readings")).scalar() or 0)

    expected = SENSORS * ROUNDS
    try:
        if not online.wait(60):
            raise RuntimeError("the controller did not come online")
        watch.loop_stop()
        watch.disconnect()
        load = Load(port)
        t0 = load.go()
        until(lambda: committed() >= expected, 120)
        end = time.perf_counter()
        n = committed()
        sent = load.wait()
    finally:
        ctl.stop()
        engine.dispose()
    return n / (end - t0), n, sent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        broker = MosquittoBroker(work / "broker").start()
        try:
            bare, got, bare_sent = bare_rate(broker.port)
            ingest, n, sent = controller_rate(broker.port, work, broker.url)
        finally:
            broker.stop()
    print(f"  load: {SENSORS} sensors × {ROUNDS} readings from {LOADERS} generator processes, QoS 1, "
          "Mosquitto on loopback")
    print(f"  bare subscriber receive rate : {bare:9.0f} msg/s ({got} of {bare_sent} received)")
    print(f"  controller readings committed: {ingest:9.0f} readings/s ({n} of {sent} committed)")
    print(f"  ratio ingest/bare            : {ingest / bare:.2f}   (goal: at least 0.8)")


if __name__ == "__main__":
    main()
