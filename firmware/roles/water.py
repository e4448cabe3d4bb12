# Water-level board (pos pantau): an ultrasonic ranger looking down at the
# river, a DS18B20 for the speed of sound, the battery, and maybe a siren.
#
# Every interval_s (fast_interval_s while the water rises, is at or above the
# waspada threshold, or a siren sounds) it reads the temperature, measures the
# distance (a burst of echoes, median, outliers dropped: the driver does it),
# reads the battery and publishes a `reading` (CONTRACT §1):
#   {"ts": 1763880000, "dist_mm": 1830, "temp_c": 28.5, "batt_mv": 3950, "n": 5}
# with "err": "no_echo" instead of dist_mm when the burst gave no honest
# distance, and no ts while the clock is not synced. Offline, readings wait in
# the runtime's outbox and go out with their original ts after reconnecting.
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
# Deep sleep between readings (settings `deep_sleep`) is not done here yet:
# the board stays awake and connected.
import asyncio
import json

from firmware.core import clock

CONFIG_KEYS = ("interval_s", "fast_interval_s", "mount_mm", "siren_mm", "hysteresis_mm", "hold_s")
CONFIG_FILE = "water.json"
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
        self.remote_level = None
        self.below_since = None  # ticks_ms the level went below the off point
        self.readings = 0
        self.failures = 0  # readings with no distance
        self.errors = 0  # exceptions from a driver during a sample
        self.wake = asyncio.Event()  # a new config or siren command: re-plan the wait
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
        """cmd/config: keep the known keys in flash (only when they change) and apply them."""
        changed = False
        for k in CONFIG_KEYS:
            v = msg.get(k)
            if v is not None and self.saved.get(k) != v:
                self.saved[k] = v
                changed = True
        if changed:
            self.board.storage.write(CONFIG_FILE, json.dumps(self.saved))
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
        if self.rising or self.local or self.remote:
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
        self.readings += 1
        self.device.emit("reading", msg)
        self.show()
        return msg

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
        """A reading every period, forever."""
        while True:
            t0 = clock.ticks_ms()
            try:
                await self.sample()
            except Exception:  # a driver fault must not end the loop (or the siren rule)
                self.errors += 1
            await self._pause(t0)
