# Heap used by each role on real MicroPython (not a test file: tests/mpy/heap.mjs
# on the WebAssembly port and tests/bench/firmware_heap_unix.py on a 32-bit
# unix build run `await heap_roles.main(role)` in a fresh interpreter per role,
# with a heap about the size of an ESP32's without PSRAM).
#
# The board is fake but the code on it is real: the role, the runtime (Device
# with its supervisor, LED and watchdog tasks), the MQTT client and the real
# drivers (SSD1306 OLED, MAX7219 chain, ESC/POS printer, JSN-SR04T ranger,
# battery ADC, siren) over pins, buses and a UART that swallow what they get.
# The board's flash is the interpreter's file system (Storage), outside the
# heap as flash is on a board. The network is an in-memory broker (Link): it
# answers CONNECT, SUBSCRIBE, PINGREQ and every QoS 1 PUBLISH (PUBACK), so the
# outbox drains as online, and commands (cmd/ticket, cmd/show) reach the board as real PUBLISH packets
# through the client's read loop, the runtime's decode/validate and the role.
# Key presses call the role's on_key (what a debounced Button calls); the
# button tasks poll their idle pins meanwhile. Water readings call the role's
# sample() (what its loop calls every interval) with the ranger's gap at 0.
#
# Measured (bytes from gc.mem_alloc(), after full_collect(): see there why a
# plain gc.collect() is not enough on this port):
#   boot    what import + boot keeps, from a heap holding only this module,
#           with the device online and idle;
#   iter    the largest growth within one iteration of the steady loop: each
#           iteration starts with gc.collect() and is sampled, without
#           collecting, after each step (garbage included); what the fake
#           broker allocates meanwhile (the controller's message, packets,
#           its buffers: Link tells the Meter) is left out, as it is not on
#           a board (no collection runs within an iteration, so the
#           subtraction is exact);
#   peak    the most heap in use at any sample point of the loop, from the
#           same base as boot (what must fit, before WiFi and TLS take
#           their share); at least boot + iter. Sampled in the iterations
#           that start right after full_collect() (every EVERY-th): in the
#           others the heap also holds what JavaScript still pins, which a
#           board does not have (up to 7 KB more for water, whose loop
#           awaits most);
#   growth  heap kept after the loop minus after the warm-up iterations: a
#           leak shows here (a few hundred bytes of noise come from objects
#           JavaScript has not let go of yet);
#   code    (code(), in a second fresh interpreter) what importing exactly the
#           firmware and protocol modules the role loaded keeps: bytecode,
#           constants and interned names loaded from the .mpy files, plus the
#           modules' and classes' dicts and function objects. Modules frozen
#           into the MicroPython image run their bytecode from flash and keep
#           their names in ROM, so on a board built that way the heap holds
#           about peak - code, plus the dicts (a few KB).
import asyncio
import gc
import json

TS = 1763880000
AT = "2026-11-23T08:15:04+07:00"


# --- fake hardware --------------------------------------------------------------------


class Pin:
    def __init__(self, v=1):
        self.v = v

    def value(self, v=None):
        if v is not None:
            self.v = v
        return self.v

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.v = 1

    def off(self):
        self.v = 0


class Sink:
    """A bus or UART that swallows bytes (SPI write, I2C writeto, UART write)."""

    def __init__(self):
        self.n = 0

    def write(self, data):
        self.n += len(data)
        return len(data)

    def writeto(self, addr, data):
        self.n += len(data)


class ADC:
    def read_u16(self):
        return 39000  # ~3.9 V behind a 1:2 divider


class Thermometer:
    async def read_c(self):
        return 28.25


class Storage:
    """Files in the interpreter's file system (outside MicroPython's heap), as a
    board keeps them on flash: a dict of texts would count the flash as RAM
    (the water board's spool alone has 19 chunk files)."""

    def __init__(self, role, root="/"):
        import os

        self.dir = root + "flash-" + role + "/"
        try:
            os.mkdir(self.dir[:-1])
        except OSError:  # exists
            pass

    def read(self, name):
        try:
            with open(self.dir + name) as f:
                return f.read()
        except OSError:
            return None

    def write(self, name, text):
        with open(self.dir + name, "w") as f:
            f.write(text)


