# Status LED: one blink pattern per runtime state, readable from across a hall.
#
# Patterns are tuples of milliseconds, alternately on and off, starting with
# on, repeated. They differ in rhythm, not brightness, so a technician can
# tell them apart on a single LED:
#   joining_wifi    one slow blink a second
#   joining_broker  two quick blinks a second
#   online          a short blip every 5 s (mostly off: battery boards)
#   error           fast even flashing (settings unusable: see the display)
#   off             dark
# The board may have no LED (pin None): the pattern is still tracked and
# reported through on_change, so the simulator can record it.
import asyncio

from firmware.core import clock

# MicroPython has no builtin TimeoutError; asyncio's own class exists on both.
_Timeout = asyncio.TimeoutError

# A tuple, not a dict: module-level state stays immutable (virtual boards share it).
PATTERNS = (
    ("joining_wifi", (500, 500)),
    ("joining_broker", (100, 150, 100, 650)),
    ("online", (50, 4950)),
    ("error", (100, 100)),
    ("off", (0, 1000)),
)


def steps(name):
    """The on/off milliseconds of pattern name, or None if there is no such pattern."""
    for n, ms in PATTERNS:
        if n == name:
            return ms
    return None


class StatusLed:
    """Blinks a pin (anything with value(v)) in the pattern of the current state."""

    def __init__(self, pin=None, on_change=None):
        self.pin = pin
        self.on_change = on_change  # called with the new pattern's name
        self.pattern = None
        self.changes = 0
        self._wake = asyncio.Event()

    def set(self, name):
        """Switch to pattern name (one of PATTERNS); the blink restarts at once."""
        if name == self.pattern:
            return
        if steps(name) is None:
            raise ValueError("no LED pattern " + str(name))
        self.pattern = name
        self.changes += 1
        self._wake.set()
        cb = self.on_change
        if cb is not None:
            cb(name)

    async def _step(self, level, ms):
        # Hold one level for ms, or less if the pattern changes meanwhile.
        if ms <= 0:
            return True
        self.pin.value(level)
        try:
            await asyncio.wait_for(self._wake.wait(), ms / 1000)
        except _Timeout:
            return True
        return False

    async def run(self):
        """Drive the pin forever (nothing to do without a pin)."""
        if self.pin is None:
            return
        while True:
            self._wake.clear()
            pattern = steps(self.pattern) or steps("off")
            level = 1
            for ms in pattern:
                if not await self._step(level, ms):
                    break
                level ^= 1
            else:
                continue
            # A new pattern arrived: start it from its first step.
            await clock.sleep_ms(0)
