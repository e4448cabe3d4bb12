# The runtime core under real MicroPython: settings validation and fallback,
# the health monitor's decisions, the flash queue, the birth's reset reason,
# the clock's unsynced state, the status LED, and the supervisor's reboot
# and watchdog decisions on a fake board with no network.
import asyncio

from mpyunit import raises
from test_firmware_mpy import Board

from firmware.core import runtime
from firmware.core import settings as config
from firmware.core.flashqueue import FlashQueue
from firmware.core.health import Health
from firmware.core.status_led import StatusLed
from firmware.core.timekeeping import UNIX_AT_2000, Timekeeper, epoch_offset
from protocol import wire

GOOD = {"device_id": "loket-01", "role": "counter", "counter": "1", "broker_host": "10.0.0.2", "broker_port": 1883}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class RecordingBoard(Board):
    """The fake board of test_firmware_mpy, recording feeds, resets and LED patterns."""

    def __init__(self, settings):
        super().__init__(settings)
        self.feeds = 0
        self.resets = []
        self.leds = []
        self.logs = []

    def feed_watchdog(self):
        self.feeds += 1

    def reset(self, reason):
        self.resets.append(reason)
        self.storage.write("reset_reason", reason)

    def led_pattern(self, name):
        self.leds.append(name)

    def log(self, text):
        self.logs.append(text)


async def wait_for(cond, timeout_s=5):
    async def _poll():
        while not cond():
            await asyncio.sleep_ms(10)

    await asyncio.wait_for(_poll(), timeout_s)


# --- settings -------------------------------------------------------------------


def test_valid_settings_get_defaults_and_no_errors():
    s, errors = config.validate_settings({"device_id": "kiosk-01", "role": "kiosk"})
    check(errors == [], errors)
    check((s["prefix"], s["broker_host"], s["broker_port"]) == ("sigap", "127.0.0.1", 1883), s)


def test_identity_and_broker_errors_refuse_the_whole_file():
    cases = (
        ({"role": "kiosk"}, "missing:device_id"),
        ({"device_id": "Kiosk 01", "role": "kiosk"}, "value:device_id"),
        ({"device_id": "kiosk-01"}, "missing:role"),
        ({"device_id": "kiosk-01", "role": "toaster"}, "value:role"),
        ({"device_id": "kiosk-01", "role": "kiosk", "prefix": "a/#"}, "value:prefix"),
        ({"device_id": "kiosk-01", "role": "kiosk", "broker_port": "1883"}, "type:broker_port"),
        ({"device_id": "kiosk-01", "role": "kiosk", "broker_port": 70000}, "range:broker_port"),
        ({"device_id": "kiosk-01", "role": "kiosk", "broker_port": True}, "type:broker_port"),
        ({"device_id": "kiosk-01", "role": "kiosk", "broker_host": 5}, "type:broker_host"),
        ({"device_id": "kiosk-01", "role": "kiosk", "wifi_password": 1234}, "type:wifi_password"),
        ({"device_id": "kiosk-01", "role": "kiosk", "pins": [1, 2]}, "type:pins"),
    )
    for d, code in cases:
        s, errors = config.validate_settings(d)
        check(s is None and code in errors, (d, errors))


def test_broken_or_missing_file_is_named():
    check(config.validate_settings('{"device_id": "kiosk-01", "ro') == (None, ["bad_json"]), "bad json")
    check(config.validate_settings(None) == (None, ["missing:settings"]), "missing")
    check(config.validate_settings("[1, 2]") == (None, ["type:settings"]), "not an object")
    s, errors = config.validate_settings('{"device_id": "kiosk-01", "role": "kiosk"}')
    check(s is not None and errors == [], errors)


def test_bad_tunable_is_dropped_and_reported_but_the_file_is_used():
    d = dict(GOOD, broker_reboot_s=-5, keepalive_s="30", outbox_size=64)
    s, errors = config.validate_settings(d)
    check(s is not None, errors)
    check(sorted(errors) == ["range:broker_reboot_s", "type:keepalive_s"], errors)
    check("broker_reboot_s" not in s and "keepalive_s" not in s and s["outbox_size"] == 64, s)
    check(d["broker_reboot_s"] == -5, "the caller's dict is not changed")