class Link:
    """Both ends of an in-memory connection: the client's reader and writer,
    and the broker behind them (answers what it is sent). What the broker side
    allocates (its parsing, its answers, its buffers) is told to the meter:
    it is not the board's heap."""

    def __init__(self, mqtt, meter):
        self.mq = mqtt
        self.meter = meter
        self.rx = bytearray()  # client -> broker, not yet parsed
        self.tx = bytearray()  # broker -> client, not yet read
        self.ev = asyncio.Event()
        self.closed = False
        self.published = 0
        self.pid = 0

    def _broker(self, since):
        if self.meter is not None:
            self.meter.broker += gc.mem_alloc() - since

    # writer
    def write(self, data):
        a = gc.mem_alloc()
        self.rx.extend(data)  # on a board the bytes go to the network stack, outside the heap
        self._serve()
        self._broker(a)

    async def drain(self):
        pass

    def close(self):
        self.closed = True
        self.ev.set()

    async def wait_closed(self):
        pass

    # reader
    async def readexactly(self, n):
        while len(self.tx) < n:
            if self.closed:
                raise EOFError
            self.ev.clear()
            await self.ev.wait()
        data = bytes(self.tx[:n])  # the board's: a stream read allocates it on a board too
        a = gc.mem_alloc()
        self.tx = self.tx[n:]
        self._broker(a)
        return data

    # broker
    def send(self, data):
        self.tx.extend(data)
        self.ev.set()

    def publish(self, topic, payload, since=None):
        """A QoS 1 PUBLISH from the broker to the board; what was allocated since
        `since` (a gc.mem_alloc(): the payload's making) counts as the broker's too."""
        a = gc.mem_alloc() if since is None else since
        self.pid = self.pid % 65535 + 1
        self.send(self.mq.publish_packet(topic, payload, 1, False, False, self.pid))
        self._broker(a)

    def _serve(self):
        mq = self.mq
        while self.rx:
            try:
                first, body, nxt = mq.split_packet(self.rx)
            except mq.MQTTError:
                return  # incomplete
            self.rx = self.rx[nxt:]
            t = first >> 4
            if t == 1:  # CONNECT
                self.send(b"\x20\x02\x00\x00")
            elif t == 3:  # PUBLISH
                self.published += 1
                if first & 0x06:
                    tl = (body[0] << 8) | body[1]
                    self.send(b"\x40\x02" + body[2 + tl : 4 + tl])
            elif t == 8:  # SUBSCRIBE: grant QoS 1 to each topic
                n = 0
                i = 2
                while i < len(body):
                    i += 2 + ((body[i] << 8) | body[i + 1]) + 1
                    n += 1
                self.send(bytes((0x90, 2 + n)) + body[0:2] + b"\x01" * n)
            elif t == 12:  # PINGREQ
                self.send(b"\xd0\x00")
            elif t == 14:  # DISCONNECT
                self.close()


class Board:
    def __init__(self, settings, role, storage):
        from firmware.core import mqtt

        self.mq = mqtt
        self.settings = settings
        self.storage = storage
        self.pins = {}
        self.link = None
        self.role = role
        self._display = None
        self._printer = None
        self._ranger = None
        self._battery = None
        self._siren = None
        self.echo_us = 10000
        self.meter = None  # set once the steady loop is measured

    def pin(self, name):
        if name not in self.pins:
            self.pins[name] = Pin()
        return self.pins[name]

    def text_display(self, name):
        if self._display is None:
            from firmware.drivers.displays import text

            if self.role == "display":  # a hall display: 8 dot-matrix modules, scrolling
                from firmware.drivers.displays.max7219 import MAX7219

                self._display = text.MatrixText(MAX7219(Sink(), Pin(), 8))
            else:  # a 128x64 OLED
                from firmware.drivers.displays.ssd1306 import SSD1306

                self._display = text.OledText(SSD1306(Sink()))
        return self._display

    def printer(self):
        if self.role != "kiosk":
            return None
        if self._printer is None:
            from firmware.drivers.printer.escpos import EscPos

            self._printer = EscPos(Sink())
        return self._printer

    def rangefinder(self):
        if self.role != "water":
            return None
        if self._ranger is None:
            from firmware.drivers.sensors.ultrasonic import JSNSR04T

            self._ranger = JSNSR04T(Pin(0), Pin(0), self._pulse)
            self._ranger.gap_ms = 0
        return self._ranger

    def _pulse(self, pin, level, timeout_us):
        return self.echo_us

    def thermometer(self):
        return Thermometer() if self.role == "water" else None

    def battery(self):
        if self.role != "water":
            return None
        if self._battery is None:
            from firmware.drivers.sensors.battery import Battery

            self._battery = Battery(ADC())
        return self._battery

    def siren(self):
        if self.role != "water":
            return None
        if self._siren is None:
            from firmware.drivers.outputs.siren import Siren

            self._siren = Siren(Pin(0))
        return self._siren

    def time(self):
        return TS

    async def open_connection(self, host, port):
        self.link = Link(self.mq, self.meter)
        return self.link, self.link

    async def connect_network(self):
        return True

    def network_up(self):
        return True

    def rssi(self):
        return -55

    def heap_free(self):
        return gc.mem_free()

    def feed_watchdog(self):
        pass

    def reset(self, reason):
        pass

    def log(self, text):
        pass


