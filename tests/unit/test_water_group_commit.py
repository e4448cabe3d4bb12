"""Group commit of water readings (controller/water.py WaterService.readings): a batch of readings
from many sensors is applied in one transaction, each reading at most once, each sensor's in
order, and nothing is published before the commit.

The service runs on a real SQLite file with a recording bus; no broker.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from controller.config import SiteConfig, parse_config
from controller.metrics import Metrics
from controller.store import Store, open_store
from controller.water import WaterService
from tests.harness.controller import fixed_clock

pytestmark = pytest.mark.timeout(60)

SENSORS = 40
MOUNT = 4000
NOW = "2026-11-23T09:00:00+07:00"
T0 = int(fixed_clock(NOW)().timestamp())


def site(n: int = SENSORS) -> SiteConfig:
    lines = ["[sigap]", 'prefix = "sigap"', "", "[[sites]]", 'id = "kota"', 'name = "Kota uji"']
    for i in range(n):
        lines += ["", "[[devices]]", f'id = "wl-{i:02d}"', 'site = "kota"', 'role = "water"', f'name = "Pos {i}"', "lat = -8.1", "lon = 112.16", "mount_mm = 4000",
                  "thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }"]
    return parse_config("\n".join(lines) + "\n")


class RecordingBus:
    """Stands in for controller.bus.Bus: keeps what was sent, and whether the store had committed it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        self.sent.append((topic, payload))


@pytest.fixture
def cfg() -> SiteConfig:
    return site()


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'water.db'}")
    yield s
    s.engine.dispose()


def service(cfg: SiteConfig, store: Store, bus: RecordingBus | None = None) -> WaterService:
    return WaterService(cfg, store, bus or RecordingBus(), Metrics(), fixed_clock(NOW))


def reading(i: int, seq: int, level: int = 1000, ts: int | None = None, boot: int = 1) -> tuple[Any, dict[str, Any]]:
    """(device, validated message) as the Controller hands them over."""
    return _DEVS[i], {"boot": boot, "seq": seq, "ts": T0 - 600 + seq if ts is None else ts,
                      "dist_mm": MOUNT - level, "temp_c": 28.0, "batt_mv": 3900, "n": 5}


_DEVS = {i: d for i, d in enumerate(site().devices_by_role("water"))}


def rows(store: Store, sql: str) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text(sql)))


def burst(rounds: int) -> list[tuple[Any, dict[str, Any]]]:
    """Every sensor's readings 1..rounds, interleaved as many boards publishing at once would."""
    return [reading(i, seq, level=1000 + seq) for seq in range(1, rounds + 1) for i in range(SENSORS)]


async def test_a_burst_from_many_sensors_lands_in_one_batch(cfg, store) -> None:
    water = service(cfg, store)
    await water.readings(burst(5))
    assert rows(store, "SELECT COUNT(*) FROM readings")[0][0] == SENSORS * 5
    assert rows(store, "SELECT COUNT(*) FROM applied_events WHERE kind = 'reading'")[0][0] == SENSORS * 5
    assert water.metrics.readings._value.get() == SENSORS * 5
    # Every sensor's state is its last reading's; the 5-minute buckets count every reading.
    for sid, level, ts in rows(store, "SELECT sensor, level_mm, ts FROM sensor_state"):
        assert (level, ts) == (1005, T0 - 595), sid
    assert rows(store, "SELECT SUM(n), MIN(level_min), MAX(level_max) FROM readings_5min")[0] == (
        SENSORS * 5, 1001, 1005)


async def test_each_sensor_s_readings_are_applied_in_arrival_order(cfg, store) -> None:
    water = service(cfg, store)
    await water.readings(burst(6))
    for i in range(SENSORS):
        got = rows(store, f"SELECT ts, level_mm FROM readings WHERE sensor = 'wl-{i:02d}' ORDER BY id")
        assert got == [(T0 - 600 + s, 1000 + s) for s in range(1, 7)]
        assert [r["level_mm"] for r in water.store.load_readings(f"wl-{i:02d}", 0, T0)] == [1001, 1002, 1003,
                                                                                          1004, 1005, 1006]