def test_invalid_file_falls_back_to_last_good_copy_else_unconfigured():
    good_text = '{"device_id": "loket-01", "role": "counter", "counter": "1"}'
    s, errors, source = config.choose_settings(dict(GOOD, broker_port="x"), good_text)
    check(source == "good" and s["device_id"] == "loket-01" and errors == ["type:broker_port"], (source, errors))
    s, errors, source = config.choose_settings(GOOD, good_text)
    check(source == "file" and s["broker_host"] == "10.0.0.2", source)
    s, errors, source = config.choose_settings({"role": "counter"}, "{broken")
    check(s is None and source is None and errors == ["missing:device_id"], (source, errors))


def test_device_boots_on_the_good_copy_and_reports_cfg_err_in_its_birth():
    board = RecordingBoard(dict(GOOD, role="toaster"))
    board.storage.write(config.SETTINGS_GOOD, '{"device_id": "loket-01", "role": "counter", "counter": "1"}')
    device = runtime.boot(board)
    check(device.configured and device.settings_source == "good", device.settings_source)
    check(device.role is not None and device.role_name == "counter", device.role_name)
    birth = device.birth()
    check(birth["cfg_err"] == ["value:role"], birth)
    wire.validate_state(birth)


def test_without_any_usable_settings_the_board_is_unconfigured():
    board = RecordingBoard({"role": "counter"})
    device = runtime.boot(board)
    check(not device.configured and device.role is None and device.mqtt is None, device.settings)
    check(device.cfg_errors == ["missing:device_id"], device.cfg_errors)


async def test_unconfigured_board_shows_the_error_and_reboots_once_settings_are_fixed():
    board = RecordingBoard({"device_id": "loket-01"})
    device = runtime.boot(board)
    device.tick_ms = 20
    device.config_retry_s = 0  # read the settings again at every tick
    task = asyncio.create_task(runtime.run_device(device))
    await wait_for(lambda: board.feeds >= 2)
    check(board.leds == ["error"], board.leds)
    check(board.displays["main"].lines == ["CONFIG ERROR", "missing:role"], board.displays["main"].lines)
    check(board.resets == [], board.resets)
    board.settings = dict(GOOD)
    await wait_for(lambda: board.resets)
    await task  # run_device returns after asking for the reboot
    check(board.resets == ["config"], board.resets)
    check(runtime.boot(board).birth()["reset"] == "config", "reason in the next birth")


def test_good_copy_is_saved_only_when_it_changed():
    board = RecordingBoard(dict(GOOD))
    device = runtime.boot(board)
    device._save_good_settings()
    first = board.storage.read(config.SETTINGS_GOOD)
    check(config.same_settings(first, device.settings), first)
    board.storage.write(config.SETTINGS_GOOD, first + " ")  # same JSON, different text
    device._save_good_settings()
    check(board.storage.read(config.SETTINGS_GOOD) == first + " ", "no rewrite of equal settings")


def test_boot_only_code_is_dropped_after_boot_and_after_saving_the_good_copy():
    import sys

    import firmware.core

    device = runtime.boot(RecordingBoard(dict(GOOD, keepalive_s="x")))
    for name in (runtime.SETTINGS, runtime.STARTUP):
        check(name not in sys.modules, name + " forgotten after boot")
    check(not hasattr(firmware.core, "settings") and not hasattr(firmware.core, "startup"), "by its package too")
    check(device.role is not None and device.mqtt is not None and device.boot > 0, "the boot was done")
    check(device.birth()["cfg_err"] == ["type:keepalive_s"], device.birth())
    device._save_good_settings()
    check(config.same_settings(device.board.storage.read(config.SETTINGS_GOOD), device.settings), "saved")
    check(runtime.SETTINGS not in sys.modules, "forgotten again after the save")
    runtime.boot(RecordingBoard({"role": "counter"}))
    check(runtime.SETTINGS in sys.modules, "an unconfigured board keeps it: it validates again and again")


# --- birth and reset reason ---------------------------------------------------------