SETTINGS = {
    "kiosk": {"services": ["A", "B", "C", "D"]},
    "counter": {"counter": "3", "transfer_to": ["B", "C"]},
    "display": {},
    "water": {
        "mount_mm": 4000,
        "interval_s": 300,
        "fast_interval_s": 30,
        "siren_mm": 2600,
        "hysteresis_mm": 50,
        "hold_s": 0,
        "thresholds_mm": {"waspada": 1500, "siaga": 2200, "awas": 2800},
    },
}
ITERATIONS = {"kiosk": 200, "counter": 500, "display": 500, "water": 300}
EVERY = 5  # a full collection every EVERY iterations; the peak is sampled in those
COUNTER_KEYS = ("next", "recall", "rate4", "next", "skip", "done", "rate3", "pause", "pause")


class Meter:
    def __init__(self):
        self.peak = 0
        self.iter_peak = 0
        self.start = 0
        self.clean = False
        self.broker = 0  # bytes the fake broker allocated since begin(): not the board's

    def begin(self, clean):
        """An iteration starts. clean: right after full_collect(), so the heap holds
        only what the board holds; else after gc.collect(), which leaves what
        JavaScript still pins (see full_collect) and would count it as the board's."""
        gc.collect()
        self.start = gc.mem_alloc()
        self.clean = clean
        self.broker = 0
        self.sample()

    def sample(self):
        a = gc.mem_alloc() - self.broker
        if self.clean and a > self.peak:
            self.peak = a
        if a - self.start > self.iter_peak:
            self.iter_peak = a - self.start


async def full_collect():
    """gc.collect() once JavaScript has let go of what it held. This port hands
    Python objects to JavaScript (asyncio's timer callbacks: ~40 bytes per
    await) and keeps them alive until JavaScript's GC has run and its
    finalizers have been called back, a few event-loop turns later; and
    garbage made since the last return to JavaScript survives gc.collect().
    node --expose-gc gives js.gc; the collection is repeated until the heap
    stops shrinking. Elsewhere (the unix port) nothing is pinned from outside,
    so the rounds need no pause for JavaScript."""
    try:
        import js

        jsgc = js.gc
    except (ImportError, AttributeError):
        jsgc = None
    best = None
    calm = 0
    for _ in range(30):
        if jsgc is not None:
            jsgc()
        await asyncio.sleep_ms(0 if jsgc is None else 20)
        gc.collect()
        a = gc.mem_alloc()
        if best is not None and a >= best:
            calm += 1
            if calm >= 3:
                break
        else:
            calm = 0
            best = a
    return best


async def settle(device, m, done=None):
    """Let the tasks run until the outbox is empty (and done() holds), sampling."""
    for _ in range(200):
        await asyncio.sleep_ms(0)
        m.sample()
        if device.mqtt.pending() == 0 and (done is None or done()):
            return
    raise AssertionError("did not settle: pending " + str(device.mqtt.pending()))


def ours(name):
    return name.startswith("firmware") or name.startswith("protocol")


class ImportOrder:
    """Records the firmware and protocol modules in the order their import
    finished (a module after the modules it imports), through builtins.__import__.
    A module is new in the innermost import call that loaded it, and complete
    when that call returns."""

    def __init__(self):
        import builtins
        import sys

        self.builtins = builtins
        self.orig = builtins.__import__
        self.order = []
        self.sys = sys
        builtins.__import__ = self.hook

    def hook(self, name, globals=None, locals=None, fromlist=(), level=0):
        # Few frames (no comprehensions, no calls): this port's Python stack is small.
        modules = self.sys.modules
        before = set(modules)
        mod = self.orig(name, globals, locals, fromlist, level)
        if len(modules) != len(before):
            new = []
            for k in modules:
                if k not in before and k not in self.order and (k[:8] == "firmware" or k[:8] == "protocol"):
                    new.append(k)
            while new:  # a package before its modules
                k = min(new)
                new.remove(k)
                self.order.append(k)
        return mod

    def stop(self):
        self.builtins.__import__ = self.orig


def loaded_modules(order):
    """The firmware and protocol modules loaded now (not those the runtime
    dropped after boot): those in `order` first, in that order."""
    import sys

    kept = [k for k in order if k in sys.modules]
    return kept + sorted(k for k in sys.modules if ours(k) and k not in order)


async def code(names):
    """Heap kept by importing the modules `names` (a list, each after the modules
    it imports) and nothing else; and what each import added (a package's
    __init__ counts with its first module)."""
    import os
    import sys

    base = await full_collect()
    last = base
    each = []
    for name in names:
        __import__(name)
        now = await full_collect()
        each.append((name, now - last))
        last = now
    # The .mpy files' bytes: bytecode, names and constants, which a ROMFS partition or a
    # frozen image keeps in flash (read in place) instead of copying into the heap.
    mpy = 0
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and path.endswith(".mpy"):
            mpy += os.stat(path)[6]
    return json.dumps({"code": last - base, "each": each, "mpy": mpy})