async def test_redelivered_readings_are_applied_once(cfg, store) -> None:
    water = service(cfg, store)
    first = burst(3)
    # Duplicates inside one batch, and the whole batch again later.
    await water.readings(first + first[:10])
    await water.readings(first)
    assert rows(store, "SELECT COUNT(*) FROM readings")[0][0] == SENSORS * 3
    assert water.metrics.duplicates._value.get() == 10 + SENSORS * 3


async def test_redelivery_after_a_restart_is_applied_once(cfg, store) -> None:
    await service(cfg, store).readings(burst(3))
    # A new process remembers what is committed ...
    again = service(cfg, store)
    await again.readings(burst(4))
    assert rows(store, "SELECT COUNT(*) FROM readings")[0][0] == SENSORS * 4
    # ... and when memory knows nothing, the applied-events key catches the repeats and the
    # new readings of the same batch still land.
    blind = service(cfg, store)
    blind._recent.clear()
    await blind.readings(burst(5))
    assert rows(store, "SELECT COUNT(*) FROM readings")[0][0] == SENSORS * 5
    assert rows(store, "SELECT COUNT(*) FROM applied_events")[0][0] == SENSORS * 5
    assert blind.metrics.duplicates._value.get() == SENSORS * 4
    for i in range(SENSORS):
        got = rows(store, f"SELECT level_mm FROM readings WHERE sensor = 'wl-{i:02d}' ORDER BY id")
        assert [r[0] for r in got] == [1001, 1002, 1003, 1004, 1005]


async def test_nothing_is_published_or_remembered_when_the_commit_fails(cfg, store, monkeypatch) -> None:
    bus = RecordingBus()
    water = service(cfg, store, bus)
    await water.readings(burst(1))
    published = len(bus.sent)
    assert published >= SENSORS  # every sensor's level message

    def broken(conn: Any, rows: list[dict[str, Any]]) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "save_readings", broken)
    await water.readings(burst(2)[SENSORS:])
    assert len(bus.sent) == published
    assert rows(store, "SELECT COUNT(*) FROM readings")[0][0] == SENSORS
    assert water.sensors["wl-00"].state.level_mm == 1001  # memory rebuilt from what is committed
    assert water.metrics.rejected.labels(reason="db_error")._value.get() == SENSORS

    # The broker delivers them again (they were never acknowledged): now they land, once.
    monkeypatch.undo()
    await water.readings(burst(2)[SENSORS:])
    assert rows(store, "SELECT COUNT(*) FROM readings")[0][0] == SENSORS * 2
    assert len(bus.sent) > published


async def test_buffered_old_readings_in_a_batch_go_to_history_without_raising_past_alerts(cfg, store) -> None:
    water = service(cfg, store)
    live = T0 - 10
    # A board back from an outage: its live reading (normal) comes first, then the readings it
    # buffered, from a flood an hour ago (awas), all in the same batch.
    batch = [reading(0, 1, level=1000, ts=live)]
    batch += [reading(0, 1 + k, level=2900 + k, ts=live - 3600 + 60 * k) for k in range(1, 6)]
    await water.readings(batch)
    assert water.book.alerts() == []
    assert water.sensors["wl-00"].state.status == "normal"
    history = water.store.load_readings("wl-00", 0, T0)
    assert [r["ts"] for r in history] == sorted(r["ts"] for r in history)
    assert [r["level_mm"] for r in history] == [2901, 2902, 2903, 2904, 2905, 1000]
    assert all(r["late"] for r in history[:-1])


async def test_alerts_of_a_batch_are_committed_and_published_after_it(cfg, store) -> None:
    bus = RecordingBus()
    water = service(cfg, store, bus)
    await water.readings([reading(i, 1, level=2900) for i in range(3)])
    assert [a.kind for a in water.book.alerts()] == ["level"] * 3
    assert rows(store, "SELECT COUNT(*) FROM alerts WHERE state = 'open'")[0][0] == 3
    sirens = [t for t, _ in bus.sent if t.endswith("/cmd/siren")]
    assert {t.split("/")[3] for t in sirens} >= {"wl-00", "wl-01", "wl-02"}
    n, problem = store.verify_audit()
    assert (n, problem) == (3, None)