def test_birth_reports_why_the_board_restarted_then_the_reason_is_cleared():
    board = RecordingBoard(dict(GOOD))
    board.storage.write("reset_reason", "broker_timeout")
    device = runtime.boot(board)
    birth = device.birth()
    wire.validate_state(birth)
    for key in ("online", "role", "fw", "boot", "rssi", "heap", "up"):
        check(key in birth, key)
    check(birth["reset"] == "broker_timeout" and "cfg_err" not in birth, birth)
    check(device.birth()["reset"] == "broker_timeout", "every birth of this boot says it")
    again = runtime.boot(board)
    check(again.birth()["reset"] == "power" and again.boot == device.boot + 1, again.birth())
    board.reset_cause = lambda: "watchdog"  # the chip's reset cause, when the firmware left no reason
    check(runtime.boot(board).birth()["reset"] == "watchdog", "reset cause")


def test_birth_stays_under_the_device_payload_limit_with_many_errors():
    board = RecordingBoard(dict(GOOD, **{k: "x" * 50 for k in ("keepalive_s", "outbox_size", "watchdog_ms")}))
    board.settings.update({"broker_reboot_s": -1, "ntp_resync_s": 1, "mqtt_backoff_max_s": 0})
    device = runtime.boot(board)
    check(len(device.cfg_errors) == 6, device.cfg_errors)
    payload = wire.encode(device.birth(), wire.MAX_DEVICE_PAYLOAD)
    check(len(payload) < wire.MAX_DEVICE_PAYLOAD, len(payload))


# --- health -------------------------------------------------------------------------


class FakeTask:
    def __init__(self):
        self.finished = False

    def done(self):
        return self.finished


def test_health_feeds_only_while_every_part_checked_in_recently():
    now = [1000]
    h = Health(now=lambda: now[0])
    h.expect("loop", 5000)
    role = FakeTask()
    h.watch("role", role)
    check(h.ok(), h.failing)
    now[0] += 4000
    h.beat("loop")
    now[0] += 4000
    check(h.ok(), "beat 4 s ago is recent")
    now[0] += 2000
    check(not h.ok() and h.failing == "loop" and h.failures == 1, h.failing)
    h.beat("loop")
    check(h.ok(), "beating again heals")
    role.finished = True
    check(not h.ok() and h.failing == "role" and h.failures == 2, h.failing)
    h.watch("role", None)
    check(h.ok(), "a forgotten task is not required")
    h.beat("unknown")  # ignored
    h.forget("loop")
    now[0] += 60000
    check(h.ok(), "nothing required")


async def test_a_dead_role_task_stops_the_watchdog_feeding():
    board = RecordingBoard(dict(GOOD))
    device = runtime.boot(board)
    device.tick_ms = 20

    class DyingRole:
        async def run(self):
            await asyncio.sleep_ms(100)
            raise RuntimeError("driver fault")

        def on_cmd(self, kind, msg):
            pass

    device.role = DyingRole()
    task = asyncio.create_task(runtime.run_device(device))
    try:
        await wait_for(lambda: board.feeds >= 2)
        await wait_for(lambda: device.health.failing == "role")
        fed = board.feeds
        await asyncio.sleep_ms(200)
        check(board.feeds == fed, (fed, board.feeds))
        check(any("role" in line for line in board.logs), board.logs)
    finally:
        task.cancel()


async def test_broker_unreachable_for_broker_reboot_s_reboots_the_board():
    board = RecordingBoard(dict(GOOD, broker_reboot_s=1))  # open_connection always fails
    device = runtime.boot(board)
    device.tick_ms = 20
    task = asyncio.create_task(runtime.run_device(device))
    await wait_for(lambda: board.resets, 5)
    await task
    check(board.resets == ["broker_timeout"], board.resets)
    check("joining_broker" in board.leds and "online" not in board.leds, board.leds)
    check(board.feeds > 0, "fed while healthy")
    check(runtime.boot(board).birth()["reset"] == "broker_timeout", "reported next boot")


# --- flash queue ----------------------------------------------------------------------


