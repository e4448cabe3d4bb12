# The water board's unsent readings on flash (firmware.core.spool.Spool
# and firmware.roles.water), under real MicroPython: order, reboots, a full
# spool (the oldest kept), a full flash (ENOSPC), and delivery in order with
# the original (boot, seq) once the link is up. The link is faked: Device.send
# is replaced by a recorder and online() by a flag.
import asyncio

from test_firmware_mpy import Storage
from test_roles_mpy import Battery, PartsBoard, Ranger, Siren, Thermometer

from firmware.core import runtime
from firmware.core.spool import Spool
from firmware.roles.water import WaterRole


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def drain(q):
    out = []
    while len(q):
        out.append(q.pop())
    return out


class FullStorage(Storage):
    """A flash with no room left: every write raises OSError(28, ENOSPC)."""

    def __init__(self, files=None):
        super().__init__()
        if files:
            self.files = files
        self.refused = 0

    def write(self, name, text):
        self.refused += 1
        raise OSError(28)


def test_spool_keeps_order_across_chunks_and_reboots():
    storage = Storage()
    q = Spool(storage, "r", 20, chunk=3)
    for i in range(7):
        check(q.append({"i": i}), "room")
    check(len(q) == 7 and q.peek() == {"i": 0}, len(q))
    check(q.pop() == {"i": 0} and q.pop() == {"i": 1}, "fifo")
    again = Spool(storage, "r", 20, chunk=3)  # a reboot: RAM lost, flash kept
    check(len(again) == 5, len(again))
    for i in range(7, 10):
        again.append({"i": i})
    check([x["i"] for x in drain(again)] == list(range(2, 10)), "in order")
    check(len(Spool(storage, "r", 20, chunk=3)) == 0, "the pops are on flash too")


def test_spool_full_keeps_the_oldest_and_counts_the_rest():
    storage = Storage()
    q = Spool(storage, "r", 5, chunk=2)
    results = [q.append({"i": i}) for i in range(8)]
    check(results == [True] * 5 + [False] * 3, results)
    check(q.dropped == 3 and len(q) == 5, (q.dropped, len(q)))
    again = Spool(storage, "r", 5, chunk=2)
    check(again.dropped == 3, "dropped count on flash")
    check([x["i"] for x in drain(again)] == [0, 1, 2, 3, 4], "the oldest kept")


def test_spool_laps_its_slots_without_reading_old_chunks():
    storage = Storage()
    q = Spool(storage, "r", 4, chunk=2)
    n = 0
    for _ in range(10):  # many laps of the slot files
        for _ in range(3):
            q.append({"i": n})
            n += 1
        q = Spool(storage, "r", 4, chunk=2)
        got = [x["i"] for x in drain(q)]
        check(got == [n - 3, n - 2, n - 1], got)
    check(len(Spool(storage, "r", 4, chunk=2)) == 0, "empty after the laps")


def test_spool_repairs_a_chunk_written_before_a_power_cut_hit_its_meta():
    storage = Storage()
    q = Spool(storage, "r", 10, chunk=2)
    q.append({"i": 0})
    q.append({"i": 1})
    meta = storage.files["r.m"]
    q.append({"i": 2})  # opens chunk 1: chunk file written, then meta
    storage.files["r.m"] = meta  # ... as if the power failed before the meta write
    again = Spool(storage, "r", 10, chunk=2)
    check([x["i"] for x in drain(again)] == [0, 1, 2], "the new chunk adopted")


def test_spool_on_a_full_flash_counts_and_goes_on_in_ram():
    storage = FullStorage()
    q = Spool(storage, "r", 10, chunk=2)
    for i in range(3):
        q.append({"i": i})
    check(q.write_errors > 0 and len(q) == 3, q.write_errors)
    check([x["i"] for x in drain(q)] == [0, 1, 2], "RAM still delivers")


WATER = {"device_id": "wl-01", "role": "water", "prefix": "sigap", "mount_mm": 4000, "interval_s": 300,
         "fast_interval_s": 30, "siren_mm": 2600, "hysteresis_mm": 50, "hold_s": 0,
         "thresholds_mm": {"waspada": 1500, "siaga": 2200, "awas": 2800}, "spool_max": 6, "spool_chunk": 2}


class Link:
    """Stands in for the broker link: records what Device.send() was given."""

    def __init__(self, device):
        self.up = False
        self.sent = []
        self.came_up = asyncio.Event()
        device.online = lambda: self.up
        device.send = self.send
        device.wait_online = self.wait_online

    async def send(self, kind, msg):
        if not self.up:
            raise OSError("link down")
        self.sent.append((msg["boot"], msg["seq"], msg.get("ts"), msg["dist_mm"]))

    async def wait_online(self):
        while not self.up:
            self.came_up.clear()
            await self.came_up.wait()

    def set(self, up):
        self.up = up
        if up:
            self.came_up.set()


async def deliver(role, link):
    """Bring the link up and run the role's sender until the spool is empty."""
    sender = asyncio.create_task(role._send_loop())
    try:
        link.set(True)
        await asyncio.wait_for(role._delivered(), 5)
    finally:
        sender.cancel()


