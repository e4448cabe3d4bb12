# Water-level board (pos pantau): an ultrasonic ranger looking down at the
# river, a DS18B20 for the speed of sound, the battery, and maybe a siren.
#
# Every interval_s (fast_interval_s while the water rises, is at or above the
# waspada threshold, or a siren sounds) it reads the temperature, measures the
# distance (a burst of echoes, median, outliers dropped: the driver does it),
# reads the battery and publishes a `reading` (CONTRACT §1):
#   {"ts": 1763880000, "dist_mm": 1830, "temp_c": 28.5, "batt_mv": 3950, "n": 5}
# with "err": "no_echo" instead of dist_mm when the burst gave no honest
# distance, and no ts while the clock is not synced.
#
# Unsent readings live on flash. Each reading is numbered (boot, seq) at once
# and appended to a Spool (firmware/core/spool.py): bounded (spool_max,
# default 288 = a day at 300 s), two chunks of it in RAM, the OLDEST kept when
# full and the refused ones counted ("lost", in every reading and the birth
# once non-zero). One sender task publishes the spool's head while the link is
# up and takes it off flash only on its PUBACK: readings reach the controller
# in order, with their original ts, boot and seq, across network cuts,
# reboots and power cuts (a reading from an earlier boot keeps that boot; the
# controller applies each (boot, seq) once, so a resend after a power cut
# between PUBACK and the flash write is harmless).
#
# The siren is decided HERE first, so it works with no network at all:
#   local rule  on when level = mount_mm - dist_mm >= siren_mm (at once); off
#               once the level has stayed below siren_mm - hysteresis_mm for
#               hold_s; a failed measurement changes nothing.
#   controller  cmd/siren {"on": true} turns it on (e.g. danger upstream);
#               {"on": false} releases the controller's hold, but the local
#               rule keeps it on while the water is high.
# The siren sounds while either asks for it.
#
# cmd/config (interval_s, fast_interval_s, mount_mm, siren_mm, hysteresis_mm,
# hold_s) applies at once and is kept in flash ("water.json"), so a board
# that reboots with no network still uses the last configuration it got.
#
# Deep sleep (settings `sleep: true`, a battery board): each wake is a boot.
# The board measures (siren first), spools the reading, waits for the link
# and the spool to empty (at most awake_max_s, default 30), then publishes
# {"online": false, "boot": N, "sleep_s": S} retained, DISCONNECTs cleanly
# (no Will) and deep-sleeps until the next reading is due. No network: it
# sleeps anyway after awake_max_s and the readings wait on flash. The siren
# keeps it awake: while the local rule or the controller wants the siren, the
# board stays up and reads at fast_interval_s (the siren must sound, and the
# hold needs the RAM that deep sleep loses); it sleeps again once it is off.
import asyncio
import json

from firmware.core import clock
from firmware.core.spool import Spool

CONFIG_KEYS = ("interval_s", "fast_interval_s", "mount_mm", "siren_mm", "hysteresis_mm", "hold_s")
CONFIG_FILE = "water.json"
SPOOL_FILE = "readings"  # Spool files: readings.m, readings.0, readings.1, ...
# MicroPython has no builtin TimeoutError; asyncio's own class exists on both.
_Timeout = asyncio.TimeoutError


def _part(board, name):
    """board.<name>() if the board has such a part, else None (parts are optional)."""
    fn = getattr(board, name, None)
    return fn() if fn is not None else None


