"""The water board's flash spool (firmware.core.spool.Spool) against a
plain list, through random appends, pops, reboots and full-flash spells; and
the controller's offline rule not counting the time it could not hear.

The same Spool runs on MicroPython in tests/mpy/test_water_spool_mpy.py.
"""

from __future__ import annotations

import random

import pytest

from firmware.core.spool import Spool
from simulator.board import VirtualStorage
from tests.unit.test_water import River

pytestmark = pytest.mark.timeout(30)


class FlakyStorage(VirtualStorage):
    """A flash that can run full: while `full`, every write raises OSError(28, ENOSPC)."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def write(self, name: str, text: str) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        super().write(name, text)


@pytest.mark.parametrize("seed", range(20))
def test_spool_matches_a_bounded_fifo_through_reboots(seed: int) -> None:
    rng = random.Random(seed)
    storage = VirtualStorage()
    cap, chunk = rng.randint(1, 12), rng.randint(1, 5)
    q = Spool(storage, "r", cap, chunk)
    model: list[int] = []
    dropped = 0
    n = 0
    for _ in range(400):
        op = rng.random()
        if op < 0.5:
            ok = q.append({"i": n})
            assert ok == (len(model) < cap)
            if ok:
                model.append(n)
            else:
                dropped += 1
            n += 1
        elif op < 0.9:
            got = q.pop()
            assert got == ({"i": model.pop(0)} if model else None)
        else:
            q = Spool(storage, "r", cap, chunk)  # a reboot: only flash is left
        assert len(q) == len(model)
        assert q.peek() == ({"i": model[0]} if model else None)
        assert q.dropped == dropped
    # RAM holds at most two chunks whatever the backlog.
    assert len(q.head) <= chunk and len(q.tail) <= chunk


def test_spool_rides_out_a_full_flash_and_keeps_what_it_could_write() -> None:
    storage = FlakyStorage()
    q = Spool(storage, "r", 50, 4)
    for i in range(6):
        q.append({"i": i})
    storage.full = True
    for i in range(6, 9):
        q.append({"i": i})  # no room: RAM only, counted
    assert q.write_errors > 0 and len(q) == 9
    assert [q.pop()["i"] for _ in range(2)] == [0, 1]
    storage.full = False
    again = Spool(storage, "r", 50, 4)  # a reboot: flash has what it could take
    got = []
    while (item := again.pop()) is not None:
        got.append(item["i"])
    assert got == [0, 1, 2, 3, 4, 5]


def test_offline_rule_does_not_count_the_time_the_controller_could_not_hear() -> None:
    river = River()
    river.level(1000)
    deaf_until = river.t + 600  # broker down for 10 minutes, then the controller is back
    assert not river.sensor.check(river.t + 1000, listening_since=deaf_until).offline
    assert river.sensor.check(deaf_until + 900, listening_since=deaf_until).offline
