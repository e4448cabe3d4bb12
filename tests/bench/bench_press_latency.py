"""Kiosk press → cmd/ticket latency at 50 presses/s, beside the bare broker round trip.

Both are measured in the same run on the same private Mosquitto:
- bare: a client publishes (QoS 1) to a topic, an echo client answers (QoS 1),
  no controller involved: the floor any request/answer over MQTT pays;
- press: five kiosks (MQTT clients speaking the device protocol) press at a
  combined 50/s; the real controller process (`sigap controller`, SQLite) issues
  the ticket, commits it, and answers on cmd/ticket.
Goal (queue issue): press p99 under 3x the bare p99.

Latency ratios move a lot with the machine's load; the controller's CPU time
per press (from /proc, over the press phase) moves much less, so it is printed
as well (compare it between runs made at the same time).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import threading
import time

from tests.bench.mqtt_timing import client, fmt, pace, percentiles
from tests.harness.broker import MosquittoBroker
from tests.harness.controller import SubprocessController, kiosk_site_toml

RATE = 50.0
SECONDS = 20
KIOSKS = [f"kiosk-{i:02d}" for i in range(1, 6)]


def bare_round_trip(port: int) -> list[float]:
    """Publish → echo subscriber → reply, at RATE for SECONDS."""
    sent: dict[int, float] = {}
    rtts: list[float] = []
    done = threading.Event()
    total = int(RATE * SECONDS)

    def on_echo(c, u, msg):  # type: ignore[no-untyped-def]
        c.publish("bench/pong/" + msg.topic.rsplit("/", 1)[1], msg.payload, qos=1)

    def on_pong(c, u, msg):  # type: ignore[no-untyped-def]
        i = int(msg.topic.rsplit("/", 1)[1])
        rtts.append(time.perf_counter() - sent[i])
        if len(rtts) == total:
            done.set()

    echo = client(port, "bench-echo", on_echo)
    echo.subscribe("bench/ping/+", qos=1)
    pinger = client(port, "bench-pinger", on_pong)
    pinger.subscribe("bench/pong/+", qos=1)
    time.sleep(0.5)  # let both SUBACKs land before timing starts

    def send(i: int) -> None:
        sent[i] = time.perf_counter()
        pinger.publish(f"bench/ping/{i}", b'{"x":1}', qos=1)

    pace(RATE, total, send)
    done.wait(30)
    for c in (echo, pinger):
        c.loop_stop()
        c.disconnect()
    return rtts


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def press_latency(port: int, workdir: pathlib.Path, broker_url: str) -> tuple[list[float], float]:
    """Kiosk presses at RATE for SECONDS against the controller process: (latencies, CPU s per press)."""
    cfg = workdir / "sites.toml"
    cfg.write_text(kiosk_site_toml(KIOSKS, services="AB"))
    ctl = SubprocessController(cfg, workdir / "bench.db", broker_url, workdir / "controller.log")
    ctl.start()
    sent: dict[tuple[str, int], float] = {}
    lat: list[float] = []
    total = int(RATE * SECONDS) // len(KIOSKS) * len(KIOSKS)
    done = threading.Event()

    def on_answer(c, u, msg):  # type: ignore[no-untyped-def]
        kiosk = msg.topic.split("/")[3]
        key = (kiosk, json.loads(msg.payload)["re"])
        if key in sent:
            lat.append(time.perf_counter() - sent[key])
            if len(lat) == total:
                done.set()

    clients = {}
    for k in KIOSKS:
        c = client(port, k, on_answer)
        c.subscribe(f"sigap/v1/dev/{k}/cmd/ticket", qos=1)
        clients[k] = c
    time.sleep(0.5)
    assert ctl.proc is not None
    cpu_before = cpu_seconds(ctl.proc.pid)

    def send(i: int) -> None:
        k = KIOSKS[i % len(KIOSKS)]
        seq = i // len(KIOSKS) + 1
        sent[(k, seq)] = time.perf_counter()
        body = json.dumps({"boot": 1, "seq": seq, "key": "AB"[i % 2]})
        clients[k].publish(f"sigap/v1/dev/{k}/evt/press", body, qos=1)

    try:
        pace(RATE, total, send)
        if not done.wait(60):
            print(f"  warning: only {len(lat)} of {total} answers arrived")
        cpu = (cpu_seconds(ctl.proc.pid) - cpu_before) / total
    finally:
        for c in clients.values():
            c.loop_stop()
            c.disconnect()
        ctl.stop()
    return lat, cpu


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        broker = MosquittoBroker(work / "broker").start()
        try:
            bare = percentiles(bare_round_trip(broker.port))
            lat, cpu = press_latency(broker.port, work, broker.url)
            press = percentiles(lat)
        finally:
            broker.stop()
    print(f"  load: {RATE:.0f} presses/s for {SECONDS} s from {len(KIOSKS)} kiosks, QoS 1, Mosquitto on loopback")
    print(f"  bare broker round trip : {fmt(bare)}")
    print(f"  press -> cmd/ticket    : {fmt(press)}")
    print(f"  ratio press/bare       : p50 {press['p50'] / bare['p50']:.2f}x   p99 {press['p99'] / bare['p99']:.2f}x"
          f"   (goal: p99 under 3x)")
    print(f"  controller CPU per press: {cpu * 1000:.2f} ms (user + system, whole process, press phase)")


if __name__ == "__main__":
    main()
