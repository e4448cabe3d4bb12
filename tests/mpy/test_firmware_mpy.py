# Every board module under real MicroPython, and a role's event handling.
#
# The import test walks firmware/ as copied to /lib, so a CPython-only import or
# name used at import time anywhere in the board code fails `make test` here.
# firmware/board/esp32.py and firmware/main.py need the board's own `machine`
# and `network` modules: they get minimal stand-ins in sys.modules.
import asyncio
import os
import sys

from firmware.core import runtime

SKIP = ("firmware/main.py",)


class _Stub:
    """Stand-in for the ESP32-only modules, enough to import the board file."""

    STA_IF = 0

    class Pin:
        IN = 0
        OUT = 1
        PULL_UP = 2


def _modules(root):
    out = []
    for name in os.listdir(root):
        path = root + "/" + name
        if name.endswith(".py"):
            out.append(path)
        elif "." not in name:
            out.extend(_modules(path))
    return out


def test_every_board_module_imports_on_micropython():
    sys.modules["machine"] = _Stub
    sys.modules["network"] = _Stub
    names = []
    for path in _modules("/lib/firmware"):
        rel = path[len("/lib/"):]
        if rel in SKIP or rel.startswith("firmware/tools/"):
            continue
        mod = rel[:-3].replace("/", ".")
        if mod.endswith(".__init__"):
            mod = mod[: -len(".__init__")]
        __import__(mod)
        names.append(mod)
    if "firmware.roles.counter" not in names or "firmware.core.mqtt" not in names:
        raise AssertionError("walk missed modules: " + str(names))


class Pin:
    def __init__(self):
        self.v = 1

    def value(self, v=None):
        if v is not None:
            self.v = v
        return self.v


class Display:
    def __init__(self):
        self.lines = []
        self.chimes = 0

    def show(self, lines, chime=False):
        self.lines = list(lines)
        if chime:
            self.chimes += 1


class Storage:
    def __init__(self):
        self.files = {}

    def read(self, name):
        return self.files.get(name)

    def write(self, name, text):
        self.files[name] = text


class Board:
    """The board API of firmware/README.md, in plain MicroPython."""

    def __init__(self, settings):
        self.settings = settings
        self.storage = Storage()
        self.pins = {}
        self.displays = {}

    def pin(self, name):
        if name not in self.pins:
            self.pins[name] = Pin()
        return self.pins[name]

    def text_display(self, name):
        if name not in self.displays:
            self.displays[name] = Display()
        return self.displays[name]

    async def open_connection(self, host, port):
        raise OSError("no network in this test")

    async def connect_network(self):
        return True

    def rssi(self):
        return -55

    def heap_free(self):
        return 90000

    def feed_watchdog(self):
        pass

    def reset(self, reason):
        pass


COUNTER = {"device_id": "loket-01", "role": "counter", "prefix": "sigap", "counter": "1"}


def test_boot_counter_survives_reboots_in_flash():
    board = Board(COUNTER)
    first = runtime.boot(board)
    second = runtime.boot(board)
    if (first.boot, second.boot) != (1, 2):
        raise AssertionError((first.boot, second.boot))


def test_counter_keys_become_numbered_events():
    device = runtime.boot(Board(COUNTER))
    device.role.on_key("next")
    device.role.on_key("rate4")
    box = device.mqtt._outbox
    topics = [m[0] for m in box]
    if topics != ["sigap/v1/dev/loket-01/evt/press", "sigap/v1/dev/loket-01/evt/rating"]:
        raise AssertionError(topics)
    from protocol import wire

    press = wire.decode(box[0][1], wire.MAX_DEVICE_PAYLOAD)
    rating = wire.decode(box[1][1], wire.MAX_DEVICE_PAYLOAD)
    if (press["seq"], press["key"], rating["seq"], rating["score"]) != (1, "next", 2, 4):
        raise AssertionError((press, rating))
    wire.validate_press(press, "counter")
    wire.validate_rating(rating)


def test_show_command_reaches_the_display_and_retained_calls_do_not_chime():
    device = runtime.boot(Board({"device_id": "disp-01", "role": "display", "prefix": "sigap"}))
    display = device.board.displays["main"]
    device._on_message("sigap/v1/dev/disp-01/cmd/show", b'{"lines":["A012","LOKET 3"],"chime":true}', False)
    if display.lines != ["A012", "LOKET 3"] or display.chimes != 1:
        raise AssertionError((display.lines, display.chimes))
    device._on_message("sigap/v1/dev/disp-01/cmd/show", b'{"lines":["A013","LOKET 3"],"chime":true}', True)
    if display.lines != ["A013", "LOKET 3"] or display.chimes != 1:
        raise AssertionError((display.lines, display.chimes))
    # A malformed command is dropped, the display keeps what it shows.
    device._on_message("sigap/v1/dev/disp-01/cmd/show", b'{"lines": 5}', False)
    if display.lines != ["A013", "LOKET 3"]:
        raise AssertionError(display.lines)


async def test_button_task_debounces_a_press_into_one_event():
    device = runtime.boot(Board(COUNTER))
    pin = device.board.pins["next"]
    task = asyncio.create_task(device.role.run())
    pin.value(0)
    await asyncio.sleep_ms(120)
    pin.value(1)
    await asyncio.sleep_ms(120)
    task.cancel()
    if device.seq != 1:
        raise AssertionError("events: " + str(device.seq))