def test_flash_queue_is_bounded_counts_drops_and_survives_reboot():
    storage = Board({}).storage
    q = FlashQueue(storage, "readings", 3)
    for i in range(5):
        q.append({"ts": 1763880000 + i, "dist_mm": 1800 + i})
    check(len(q) == 3 and q.dropped == 2, (len(q), q.dropped))
    check(q.peek()["dist_mm"] == 1802 and len(q) == 3, "peek keeps the item")
    again = FlashQueue(storage, "readings", 3)  # after a reboot
    check(len(again) == 3 and again.dropped == 2, (len(again), again.dropped))
    check([again.pop()["dist_mm"] for _ in range(3)] == [1802, 1803, 1804], "oldest first")
    check(again.pop() is None and again.peek() is None and len(again) == 0, "empty")
    check(len(FlashQueue(storage, "readings", 3)) == 0, "pops are on flash too")


def test_flash_queue_drops_a_broken_line_and_a_shrunk_bound():
    storage = Board({}).storage
    storage.write("q", '{"a": 1}\n{"a": 2\n{"a": 3}\n{"a": 4}\n')
    q = FlashQueue(storage, "q", 2)
    check(len(q) == 2 and q.dropped == 2 and q.peek() == {"a": 3}, (len(q), q.dropped))
    check(FlashQueue(storage, "q", 2).dropped == 2, "the repaired file is saved")
    q.clear()
    check(len(FlashQueue(storage, "q", 2)) == 0, "cleared")
    raises(ValueError, FlashQueue, storage, "q", 0)


# --- clock ----------------------------------------------------------------------------


def test_epoch_conversion_for_ports_counting_from_2000():
    check(epoch_offset(2000) == UNIX_AT_2000 == 946684800, epoch_offset(2000))
    check(epoch_offset(1970) == 0, epoch_offset(1970))


async def test_clock_is_unsynced_until_a_sync_succeeds():
    rtc = [UNIX_AT_2000 + 5]  # a fresh ESP32 RTC: early 2000
    results = [False, "raise", True]

    def sync():
        r = results.pop(0)
        if r == "raise":
            raise OSError(110)  # ETIMEDOUT
        if r:
            rtc[0] = 1763880000
        return r

    tk = Timekeeper(sync, now=lambda: rtc[0])
    check(not tk.trust_rtc() and tk.time() is None, "an RTC from 2000 is not trusted")
    check(not await tk.sync_once() and tk.time() is None, "failed")
    check(not await tk.sync_once() and tk.failures == 2, "raised")
    check(await tk.sync_once() and tk.time() == 1763880000 and tk.syncs == 1, tk.time())
    for attempt in range(30):
        ms = tk.retry_ms(attempt)
        check(tk.retry_min_ms // 2 <= ms <= tk.retry_max_ms, (attempt, ms))
    check(tk.retry_ms(30) >= tk.retry_max_ms // 2, "capped, not wrapped")


async def test_clock_syncs_only_with_the_network_up():
    calls = []
    up = [False]
    tk = Timekeeper(lambda: calls.append(1) or True, now=lambda: 1763880000)
    tk.offline_poll_ms = 10
    task = asyncio.create_task(tk.run(lambda: up[0]))
    try:
        await asyncio.sleep_ms(50)
        check(calls == [] and tk.time() is None, calls)
        up[0] = True
        await wait_for(lambda: tk.synced)
        check(tk.time() == 1763880000, tk.time())
    finally:
        task.cancel()


# --- status LED ------------------------------------------------------------------------


async def test_status_led_blinks_the_pattern_of_the_state():
    class LedPin:
        def __init__(self):
            self.levels = []

        def value(self, v):
            self.levels.append(v)

    pin = LedPin()
    seen = []
    led = StatusLed(pin, seen.append)
    led.set("error")  # 100 ms on, 100 ms off
    led.set("error")  # no change, no callback
    task = asyncio.create_task(led.run())
    try:
        await asyncio.sleep_ms(450)
        check(pin.levels[:4] == [1, 0, 1, 0], pin.levels)
        led.set("online")
        await asyncio.sleep_ms(20)
        check(pin.levels[-1] == 1, pin.levels)  # the new pattern starts at once, with its blip
        check(seen == ["error", "online"] and led.changes == 2, seen)
        raises(ValueError, led.set, "disco")
    finally:
        task.cancel()
