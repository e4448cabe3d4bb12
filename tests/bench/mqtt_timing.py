"""Shared pieces for MQTT latency benchmarks: paced publishing and percentiles."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt


def client(port: int, client_id: str, on_message: Callable[..., None] | None = None,
           max_inflight: int = 20) -> mqtt.Client:
    """A connected paho client with its network loop running in a thread."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.max_inflight_messages_set(max_inflight)
    if on_message:
        c.on_message = on_message
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"{client_id} could not connect to the broker")
    # paho leaves Nagle on: each QoS 1 round trip would then wait ~40 ms for delayed ACKs.
    sock = c.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def pace(rate_per_s: float, count: int, send: Callable[[int], None]) -> None:
    """Call send(i) count times at a steady rate (absolute schedule, no drift)."""
    start = time.perf_counter()
    for i in range(count):
        target = start + i / rate_per_s
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max in milliseconds."""
    ms = sorted(s * 1000 for s in samples_s)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "p50": q[49], "p90": q[89], "p99": q[98], "max": ms[-1]}


def fmt(p: dict[str, float]) -> str:
    return f"n={p['n']:5d}  p50={p['p50']:7.2f} ms  p90={p['p90']:7.2f} ms  p99={p['p99']:7.2f} ms  max={p['max']:7.2f} ms"
