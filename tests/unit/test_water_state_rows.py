"""Coalesced sensor_state rows (controller/water.py WaterService.state_window_s): during a burst a
reading that only moves the level does not rewrite its sensor's row; a status change, a sensor's
first row and flush_states() do; after a crash the restored sensor takes its level and time from
the newest committed reading, not from the older row.

The service runs on a real SQLite file with a recording bus; no broker.
"""

from __future__ import annotations

from typing import Any

import pytest

from controller.config import SiteConfig
from controller.metrics import Metrics
from controller.store import Store
from controller.water import WaterService
from tests.harness.controller import SettableClock
from tests.unit.test_water_group_commit import (  # noqa: F401
    NOW,
    RecordingBus,
    reading,
    rows,
    service,
    site,
    store,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cfg() -> SiteConfig:
    return site(2)


def coalescing(cfg: SiteConfig, store: Store) -> WaterService:  # noqa: F811
    w = service(cfg, store)
    w.state_window_s = 5.0
    return w


def row(store: Store, sensor: str = "wl-00") -> Any:  # noqa: F811
    found = rows(store, f"SELECT status, level_mm, ts FROM sensor_state WHERE sensor = '{sensor}'")
    return found[0] if found else None


async def feed(w: WaterService, seqs: range, level: Any = lambda seq: 1000 + seq) -> None:
    for seq in seqs:  # one batch each, as a slow trickle of single readings would come
        await w.readings([reading(0, seq, level=level(seq))])


async def test_readings_that_only_move_the_level_wait_for_the_flush(cfg, store):  # noqa: F811
    w = coalescing(cfg, store)
    await feed(w, range(1, 2))
    first = row(store)
    assert (first.status, first.level_mm) == ("normal", 1001)  # a sensor's first row: at once
    await feed(w, range(2, 11))
    assert row(store).level_mm == 1001  # the clock stands still: still inside the window
    assert rows(store, "SELECT COUNT(*) FROM readings")[0][0] == 10  # the readings themselves are all in
    assert w.flush_states() == 1
    now = row(store)
    assert (now.level_mm, now.ts) == (1010, reading(0, 10)[1]["ts"])
    assert w.flush_states() == 0  # nothing waits any more


async def test_a_status_change_is_written_with_its_reading(cfg, store):  # noqa: F811
    w = coalescing(cfg, store)
    await feed(w, range(1, 4))
    assert row(store).level_mm == 1001
    t3 = reading(0, 3)[1]["ts"]
    # Above waspada (1500), a minute later (slower than a suspect rise); the first such
    # reading is held as a possible spike, the second confirms it.
    await w.readings([reading(0, 4, level=1700, ts=t3 + 60)])
    assert row(store).status == "normal"
    await w.readings([reading(0, 5, level=1710, ts=t3 + 61)])
    assert w.sensors["wl-00"].state.status == "waspada"
    assert (row(store).status, row(store).level_mm) == ("waspada", 1710)
    assert w.flush_states() == 0


async def test_without_a_window_every_batch_writes_its_rows(cfg, store):  # noqa: F811
    w = service(cfg, store)
    for seq in range(1, 6):
        await feed(w, range(seq, seq + 1))
        assert row(store).level_mm == 1000 + seq


async def test_after_a_crash_the_level_comes_from_the_newest_committed_reading(cfg, store):  # noqa: F811
    clock = SettableClock(NOW)
    w = WaterService(cfg, store, RecordingBus(), Metrics(), clock)
    w.state_window_s = 3600.0
    t0 = int(clock().timestamp())
    for seq in range(1, 31):  # a steady rise, 10 mm a minute, over half an hour, arriving live
        await w.readings([reading(0, seq, level=1000 + 10 * seq, ts=t0 + 60 * seq)])
        clock.advance(seconds=60)
    assert row(store).level_mm == 1010  # the row lags; then the process dies (no flush)
    before = w.sensors["wl-00"].state
    again = WaterService(cfg, store, RecordingBus(), Metrics(), clock).sensors["wl-00"].state
    assert (again.level_mm, again.ts) == (before.level_mm, before.ts) == (1300, t0 + 1800)
    assert before.rate_mm_h == pytest.approx(600, rel=0.05)
    assert again.rate_mm_h == pytest.approx(before.rate_mm_h)
