"""Load generator for bench_water_ingest, in its own process: one MQTT client speaking for many
simulated water sensors, publishing `evt/reading` as fast as the broker takes them.

    python -m tests.bench.water_load PORT INDEX PROCESSES SENSORS READINGS

Sensor ids are ``wl-0000`` … (the bench's site config knows them); this process speaks for
every ``PROCESSES``-th one from ``INDEX``. It connects, prints ``ready``, waits for a line on
stdin, then sends ``READINGS`` rounds (seq 1, 2, …; one reading per sensor per round, so each
sensor's readings leave in order) at QoS 1 with up to 1,000 in flight, waits for every PUBACK
and prints ``done COUNT CPU_SECONDS``.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from tests.bench.mqtt_timing import client


def sensor_ids(index: int, processes: int, sensors: int) -> list[str]:
    """The ids this process speaks for."""
    return [f"wl-{i:04d}" for i in range(index, sensors, processes)]


def main(argv: list[str]) -> int:
    port, index, processes, sensors, rounds = (int(a) for a in argv)
    ids = sensor_ids(index, processes, sensors)
    acked = threading.Semaphore(0)
    c = client(port, f"bench-load-{index}", max_inflight=1000)
    c.on_publish = lambda *a: acked.release()
    topics = [f"sigap/v1/dev/{dev}/evt/reading" for dev in ids]
    ts0 = int(time.time()) - rounds
    print("ready", flush=True)
    sys.stdin.readline()
    sent = 0
    for seq in range(1, rounds + 1):
        body = json.dumps({"boot": 1, "seq": seq, "ts": ts0 + seq, "dist_mm": 3000 - seq % 50, "temp_c": 28.5,
                           "batt_mv": 3950, "n": 5}).encode()
        for topic in topics:
            c.publish(topic, body, qos=1)
            sent += 1
    for _ in range(sent):
        if not acked.acquire(timeout=120):
            break
    c.loop_stop()
    c.disconnect()
    print(f"done {sent} {time.process_time():.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
