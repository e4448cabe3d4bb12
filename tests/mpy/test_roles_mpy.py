# The roles' event handling under real MicroPython, on a plain fake board.
#
# No network: the Device's MQTT client never connects, so an emitted event
# stays in its outbox (device.mqtt._outbox: [topic, payload, retain, qos, ...])
# where the test reads it. "Online" is faked by replacing isconnected().
from test_firmware_mpy import Board

from firmware.core import runtime
from firmware.roles.counter import CounterRole
from firmware.roles.kiosk import REFUSAL_TEXT, TROUBLE
from firmware.roles.water import CONFIG_FILE, WaterRole
from protocol import wire


class Printer:
    """EscPos-shaped: records what it was asked to print."""

    def __init__(self):
        self.tickets = []
        self.notices = []

    def print_ticket(self, answer):
        self.tickets.append(answer["ticket"])

    def print_notice(self, title, lines=()):
        self.notices.append((title, list(lines)))


class Ranger:
    """measure() answers from a script of (mm or None, n)."""

    def __init__(self):
        self.script = []
        self.temps = []

    async def measure(self, temp_c=None):
        self.temps.append(temp_c)
        return self.script.pop(0) if self.script else (None, 0)


class Thermometer:
    def __init__(self, c=28.25):
        self.c = c

    async def read_c(self):
        return self.c


class Battery:
    def read_mv(self):
        return 3950


class Siren:
    def __init__(self):
        self.is_on = False
        self.switches = 0

    def on(self):
        if not self.is_on:
            self.switches += 1
        self.is_on = True

    def off(self):
        self.is_on = False


class PartsBoard(Board):
    """The fake board of test_firmware_mpy plus the optional parts."""

    def __init__(self, settings, printer=None, ranger=None, thermometer=None, battery=None, siren=None):
        super().__init__(settings)
        self._printer = printer
        self._ranger = ranger
        self._thermometer = thermometer
        self._battery = battery
        self._siren = siren
        self.now = 1763880000

    def printer(self):
        return self._printer

    def rangefinder(self):
        return self._ranger

    def thermometer(self):
        return self._thermometer

    def battery(self):
        return self._battery

    def siren(self):
        return self._siren

    def time(self):
        return self.now


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def spooled(role):
    """The readings waiting in the water role's flash spool, oldest first (taken out)."""
    out = []
    while len(role.spool):
        out.append(role.spool.pop())
    return out


def outbox(device, kind):
    return [wire.decode(m[1], wire.MAX_DEVICE_PAYLOAD) for m in device.mqtt._outbox if m[0].endswith(kind)]


# --- kiosk ---------------------------------------------------------------------

KIOSK = {"device_id": "kiosk-01", "role": "kiosk", "prefix": "sigap", "services": ["A", "B"]}
ANSWER = {"re": 1, "ticket": "A012", "service": "Perekaman KTP-el", "ahead": 5, "url": "http://x/t/abc"}


def kiosk():
    printer = Printer()
    device = runtime.boot(PartsBoard(KIOSK, printer=printer))
    return device, device.role, printer


def test_kiosk_prints_a_duplicated_answer_once():
    device, role, printer = kiosk()
    role.on_key("A")
    check(device.board.displays["main"].lines[0] == "Memproses...", device.board.displays["main"].lines)
    role.on_cmd("ticket", dict(ANSWER))
    role.on_cmd("ticket", dict(ANSWER))  # QoS 1 duplicate / answer to a resend
    check(printer.tickets == ["A012"], printer.tickets)
    check(role.repeats == 1, role.repeats)
    check(device.board.displays["main"].lines[0] == "A012", device.board.displays["main"].lines)
    role.on_cmd("ticket", {"re": 9, "ticket": "A013"})  # no such press
    check(printer.tickets == ["A012"] and role.strays == 1, (printer.tickets, role.strays))


def test_kiosk_resends_the_same_press_then_reports_trouble():
    device, role, printer = kiosk()
    device.mqtt.isconnected = lambda: True
    role.answer_timeout_ms = 0
    role.on_key("B")
    for _ in range(role.resends + 2):
        role.check()
    presses = [m[1] for m in device.mqtt._outbox]
    check(len(presses) == 1 + role.resends, presses)
    for p in presses:
        check(p == presses[0], presses)  # byte for byte: same boot, same seq
    check(wire.decode(presses[0], 1024)["seq"] == 1, presses[0])
    check(device.board.displays["main"].lines == list(TROUBLE), device.board.displays["main"].lines)
    # A late answer still prints, once: the controller counted this citizen.
    role.on_cmd("ticket", {"re": 1, "ticket": "B001"})
    role.on_cmd("ticket", {"re": 1, "ticket": "B001"})
    check(printer.tickets == ["B001"], printer.tickets)


