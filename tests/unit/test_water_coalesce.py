"""Coalescing of the retained level message per sensor (WaterService.level_window_s): during a burst
each sensor's ``site/{site}/water/{id}`` goes out at most once per window with its latest state;
status changes and sirens at once, in order; the final state always goes out.

The service runs on a real SQLite file with a recording bus; no broker. Waiting for a window's
end waits on the bus (an event per message), never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from controller.metrics import Metrics
from controller.water import WaterService
from tests.harness.controller import fixed_clock
from tests.unit.test_water_group_commit import NOW, SENSORS, T0, burst, cfg, reading, store  # noqa: F401

pytestmark = pytest.mark.timeout(60)


class WaitingBus:
    """Keeps what was sent; a test can wait until a condition on it holds."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.changed = asyncio.Event()

    def send(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        self.sent.append((topic, payload))
        self.changed.set()

    def levels(self, sensor: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [(t.rsplit("/", 1)[1], json.loads(p)) for t, p in self.sent
                if "/water/" in t and (sensor is None or t.endswith("/" + sensor))]

    async def until(self, cond: Any, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not cond():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


def service(cfg, store, window: float) -> tuple[WaterService, WaitingBus]:  # noqa: F811
    bus = WaitingBus()
    water = WaterService(cfg, store, bus, Metrics(), fixed_clock(NOW))
    water.level_window_s = window
    return water, bus


def last_level(bus: WaitingBus, sensor: str) -> dict[str, Any] | None:
    got = bus.levels(sensor)
    return got[-1][1] if got else None


async def test_a_burst_sends_each_sensor_s_first_level_at_once_and_its_latest_at_the_flush(cfg, store) -> None:  # noqa: F811
    water, bus = service(cfg, store, window=3600)
    events: list[Any] = []
    async with water.events.subscribe() as q:
        for seq in range(1, 6):
            await water.readings(burst(5)[(seq - 1) * SENSORS:seq * SENSORS])
        # The first batch went out at once; the rest wait for the window's end.
        assert len(bus.levels()) == SENSORS
        assert water.levels_waiting == SENSORS
        water.flush_levels()
        while not q.empty():
            events.append(q.get_nowait())
    assert water.levels_waiting == 0
    for i in range(SENSORS):
        sid = f"wl-{i:02d}"
        assert [m["level_mm"] for _, m in bus.levels(sid)] == [1001, 1005]
        assert [e[2]["level_mm"] for e in events if e[1] == "water" and e[2]["id"] == sid] == [1001, 1005]
    # Nothing more waits: a second flush sends nothing.
    n = len(bus.sent)
    water.flush_levels()
    assert len(bus.sent) == n


async def test_the_latest_level_goes_out_when_the_window_ends(cfg, store) -> None:  # noqa: F811
    water, bus = service(cfg, store, window=0.05)
    await water.readings(burst(1))
    await water.readings(burst(3)[SENSORS:])  # rounds 2 and 3 of every sensor
    await bus.until(lambda: all((last_level(bus, f"wl-{i:02d}") or {}).get("level_mm") == 1003
                                for i in range(SENSORS)))
    assert water.levels_waiting == 0
    for i in range(SENSORS):
        state = water.sensors[f"wl-{i:02d}"].state
        assert last_level(bus, f"wl-{i:02d}") == {"level_mm": state.level_mm, "status": state.status,
                                                  "rate_mm_h": None if state.rate_mm_h is None
                                                  else round(state.rate_mm_h), "ts": state.ts}


async def test_a_status_change_goes_out_at_once_and_before_its_siren(cfg, store) -> None:  # noqa: F811
    water, bus = service(cfg, store, window=3600)
    t = T0 - 600
    await water.readings([reading(0, 1, level=1000, ts=t)])
    await water.readings([reading(0, 2, level=1010, ts=t + 30)])  # level only: waits
    assert [m["level_mm"] for _, m in bus.levels("wl-00")] == [1000]
    out: list[tuple[str, bytes]] = []
    for seq, level in ((3, 1250), (4, 1500), (5, 1750), (6, 2000), (7, 2250), (8, 2550), (9, 2850)):
        before = len(bus.sent)
        await water.readings([reading(0, seq, level=level, ts=t + 30 * (seq - 1))])
        if water.sensors["wl-00"].state.status == "awas":
            out = bus.sent[before:]
            break
    assert out, "never reached awas"
    topics = [t for t, _ in out]
    level_at = next(i for i, t in enumerate(topics) if t.endswith("/water/wl-00"))
    siren_at = next(i for i, t in enumerate(topics) if t.endswith("/wl-00/cmd/siren"))
    assert level_at < siren_at
    assert json.loads(out[level_at][1])["status"] == "awas"
    assert json.loads(out[level_at][1])["level_mm"] == water.sensors["wl-00"].state.level_mm
    assert json.loads(out[siren_at][1])["on"] is True
    assert water.levels_waiting == 0  # what waited is superseded, never sent
    water.flush_levels()
    statuses = [m["status"] for _, m in bus.levels("wl-00")]
    assert statuses == sorted(set(statuses), key=statuses.index)  # one message per status: each at once
    assert statuses[-1] == "awas" and "waspada" in statuses and "siaga" in statuses


async def test_a_failed_commit_leaves_only_committed_state_to_flush(cfg, store, monkeypatch) -> None:  # noqa: F811
    import sqlalchemy as sa

    water, bus = service(cfg, store, window=3600)
    await water.readings([reading(0, 1, level=1000)])
    await water.readings([reading(0, 2, level=1010)])  # committed, waits

    def broken(conn: Any, rows: list[dict[str, Any]]) -> None:
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "save_readings", broken)
    await water.readings([reading(0, 3, level=1020)])  # not committed
    water.flush_levels()
    assert [m["level_mm"] for _, m in bus.levels("wl-00")] == [1000, 1010]


async def test_without_a_window_every_change_goes_out_at_once(cfg, store) -> None:  # noqa: F811
    water, bus = service(cfg, store, window=0)
    for seq in range(1, 4):
        await water.readings([reading(0, seq, level=1000 + seq)])
    assert [m["level_mm"] for _, m in bus.levels("wl-00")] == [1001, 1002, 1003]
    assert water.levels_waiting == 0


async def test_publish_all_sends_what_waits(cfg, store) -> None:  # noqa: F811
    water, bus = service(cfg, store, window=3600)
    await water.readings([reading(0, 1, level=1000)])
    await water.readings([reading(0, 2, level=1010)])
    await water.publish_all(force=True)  # a reconnect
    assert water.levels_waiting == 0
    assert last_level(bus, "wl-00")["level_mm"] == 1010
