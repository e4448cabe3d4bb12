"""Fleet scale: 2,000 virtual boards (the real firmware, each with its own MQTT connection) in one process.

A private Mosquitto, the real controller as its own process (SIGAP_BENCH_CONTROLLER=0 leaves it
out), and a generated site config (tests/harness/big_site.py): half water boards reporting every
60 s, half counter keypads and number displays of 50 MPP sites. The fleet powers on staggered
over STAGGER_S; once every board is connected a steady period runs (SIGAP_BENCH_STEADY_S,
default 60 s) with nobody pressing anything. Printed: boards online, time to all-online (at the
boards and at the controller), MQTT messages/s through the broker (a subscriber on sigap/#, and
the broker's own $SYS counters), the simulator's CPU share (its event loop thread's CPU time /
wall time, and the whole bench process's), peak RSS and RAM per board, and the broker's and
controller's CPU share. SIGAP_BENCH_BOARDS changes the fleet size.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import resource
import tempfile
import threading
import time
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from controller.config import parse_config
from simulator.fleet import Fleet
from tests.harness.big_site import big_site_toml
from tests.harness.broker import MosquittoBroker
from tests.harness.controller import SubprocessController

BOARDS = int(os.environ.get("SIGAP_BENCH_BOARDS", "2000"))
STEADY_S = float(os.environ.get("SIGAP_BENCH_STEADY_S", "60"))
WITH_CONTROLLER = os.environ.get("SIGAP_BENCH_CONTROLLER", "1") != "0"
STAGGER_S = 2.0  # power-on spread: 1,000 boards/s
WATER_INTERVAL_S = 60  # 5x the production default, so the steady period carries readings
ONLINE_TIMEOUT_S = 300.0


def rss_kb() -> int:
    """This process's resident memory now (VmRSS), KiB."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SYS_TOPICS = ("$SYS/broker/publish/messages/received", "$SYS/broker/publish/messages/sent",
              "$SYS/broker/messages/received", "$SYS/broker/clients/connected")


class BrokerWatch:
    """A subscriber on sigap/# (counts what boards and controller publish) and on the broker's $SYS."""

    def __init__(self, port: int):
        self.count = 0
        self.sys: dict[str, float] = {}
        self._lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-watch")
        c.on_message = self._on_message
        connected = threading.Event()
        c.on_connect = lambda *a: connected.set()
        c.connect("127.0.0.1", port)
        c.loop_start()
        if not connected.wait(10):
            raise RuntimeError("the watching subscriber could not connect")
        # Only the counters read: every $SYS message sent to us would count as broker traffic too.
        c.subscribe([("sigap/#", 0)] + [(t, 0) for t in SYS_TOPICS])
        self.client = c

    def _on_message(self, c: Any, u: Any, m: Any) -> None:
        if m.topic.startswith("$SYS/"):
            try:
                self.sys[m.topic] = float(m.payload)
            except ValueError:
                pass
            return
        with self._lock:
            self.count += 1

    def expect_drop(self) -> None:
        """The broker is about to go: reconnect quietly (paho's own loop does it)."""
        self.client.reconnect_delay_set(0.2, 2)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def controller_online(url: str, want: int, timeout: float) -> float | None:
    """Seconds until the controller's sigap_devices_online gauge reaches want (None: never)."""
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=5) as http:
        while time.perf_counter() - t0 < timeout:
            try:
                text = (await http.get(f"{url}/metrics")).text
            except httpx.HTTPError:
                text = ""
            for line in text.splitlines():
                if line.startswith("sigap_devices_online ") and float(line.split()[1]) >= want:
                    return time.perf_counter() - t0
            await asyncio.sleep(0.5)
    return None