def test_kiosk_sends_again_after_the_link_came_back():
    device, role, printer = kiosk()
    online = [False]
    device.mqtt.isconnected = lambda: online[0]
    device.mqtt.stats["connects"] = 3
    role.on_key("A")  # made offline: the next connection (the 4th) carries it from the outbox
    role.check()  # offline: nothing more is sent
    online[0] = True
    device.mqtt.stats["connects"] = 4
    role.check()
    check(len(device.mqtt._outbox) == 1 and role.resent == 0, role.resent)
    role.on_cmd("ticket", {"re": 1, "ticket": "A001"})
    role.on_key("A")  # seq 2, sent on connection 4
    online[0] = False  # ... whose answer is lost with it
    role.check()
    check(len(device.mqtt._outbox) == 2, device.mqtt._outbox)
    online[0] = True
    device.mqtt.stats["connects"] = 5
    role.check()  # a new connection: the answer may have been lost with the old one
    check(len(device.mqtt._outbox) == 3 and role.resent == 1, role.resent)
    check(device.mqtt._outbox[2][1] == device.mqtt._outbox[1][1], device.mqtt._outbox)
    role.check()  # within the timeout: no further send
    check(len(device.mqtt._outbox) == 3, device.mqtt._outbox)
    role.on_cmd("ticket", {"re": 2, "ticket": "A002"})
    check(printer.tickets == ["A001", "A002"], printer.tickets)


def test_kiosk_refusal_is_printed_in_indonesian_and_prio_marks_one_press():
    device, role, printer = kiosk()
    role.on_key("prio")
    role.on_key("A")
    role.on_key("A")
    presses = outbox(device, "evt/press")
    check(presses[0].get("prio") is True and "prio" not in presses[1], presses)
    role.on_cmd("ticket", {"re": 1, "error": "closed"})
    check(printer.notices == [("MAAF", [REFUSAL_TEXT["closed"]])], printer.notices)
    check(device.board.displays["main"].lines == ["MAAF", "Layanan sedang tutup"], device.board.displays["main"].lines)


def test_kiosk_without_a_printer_still_shows_the_ticket():
    device = runtime.boot(Board(KIOSK))
    device.role.on_key("A")
    device.role.on_cmd("ticket", dict(ANSWER))
    check(device.board.displays["main"].lines[0] == "A012", device.board.displays["main"].lines)


# --- counter -------------------------------------------------------------------


def test_counter_pause_toggles_and_transfer_sends_the_picked_service():
    board = Board({"device_id": "loket-01", "role": "counter", "prefix": "sigap", "counter": "1",
                   "transfer_to": ["B", "C"]})
    device = runtime.boot(board)
    role = device.role
    role.on_key("pause")
    role.on_key("pause")
    role.on_key("transfer")  # picks B
    role.on_key("transfer")  # picks C
    check(board.displays["main"].lines[0] == "PINDAH C", board.displays["main"].lines)
    role.on_long("transfer")
    role.on_long("transfer")  # nothing picked any more, two targets: ambiguous, nothing sent
    keys = [(m["key"], m.get("to")) for m in outbox(device, "evt/press")]
    check(keys == [("pause", None), ("resume", None), ("transfer", "C")], keys)
    for m in outbox(device, "evt/press"):
        wire.validate_press(m, "counter")
    check(isinstance(role, CounterRole), role)


async def test_counter_transfer_hints_go_back_to_the_last_show_when_nothing_answers():
    import asyncio

    board = Board({"device_id": "loket-01", "role": "counter", "prefix": "sigap", "counter": "1",
                   "transfer_to": ["B", "C"]})
    role = runtime.boot(board).role
    role.transfer_pick_ms = role.hint_ms = 40
    shown = board.displays["main"]
    role.on_cmd("show", {"lines": ["A007", "Menunggu 3"]})
    role.on_key("transfer")  # picks B, never confirmed
    check(shown.lines[0] == "PINDAH B", shown.lines)
    await asyncio.sleep_ms(80)
    check(shown.lines == ["A007", "Menunggu 3"] and role.pick == -1, (shown.lines, role.pick))
    role.on_key("transfer")
    role.on_long("transfer")  # sent; the controller refuses it: no new show
    check(shown.lines == ["PINDAH B", "Mengirim..."], shown.lines)
    await asyncio.sleep_ms(80)
    check(shown.lines == ["A007", "Menunggu 3"], shown.lines)  # the ticket that stayed
    role.on_key("transfer")
    role.on_long("transfer")  # sent and done: the controller's new show stays
    role.on_cmd("show", {"lines": ["----", "Menunggu 3"]})
    await asyncio.sleep_ms(80)
    check(shown.lines == ["----", "Menunggu 3"], shown.lines)


# --- water ---------------------------------------------------------------------

WATER = {"device_id": "wl-01", "role": "water", "prefix": "sigap", "mount_mm": 4000, "interval_s": 300,
         "fast_interval_s": 30, "siren_mm": 2600, "hysteresis_mm": 50, "hold_s": 0,
         "thresholds_mm": {"waspada": 1500, "siaga": 2200, "awas": 2800}}


def water(settings=WATER):
    board = PartsBoard(settings, ranger=Ranger(), thermometer=Thermometer(), battery=Battery(), siren=Siren())
    device = runtime.Device(board)
    device.role = WaterRole(device)
    return device, device.role, board