async def main(role, flash="/"):
    """Boot `role` and run its steady loop; the figures as JSON. flash: the
    directory (ending in "/") under which the board's flash files go."""
    storage = Storage(role, flash)
    storage.write("warm", "")  # the file system's own first-use state, which a board has before main.py
    storage.read("warm")
    base = await full_collect()
    heap0 = gc.mem_alloc() + gc.mem_free()
    # asyncio (frozen on every port) loads its parts lazily with a relative
    # __import__, which resolves against the caller's globals: through the hook
    # those would be this module's. So load them now (counted in boot).
    for name in getattr(asyncio, "_attrs", ()):
        getattr(asyncio, name)
    order = ImportOrder()
    from firmware.core import runtime

    settings = {
        "device_id": role + "-01",
        "role": role,
        "prefix": "sigap",
        "broker_host": "broker",
        "broker_port": 1883,
    }
    settings.update(SETTINGS[role])
    board = Board(settings, role, storage)
    device = runtime.boot(board)
    r = device.role
    task = asyncio.create_task(device.run())
    for _ in range(100):
        await asyncio.sleep_ms(10)
        if device.online() and device.mqtt.pending() == 0:
            break
    if not device.online():
        raise AssertionError("never online: " + str(device.mqtt.last_error))
    order.stop()  # modules imported later (lazily, in the loop) are listed after, sorted
    cmd = "sigap/v1/dev/" + device.id + "/cmd/"
    boot_bytes = await full_collect() - base
    m = Meter()
    board.meter = board.link.meter = m
    n = ITERATIONS[role]
    warm = 10
    after_warm = 0
    display = board.text_display("main")
    for i in range(n):
        clean = i == warm or i % EVERY == 0
        if i == warm:
            after_warm = await full_collect()
        elif clean:
            await full_collect()  # lets JavaScript release its proxies (see full_collect)
        m.begin(clean)
        if role == "kiosk":
            printer = board.printer()
            before = printer.tickets
            seq = r.on_key("ABCD"[i % 4]) or device.seq
            m.sample()
            since = gc.mem_alloc()
            answer = {
                "re": seq,
                "ticket": f"{'ABCD'[i % 4]}{i % 1000:03d}",
                "service": "Perekaman KTP-el",
                "agency": "Disdukcapil Kota",
                "ahead": i % 17,
                "wait_min": 3 * (i % 17),
                "at": AT,
                "url": f"https://sigap.example.id/t/{i * 2654435761 & 0xFFFFFFFF:08x}",
            }
            board.link.publish(cmd + "ticket", json.dumps(answer), since)
            answer = None
            m.sample()
            await settle(device, m, lambda p=printer, b=before: p.tickets > b)
            if i % 20 == 0:
                r.check()  # the tick's look at unanswered presses
        elif role == "counter":
            r.on_key(COUNTER_KEYS[i % len(COUNTER_KEYS)])
            m.sample()
            shown = display.shown
            since = gc.mem_alloc()
            board.link.publish(
                cmd + "show", f'{{"lines":["A{i % 1000:03d}","Menunggu: {i % 30}"],"chime":false}}', since
            )
            m.sample()
            await settle(device, m, lambda s=shown: display.shown > s)
        elif role == "display":
            shown = display.shown
            since = gc.mem_alloc()
            lines = f'"A{i % 1000:03d} LOKET {1 + i % 8}","B{i // 2 % 1000:03d} LOKET 2","C{i // 3 % 1000:03d} LOKET 5"'
            board.link.publish(cmd + "show", '{"lines":[' + lines + '],"chime":true}', since)
            m.sample()
            await settle(device, m, lambda s=shown: display.shown > s)
            await asyncio.sleep_ms(1)  # a few blink / scroll frames
            m.sample()
        else:  # water: the level rises and falls across siren_mm
            board.echo_us = 6000 + (i * 97) % 20000
            await r.sample()
            m.sample()
            await settle(device, m, lambda: len(r.spool) == 0)  # the sender took it off flash
    growth = await full_collect() - after_warm
    added = gc.mem_alloc() + gc.mem_free() - heap0  # this port adds heap areas when full
    task.cancel()
    out = {
        "role": role,
        "boot": boot_bytes,
        "peak": m.peak - base,
        "iter": m.iter_peak,
        "growth": growth,
        "n": n - warm,
        "added": added,
        "published": board.link.published,
        "modules": loaded_modules(order.order),
    }
    return json.dumps(out)