class WaterRole:
    """Measures, publishes readings, and drives the siren (locally first)."""

    # Defaults when neither the settings nor cmd/config give a value.
    interval_s = 300
    fast_interval_s = 30
    hysteresis_mm = 50
    hold_s = 600
    rise_mm = 20  # a level this much above the previous reading counts as rising
    spool_max = 288  # unsent readings kept on flash: a day at interval_s 300
    spool_chunk = 16  # readings per chunk file (two chunks are in RAM: ~3.5 KB)
    awake_max_s = 30  # a sleeping board's longest wake waiting for the link
    min_sleep_ms = 1000  # a wake that outlasted the period still sleeps this long

    def __init__(self, device):
        self.device = device
        board = device.board
        self.board = board
        self.ranger = _part(board, "rangefinder")
        self.thermometer = _part(board, "thermometer")
        self.battery = _part(board, "battery")
        self.siren = _part(board, "siren")
        self._time = getattr(board, "time", None)
        self.display = board.text_display("main")
        s = device.settings
        self.base = {}
        for k in CONFIG_KEYS:
            if s.get(k) is not None:
                self.base[k] = s[k]
        th = s.get("thresholds_mm") or {}
        self.waspada_mm = th.get("waspada")
        self.saved = self._load()
        self.apply()
        self.level = None  # last good level, mm above the gauge's zero
        self.dist = None  # last good distance
        self.rising = False
        self.local = False  # the local rule wants the siren
        self.remote = False  # the controller wants the siren
        self.wanted_fast = False  # the controller wants fast readings (cmd/config "fast": 1)
        self.remote_level = None
        self.below_since = None  # ticks_ms the level went below the off point
        self.readings = 0
        self.failures = 0  # readings with no distance
        self.errors = 0  # exceptions from a driver during a sample
        self.wake = asyncio.Event()  # a new config or siren command: re-plan the wait
        self.sleep = s.get("sleep") is True and getattr(board, "deep_sleep", None) is not None
        self.awake_max_ms = (s.get("awake_max_s") or self.awake_max_s) * 1000
        self.spool = Spool(board.storage, SPOOL_FILE, s.get("spool_max") or self.spool_max,
                           s.get("spool_chunk") or self.spool_chunk)
        self.queued = asyncio.Event()  # a reading went into the spool
        self.emptied = asyncio.Event()  # the sender found the spool empty
        self.sent = 0  # readings delivered (PUBACK) by this boot
        self.send_failures = 0
        self.bad = 0  # spooled readings that could not be encoded: dropped
        self.display.show(["SIGAP", "Pos pantau air"])

    # --- configuration ----------------------------------------------------------
    def _load(self):
        raw = self.board.storage.read(CONFIG_FILE)
        if not raw:
            return {}
        try:
            saved = json.loads(raw)
        except ValueError:
            return {}
        if not isinstance(saved, dict):
            return {}
        out = {}
        for k in CONFIG_KEYS:
            v = saved.get(k)
            if type(v) is int and v > 0:
                out[k] = v
        return out

    def apply(self):
        """Take the settings, overridden by the config kept in flash."""
        cfg = self.base.copy()
        cfg.update(self.saved)
        self.interval_ms = cfg.get("interval_s", self.interval_s) * 1000
        fast = cfg.get("fast_interval_s", self.fast_interval_s) * 1000
        self.fast_interval_ms = fast if fast < self.interval_ms else self.interval_ms
        self.mount_mm = cfg.get("mount_mm")
        self.siren_mm = cfg.get("siren_mm")
        self.hyst_mm = cfg.get("hysteresis_mm", self.hysteresis_mm)
        self.hold_ms = cfg.get("hold_s", self.hold_s) * 1000

    def configure(self, msg):
        """cmd/config: keep the known keys in flash (only when they change) and apply them.

        "fast": 1 is the controller asking for fast readings (a status held
        above normal, a rise it sees): kept in RAM only, since the retained
        cmd/config comes again on every connect and says it anew."""
        self.wanted_fast = msg.get("fast") == 1
        changed = False
        for k in CONFIG_KEYS:
            v = msg.get(k)
            if v is not None and self.saved.get(k) != v:
                self.saved[k] = v
                changed = True
        if changed:
            self.device.write(CONFIG_FILE, json.dumps(self.saved))  # a full flash: applied, not kept
        self.apply()
        if self.dist is not None and self.mount_mm is not None:
            self.level = self.mount_mm - self.dist
            self.rule(self.level, clock.ticks_ms())
        self.drive()
        self.wake.set()

    # --- siren ------------------------------------------------------------------
    def rule(self, level, now):
        """The local siren rule for a new level."""
        if self.siren_mm is None:
            self.local = False
            return
        if level >= self.siren_mm:
            self.local = True
            self.below_since = None
        elif not self.local:
            self.below_since = None
        elif level < self.siren_mm - self.hyst_mm:
            if self.below_since is None:
                self.below_since = now
            if clock.ticks_diff(now, self.below_since) >= self.hold_ms:
                self.local = False
                self.below_since = None
        else:
            self.below_since = None  # back inside the hysteresis band: the hold starts over

    def drive(self):
        """Switch the siren to what the local rule or the controller asks."""
        s = self.siren
        want = self.local or self.remote
        if s is None or s.is_on == want:
            return
        if want:
            s.on()
        else:
            s.off()

    def on_cmd(self, kind, msg):
        """cmd/siren and cmd/config from the controller."""
        if kind == "siren":
            self.remote = msg["on"]
            self.remote_level = msg.get("level")
            self.drive()
            self.wake.set()
        elif kind == "config":
            self.configure(msg)

    # --- measuring --------------------------------------------------------------
    def fast(self):
        """Whether the next reading comes after fast_interval_s."""
        if self.rising or self.local or self.remote or self.wanted_fast:
            return True
        edge = self.waspada_mm if self.waspada_mm is not None else self.siren_mm
        return self.level is not None and edge is not None and self.level >= edge

    def period_ms(self):
        return self.fast_interval_ms if self.fast() else self.interval_ms

    def update(self, dist):
        """A new measurement (mm, or None when it failed): level, rise, siren."""
        if dist is None:
            self.failures += 1
            return
        self.dist = dist
        if self.mount_mm is None:
            return
        level = self.mount_mm - dist
        self.rising = self.level is not None and level - self.level >= self.rise_mm
        self.level = level
        self.rule(level, clock.ticks_ms())
        self.drive()

    async def sample(self):
        """One reading: measure, decide the siren, publish. Returns the message."""
        temp = None
        if self.thermometer is not None:
            temp = await self.thermometer.read_c()
        dist = None
        n = 0
        if self.ranger is not None:
            dist, n = await self.ranger.measure(temp)
        batt = self.battery.read_mv() if self.battery is not None else None
        self.update(dist)  # the siren first: it must not wait for the network
        msg = {}
        ts = self._time() if self._time is not None else None
        if ts is not None:
            msg["ts"] = ts
        if dist is None:
            msg["err"] = "no_echo" if self.ranger is not None else "no_sensor"
        else:
            msg["dist_mm"] = dist
        if temp is not None:
            msg["temp_c"] = round(temp, 1)
        if batt is not None:
            msg["batt_mv"] = batt
        msg["n"] = n
        if self.spool.dropped:
            msg["lost"] = self.spool.dropped  # readings the full spool refused before this one
        self.readings += 1
        self.device.stamp(msg)
        self.spool.append(msg)
        self.queued.set()
        self.show()
        return msg

    def birth_fields(self):
        """Extra birth fields: unsent and lost readings, failed flash writes."""
        out = {"unsent": len(self.spool)}
        if self.spool.dropped:
            out["lost"] = self.spool.dropped
        errors = self.device.flash_errors + self.spool.write_errors
        if errors:
            out["flash_err"] = errors
        return out

    # --- delivery ---------------------------------------------------------------
    async def _send_loop(self):
        """The spool's head to the broker, in order, each off flash on its PUBACK."""
        device = self.device
        spool = self.spool
        while True:
            item = spool.peek()
            if item is None:
                self.emptied.set()
                self.queued.clear()
                await self.queued.wait()
                continue
            self.emptied.clear()
            if not device.online():
                await device.wait_online()
                continue
            try:
                await device.send("reading", item)
            except Exception:  # MQTTError (link down): sent again after the reconnect
                self.send_failures += 1
                if device.online():
                    # The link holds, so the reading itself is at fault (too large
                    # to encode): drop it, or it would block the spool for ever.
                    self.bad += 1
                    spool.pop()
                continue
            spool.pop()
            self.sent += 1

    async def _flush(self, t0):
        """A sleeping board's wake: until the spool is empty on a live link, at most awake_max_s."""
        left = self.awake_max_ms - clock.ticks_diff(clock.ticks_ms(), t0)
        if left <= 0:
            return
        try:
            await asyncio.wait_for(self._delivered(), left / 1000)
        except _Timeout:
            pass

    async def _delivered(self):
        while len(self.spool) or not self.device.online():
            if len(self.spool):
                self.emptied.clear()
                await self.emptied.wait()
            else:
                await self.device.wait_online()

    def may_sleep(self):
        """A sleeping board sleeps only while no one wants the siren."""
        return self.sleep and not (self.local or self.remote)

    def sleep_ms(self):
        """From now until the next reading is due, this wake counted (at least min_sleep_ms)."""
        left = self.period_ms() - clock.ticks_diff(clock.ticks_ms(), self.device.started)
        return left if left > self.min_sleep_ms else self.min_sleep_ms

    def show(self):
        top = "-- mm" if self.level is None else str(self.level) + " mm"
        self.display.show([top, "SIRENE" if self.local or self.remote else "normal"])

    async def _pause(self, t0):
        """Until the next reading is due (re-planned when a command sets `wake`)."""
        while True:
            left = clock.ticks_diff(clock.ticks_add(t0, self.period_ms()), clock.ticks_ms())
            if left <= 0:
                return
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), left / 1000)
            except _Timeout:
                return

    async def run(self):
        """A reading every period, forever; with `sleep`, deep sleep between them."""
        sender = asyncio.create_task(self._send_loop())
        try:
            while True:
                t0 = clock.ticks_ms()
                try:
                    await self.sample()
                except Exception:  # a driver fault must not end the loop (or the siren rule)
                    self.errors += 1
                if self.may_sleep():
                    await self._flush(t0)
                    if self.may_sleep():  # a retained cmd/siren may have come with the link
                        await self.device.sleep(self.sleep_ms())
                        # Only a virtual board gets here: its Fleet ends this boot.
                        while True:
                            await asyncio.sleep(3600)
                await self._pause(t0)
        finally:
            sender.cancel()