async def test_water_reading_carries_level_inputs_and_sounds_the_local_siren_offline():
    device, role, board = water()
    board._ranger.script = [(1000, 5)]  # level 3000 >= siren_mm 2600
    await role.sample()
    check(board._ranger.temps == [28.25], board._ranger.temps)  # temperature compensation asked for
    r = spooled(role)[0]
    wire.validate_reading(r)
    check((r["dist_mm"], r["n"], r["batt_mv"], r["ts"]) == (1000, 5, 3950, 1763880000), r)
    check(abs(r["temp_c"] - 28.25) < 0.1, r)
    check(role.level == 3000 and board._siren.is_on, (role.level, board._siren.is_on))
    check(not device.mqtt.isconnected(), "this test has no network")


async def test_water_failed_measurement_reports_no_echo_and_keeps_the_siren():
    device, role, board = water()
    board._ranger.script = [(1000, 5), (None, 1)]
    await role.sample()
    await role.sample()
    r = spooled(role)[1]
    check(r.get("err") == "no_echo" and "dist_mm" not in r and r["n"] == 1, r)
    check(board._siren.is_on and role.failures == 1, role.failures)


async def test_water_chooses_the_fast_interval_when_rising_or_high():
    device, role, board = water()
    board._ranger.script = [(3500, 5), (3500, 5), (3400, 5), (3400, 5), (2400, 5), (2400, 5)]
    await role.sample()  # level 500: low and no history
    check(role.period_ms() == 300000, role.period_ms())
    await role.sample()  # steady
    check(role.period_ms() == 300000, role.period_ms())
    await role.sample()  # +100 mm: rising
    check(role.period_ms() == 30000, role.period_ms())
    await role.sample()  # steady again, still low
    check(role.period_ms() == 300000, role.period_ms())
    await role.sample()  # level 1600: a jump (rising) to above waspada 1500
    await role.sample()  # steady, but at or above waspada
    check(not role.rising and role.period_ms() == 30000, role.period_ms())
    check(not board._siren.is_on, "below siren_mm")


async def test_water_siren_hysteresis_and_hold():
    device, role, board = water()
    role.hold_ms = 60000
    board._ranger.script = [(1400, 5), (1420, 5), (1460, 5), (1460, 5)]
    await role.sample()  # 2600: on
    await role.sample()  # 2580: inside the 50 mm band, stays on
    check(board._siren.is_on and role.below_since is None, role.below_since)
    await role.sample()  # 2540: below the band, the hold starts
    check(board._siren.is_on and role.below_since is not None, role.below_since)
    role.hold_ms = 0  # the hold has passed
    await role.sample()
    check(not board._siren.is_on, "off after the hold")


async def test_water_obeys_cmd_siren_and_keeps_it_on_while_high():
    device, role, board = water()
    role.on_cmd("siren", {"on": True, "level": "awas"})
    check(board._siren.is_on, "controller turns it on")
    role.on_cmd("siren", {"on": False})
    check(not board._siren.is_on, "controller turns it off")
    board._ranger.script = [(1000, 5)]
    await role.sample()
    role.on_cmd("siren", {"on": False})
    check(board._siren.is_on, "the local rule keeps it on while the water is high")


async def test_water_reads_fast_while_the_controller_asks_for_it():
    device, role, board = water()
    board._ranger.script = [(3500, 5)]
    await role.sample()  # level 500: calm, steady
    role.on_cmd("config", {"interval_s": 300, "fast_interval_s": 30})
    check(not role.fast() and role.period_ms() == 300000, role.period_ms())
    # The controller holds a status above normal (hysteresis and hold) while the
    # level is back below the board's own edge: it asks for fast readings.
    role.on_cmd("config", {"interval_s": 300, "fast_interval_s": 30, "fast": 1})
    check(role.fast() and role.period_ms() == 30000, role.period_ms())
    role.on_cmd("config", {"interval_s": 300, "fast_interval_s": 30})
    check(not role.fast(), "a config without the flag ends it")


async def test_water_config_applies_and_is_kept_in_flash():
    device, role, board = water()
    board._ranger.script = [(1500, 5)]
    await role.sample()  # level 2500 < siren 2600
    check(not board._siren.is_on, "below")
    role.on_cmd("config", {"siren_mm": 2400, "interval_s": 600, "fast_interval_s": 60})
    check(board._siren.is_on, "re-judged at once with the new siren_mm")
    check(role.fast_interval_ms == 60000 and role.interval_ms == 600000, role.interval_ms)
    saved = board.storage.files[CONFIG_FILE]
    role.on_cmd("config", {"siren_mm": 2400, "interval_s": 600, "fast_interval_s": 60})
    check(board.storage.files[CONFIG_FILE] is saved, "an unchanged config is not written again")
    # A reboot with no network uses what flash holds.
    again = WaterRole(device)
    check(again.siren_mm == 2400 and again.interval_ms == 600000, again.siren_mm)
