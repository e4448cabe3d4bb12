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

The CPU each party spent per message is printed beside the rates. The generators share the
machine's cores with the receiver, so when they saturate it each single-threaded receiver gets
about a fair share of a core and the ratio approaches the inverse ratio of their CPU per
message: the controller must spend at most 1.25 times what the bare subscriber spends.
"""

from __future__ import annotations

import os
import pathlib
import statistics
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
RUNS = 3
BROKER_CONF = "max_inflight_messages 1000\n"


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

    def wait(self) -> tuple[int, float]:
        """(messages the broker acknowledged, CPU seconds the generators used), over all of them."""
        sent, cpu = 0, 0.0
        for p in self.procs:
            out, _ = p.communicate(timeout=300)
            words = out.split()  # "done COUNT CPU_S"
            sent += int(words[-2])
            cpu += float(words[-1])
        return sent, cpu


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    """What one phase measured: rate, counts, window and CPU seconds per party."""

    def __init__(self, rate: float, got: int, sent: int, window: float, receiver: float, broker: float,
                 load: float):
        self.rate, self.got, self.sent, self.window = rate, got, sent, window
        self.receiver, self.broker, self.load = receiver, broker, load

    def cpu_line(self) -> str:
        us = 1e6 / max(self.got, 1)
        return (f"{self.window:6.2f} s   {self.receiver * us:6.1f} {self.broker * us:8.1f} {self.load * us:7.1f}")


def until(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(POLL_S)


def bare_rate(port: int, broker_pid: int) -> Phase:
    """A subscriber that only counts (in this process, its network loop in a thread)."""
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
    cpu0, broker0 = time.process_time(), cpu_s(broker_pid)
    t0 = load.go()
    sent, load_cpu = load.wait()
    done.wait(120)
    cpu1, broker1 = time.process_time(), cpu_s(broker_pid)
    sub.loop_stop()
    sub.disconnect()
    end = got[1] if done.is_set() else time.perf_counter()
    n = int(got[0])
    return Phase(n / (end - t0), n, sent, end - t0, cpu1 - cpu0, broker1 - broker0, load_cpu)


def controller_rate(port: int, broker_pid: int, work: pathlib.Path, url: str) -> Phase:
    """The controller in its own process: readings committed to its database."""
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
        assert ctl.proc is not None
        load = Load(port)
        cpu0, broker0 = cpu_s(ctl.proc.pid), cpu_s(broker_pid)
        t0 = load.go()
        until(lambda: committed() >= expected, 120)
        end = time.perf_counter()
        cpu1, broker1 = cpu_s(ctl.proc.pid), cpu_s(broker_pid)
        n = committed()
        sent, load_cpu = load.wait()
    finally:
        ctl.stop()
        engine.dispose()
    return Phase(n / (end - t0), n, sent, end - t0, cpu1 - cpu0, broker1 - broker0, load_cpu)


def main() -> None:
    runs: list[tuple[Phase, Phase]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(RUNS):
            # A fresh broker each run: the controller's persistent session would otherwise
            # collect the next bare phase's readings while it is away.
            work = pathlib.Path(tmp) / f"run{run + 1}"
            broker = MosquittoBroker(work / "broker", extra_conf=BROKER_CONF).start()
            try:
                assert broker.proc is not None
                bare = bare_rate(broker.port, broker.proc.pid)
                ingest = controller_rate(broker.port, broker.proc.pid, work, broker.url)
            finally:
                broker.stop()
            runs.append((bare, ingest))
    print(f"  load: {SENSORS} sensors × {ROUNDS} readings from {LOADERS} generator processes, "
          f"QoS 1, Mosquitto on loopback, {os.cpu_count()} CPUs; {RUNS} runs, each a bare phase then a "
          "controller phase")
    print("                                   rate                       window   CPU µs per message:")
    print("                                                                       receiver   broker    load")
    for i, (bare, ingest) in enumerate(runs, 1):
        print(f"  {i}  bare subscriber received : {bare.rate:6.0f} msg/s      ({bare.got} of {bare.sent}) "
              f"{bare.cpu_line()}")
        print(f"     controller committed     : {ingest.rate:6.0f} readings/s ({ingest.got} of {ingest.sent}) "
              f"{ingest.cpu_line()}")
        print(f"     ratio ingest/bare        : {ingest.rate / bare.rate:.2f}")
    ratios = sorted(ingest.rate / bare.rate for bare, ingest in runs)
    cpu = statistics.median((ingest.receiver / ingest.got) / (bare.receiver / bare.got) for bare, ingest in runs)
    print(f"  ratio ingest/bare, median of {RUNS} runs: {statistics.median(ratios):.2f} "
          f"(runs {', '.join(f'{r:.2f}' for r in ratios)}; goal: at least 0.8)")
    print(f"  controller CPU per reading / bare subscriber CPU per message, median: {cpu:.2f}")


if __name__ == "__main__":
    main()