async def run_fleet(broker: MosquittoBroker, ctl: SubprocessController | None, watch: BrokerWatch) -> dict[str, Any]:
    cfg = parse_config(big_site_toml(BOARDS, interval_s=WATER_INTERVAL_S))
    roles: dict[str, int] = {}
    for d in cfg.devices:
        roles[d.role] = roles.get(d.role, 0) + 1
    rss_before = rss_kb()
    fleet = Fleet(cfg, "127.0.0.1", broker.port)
    out: dict[str, Any] = {"roles": roles, "rss_before_kb": rss_before}
    t0 = time.perf_counter()
    fleet.start(stagger_s=STAGGER_S)
    ctl_task = asyncio.create_task(controller_online(ctl.base_url, BOARDS, ONLINE_TIMEOUT_S)) if ctl else None
    try:
        while len(fleet.online()) < BOARDS and time.perf_counter() - t0 < ONLINE_TIMEOUT_S:
            await asyncio.sleep(0.1)
        out["all_online_s"] = time.perf_counter() - t0 if len(fleet.online()) == BOARDS else None
        out["online_at_start"] = len(fleet.online())
        if ctl_task is not None:
            ctl_s = await ctl_task
            out["ctl_online_s"] = ctl_s
        out["rss_online_kb"] = rss_kb()
        # Steady period: nobody presses; water boards report, everyone keeps alive.
        sys0 = dict(watch.sys)
        n0 = watch.count
        loop_cpu0, proc_cpu0 = time.thread_time(), time.process_time()
        broker_cpu0 = cpu_s(broker.proc.pid) if broker.proc else 0.0
        ctl_cpu0 = cpu_s(ctl.proc.pid) if ctl and ctl.proc else 0.0
        w0 = time.perf_counter()
        await asyncio.sleep(STEADY_S)
        wall = time.perf_counter() - w0
        out["steady_s"] = wall
        out["loop_cpu"] = (time.thread_time() - loop_cpu0) / wall
        out["proc_cpu"] = (time.process_time() - proc_cpu0) / wall
        out["broker_cpu"] = ((cpu_s(broker.proc.pid) if broker.proc else 0.0) - broker_cpu0) / wall
        out["ctl_cpu"] = ((cpu_s(ctl.proc.pid) if ctl and ctl.proc else 0.0) - ctl_cpu0) / wall if ctl else None
        out["sub_rate"] = (watch.count - n0) / wall
        sys1 = dict(watch.sys)
        for key, topic in (("pub_in", "$SYS/broker/publish/messages/received"),
                           ("pub_out", "$SYS/broker/publish/messages/sent"),
                           ("pkt_in", "$SYS/broker/messages/received")):
            a, b = sys0.get(topic), sys1.get(topic)
            out[key] = None if a is None or b is None else (b - a) / wall
        out["clients"] = sys1.get("$SYS/broker/clients/connected")
        out["online_at_end"] = len(fleet.online())
        stats = [b.device.mqtt.stats for b in fleet.boards.values() if b.device is not None and b.device.mqtt]
        out["connect_failures"] = sum(s["connect_failures"] for s in stats)
        out["disconnects"] = sum(s["disconnects"] for s in stats)
        out["dropped"] = sum(s["dropped"] for s in stats)
        out["rss_end_kb"] = rss_kb()
        # A broker restart (SIGKILL, start again on the same port): every board reconnects at
        # once, spread only by the firmware's back-off with full jitter.
        watch.expect_drop()
        broker.kill()
        await wait_for_count(lambda: len(fleet.online()) == 0, 30)
        f0 = sum(s["connect_failures"] for s in stats)
        t1 = time.perf_counter()
        broker.start()
        while len(fleet.online()) < BOARDS and time.perf_counter() - t1 < ONLINE_TIMEOUT_S:
            await asyncio.sleep(0.1)
        out["restart_online_s"] = time.perf_counter() - t1 if len(fleet.online()) == BOARDS else None
        out["restart_failures"] = sum(s["connect_failures"] for s in stats) - f0
    finally:
        t_stop = time.perf_counter()
        await fleet.stop()
        out["stop_s"] = time.perf_counter() - t_stop
    out["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return out


async def wait_for_count(predicate: Any, timeout: float) -> None:
    t0 = time.perf_counter()
    while not predicate() and time.perf_counter() - t0 < timeout:
        await asyncio.sleep(0.1)


def fmt_s(v: float | None) -> str:
    return "never" if v is None else f"{v:.1f} s"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        broker = MosquittoBroker(work / "broker", extra_conf="sys_interval 1\n").start()
        ctl = None
        try:
            watch = BrokerWatch(broker.port)
            if WITH_CONTROLLER:
                cfg_path = work / "sites.toml"
                cfg_path.write_text(big_site_toml(BOARDS, interval_s=WATER_INTERVAL_S))
                ctl = SubprocessController(cfg_path, work / "sigap.db", broker.url, work / "controller.log",
                                           env={"SIGAP_ADMIN_PASSWORD": "bench-only-password"})
                ctl.start()
            try:
                r = asyncio.run(run_fleet(broker, ctl, watch))
            finally:
                watch.close()
        finally:
            if ctl is not None:
                ctl.stop()
            broker.stop()
    roles = ", ".join(f"{n} {role}" for role, n in sorted(r["roles"].items()))
    per_board = (r["rss_online_kb"] - r["rss_before_kb"]) / BOARDS
    print(f"  fleet: {BOARDS} virtual boards ({roles}), one process, one MQTT connection each; "
          f"Mosquitto on loopback; {'controller as its own process' if WITH_CONTROLLER else 'no controller'}; "
          f"{os.cpu_count()} cores")
    print(f"  boards online                : {r['online_at_start']} of {BOARDS} after start, "
          f"{r['online_at_end']} at the end of the steady period ({r['clients']:.0f} clients at the broker)"
          if r["clients"] is not None else f"  boards online                : {r['online_at_end']} of {BOARDS}")
    print(f"  time to all online           : {fmt_s(r['all_online_s'])} (power-on staggered over {STAGGER_S:.0f} s)")
    if WITH_CONTROLLER:
        print(f"  ... seen online by controller: {fmt_s(r.get('ctl_online_s'))}")
    print(f"  steady period                : {r['steady_s']:.0f} s, water readings every {WATER_INTERVAL_S} s, "
          "keepalive 30 s, no presses")
    print(f"  MQTT through the broker      : {r['sub_rate']:.1f} msg/s at a sigap/# subscriber; $SYS: "
          f"PUBLISH in {r['pub_in'] or 0:.1f}/s, out {r['pub_out'] or 0:.1f}/s, all packets in {r['pkt_in'] or 0:.1f}/s")
    print(f"  simulator CPU                : {100 * r['loop_cpu']:.1f}% of one core (event loop thread; "
          f"whole bench process {100 * r['proc_cpu']:.1f}%)")
    print(f"  broker CPU                   : {100 * r['broker_cpu']:.1f}%"
          + (f"; controller CPU {100 * r['ctl_cpu']:.1f}%" if r["ctl_cpu"] is not None else ""))
    print(f"  memory                       : peak RSS {r['peak_rss_kb'] / 1024:.0f} MiB; "
          f"{per_board:.1f} KiB per board (RSS with all online minus RSS before the fleet)")
    print(f"  after a broker restart       : all {BOARDS} online again in {fmt_s(r.get('restart_online_s'))} "
          f"({r.get('restart_failures')} failed connects on the way; back-off with full jitter)")
    print(f"  links until the restart      : {r['connect_failures']} connect failures, "
          f"{r['disconnects']} disconnects, {r['dropped']} outbox drops; fleet stopped in {r['stop_s']:.1f} s")


if __name__ == "__main__":
    main()
