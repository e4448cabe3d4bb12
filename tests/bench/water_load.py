"""Load generator for bench_water_ingest, in its own process: one MQTT client speaking for many
simulated water sensors, publishing `evt/reading` as fast as the broker takes them.

    python -m tests.bench.water_load PORT INDEX PROCESSES SENSORS READINGS

Sensor ids are ``wl-0000`` … (the bench's site config knows them); this process speaks for
every ``PROCESSES``-th one from ``INDEX``. It connects, prints ``ready``, waits for a line on
stdin, then sends ``READINGS`` rounds (seq 1, 2, …; one reading per sensor per round, so each
sensor's readings leave in order) at QoS 1 with up to 1,000 in flight (each publish waits for a free slot), waits for every PUBACK
and prints ``done COUNT CPU_SECONDS``.
"""

from __future__ import annotations

import json
import socket
import sys
import time

import paho.mqtt.client as mqtt

IN_FLIGHT = 1000


def sensor_ids(index: int, processes: int, sensors: int) -> list[str]:
    """The ids this process speaks for."""
    return [f"wl-{i:04d}" for i in range(index, sensors, processes)]


def main(argv: list[str]) -> int:
    port, index, processes, sensors, rounds = (int(a) for a in argv)
    ids = sensor_ids(index, processes, sensors)
    # One thread drives the client (paho's loop() between publishes, no network thread: two
    # threads of one generator would trade the GIL on every PUBLISH and PUBACK), with at most
    # IN_FLIGHT unacknowledged at once: handed everything at once, paho would queue the rest
    # and scan that queue on every PUBACK.
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-load-{index}")
    c.max_inflight_messages_set(IN_FLIGHT)
    inflight = [0]

    def acked(*_: object) -> None:
        inflight[0] -= 1

    c.on_publish = acked
    c.connect("127.0.0.1", port)
    deadline = time.monotonic() + 10
    while not c.is_connected():
        if time.monotonic() > deadline:
            raise RuntimeError("could not connect to the broker")
        c.loop(timeout=0.1)
    sock = c.socket()
    if sock is not None:  # paho leaves Nagle on
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    topics = [f"sigap/v1/dev/{dev}/evt/reading" for dev in ids]
    ts0 = int(time.time()) - rounds
    print("ready", flush=True)
    sys.stdin.readline()
    sent = 0
    for seq in range(1, rounds + 1):
        body = json.dumps({"boot": 1, "seq": seq, "ts": ts0 + seq, "dist_mm": 3000 - seq % 50, "temp_c": 28.5,
                           "batt_mv": 3950, "n": 5}).encode()
        for topic in topics:
            while inflight[0] >= IN_FLIGHT:
                c.loop(timeout=1.0)
            c.publish(topic, body, qos=1)
            inflight[0] += 1
            sent += 1
            if sent % 100 == 0:
                c.loop(timeout=0)
    deadline = time.monotonic() + 120
    while inflight[0] > 0 and time.monotonic() < deadline:  # every message acknowledged
        c.loop(timeout=1.0)
    c.disconnect()
    print(f"done {sent} {time.process_time():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