def water_board(storage=None, settings=WATER):
    board = PartsBoard(settings, ranger=Ranger(), thermometer=Thermometer(), battery=Battery(), siren=Siren())
    if storage is not None:
        board.storage = storage
    device = runtime.Device(board)
    device.role = WaterRole(device)
    return device, device.role, board


async def test_water_readings_wait_on_flash_through_a_reboot_and_go_out_in_order():
    device, role, board = water_board()
    board._ranger.script = [(3000, 5), (2990, 5), (2980, 5)]
    for _ in range(3):
        await role.sample()
        board.now += 300
    check(len(role.spool) == 3, len(role.spool))
    first_boot = device.boot
    # Power cut: a new boot on the same flash, one more reading, then the link.
    device, role, board2 = water_board(board.storage)
    board2.now = board.now
    check(device.boot == first_boot + 1 and len(role.spool) == 3, (device.boot, len(role.spool)))
    board2._ranger.script = [(2970, 5)]
    await role.sample()
    link = Link(device)
    await deliver(role, link)
    t0 = 1763880000
    want = [(first_boot, 1, t0, 3000), (first_boot, 2, t0 + 300, 2990), (first_boot, 3, t0 + 600, 2980),
            (first_boot + 1, 1, t0 + 900, 2970)]
    check(link.sent == want, link.sent)
    check(len(role.spool) == 0 and role.sent == 4, role.sent)
    check(len(WaterRole(device).spool) == 0, "delivered readings are off flash")


async def test_water_full_spool_reports_what_it_lost():
    device, role, board = water_board()
    board._ranger.script = [(3000 - i, 5) for i in range(8)]
    for _ in range(8):
        await role.sample()
    check(len(role.spool) == 6 and role.spool.dropped == 2, role.spool.dropped)
    board._ranger.script = [(2900, 5)]
    msg = await role.sample()  # refused too: it says how many were lost before it
    check(msg["lost"] == 2 and role.spool.dropped == 3, msg)
    check(device.birth()["lost"] == 3 and device.birth()["unsent"] == 6, device.birth())
    # The oldest are the ones kept.
    check([r["seq"] for r in drain(role.spool)] == [1, 2, 3, 4, 5, 6], "oldest kept")


async def test_water_board_on_a_full_flash_keeps_measuring_and_sending():
    device, role, board = water_board(FullStorage())
    check(device.flash_errors >= 1, "the boot counter could not be kept")
    board._ranger.script = [(1000, 5), (1000, 5)]
    await role.sample()  # level 3000 >= siren_mm: the siren does not need flash
    check(board._siren.is_on, "siren on")
    role.on_cmd("config", {"interval_s": 600})  # applied even if it cannot be kept
    check(role.interval_ms == 600000, role.interval_ms)
    await role.sample()
    link = Link(device)
    await deliver(role, link)
    check([s[1] for s in link.sent] == [1, 2], link.sent)
    check(device.birth()["flash_err"] >= 3, device.birth())


class SleepyBoard(PartsBoard):
    def __init__(self, settings, **parts):
        super().__init__(settings, **parts)
        self.slept = []

    def deep_sleep(self, ms):
        self.slept.append(ms)


async def test_water_sleeps_only_while_no_one_wants_the_siren():
    settings = dict(WATER)
    settings["sleep"] = True
    board = SleepyBoard(settings, ranger=Ranger(), thermometer=Thermometer(), battery=Battery(), siren=Siren())
    device = runtime.Device(board)
    role = device.role = WaterRole(device)
    check(role.sleep, "sleep mode from the settings")
    board._ranger.script = [(3500, 5), (1000, 5)]
    await role.sample()  # level 500
    check(role.may_sleep() and 1000 <= role.sleep_ms() <= 300000, role.sleep_ms())
    await role.sample()  # level 3000 >= siren_mm 2600
    check(board._siren.is_on and not role.may_sleep(), "awake with the siren on")
    check(role.period_ms() == 30000, role.period_ms())
    role.on_cmd("siren", {"on": True, "level": "awas"})
    check(not role.may_sleep(), "the controller's siren keeps it awake too")


def test_a_full_flash_does_not_make_two_boots_share_a_boot_number():
    import random

    found = []
    for seed in (1, 2):
        random.seed(seed)
        board = PartsBoard(WATER)
        board.storage = FullStorage({"boot": "41"})
        found.append(runtime.Device(board).boot)
    # Both above what flash remembers (41), and not the same number twice.
    check(found[0] >= 42 and found[1] >= 42 and found[0] != found[1], found)


def test_bad_water_tunables_are_dropped_and_reported():
    from firmware.core import settings as config

    d = dict(WATER)
    d.update({"sleep": "yes", "spool_max": 0, "awake_max_s": 10})
    s, errors = config.validate_settings(d)
    check(s is not None and "sleep" not in s and "spool_max" not in s and s["awake_max_s"] == 10, s)
    check("type:sleep" in errors and "range:spool_max" in errors, errors)
    device, role, board = water_board(settings=s)
    check(not role.sleep and role.spool.max_items == WaterRole.spool_max, role.spool.max_items)
