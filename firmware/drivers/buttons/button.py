# Debounced push button over any object with value() (a machine.Pin or a
# virtual pin). Active low: the pin reads 0 while pressed (internal pull-up).
#
# Long press (optional): with on_long given, holding the button for
# long_press_ms calls on_long(name) once, while it is still held, and the
# release then calls nothing; a shorter press calls on_press(name) on
# release. Without on_long, on_press fires as soon as the press has settled.
#
# Idle wait (optional): a pin with an async `wait_edge()` (returns at its next
# level change) lets an idle, released button sleep until something happens
# instead of polling every poll_ms; while held it polls as usual (release and
# long-press timing). The simulator's virtual pins have it, so thousands of
# virtual keypads cost nothing while nobody presses; an IRQ-backed pin
# (Pin.irq + asyncio.ThreadSafeFlag) could offer the same on a board.
import asyncio

from firmware.core import clock


class Button:
    """Calls on_press(name) once per press, after the contact has settled."""

    poll_ms = 10
    debounce_ms = 30
    long_press_ms = 1000

    def __init__(self, pin, name, on_press, active=0, on_long=None):
        self.pin = pin
        self.name = name
        self.on_press = on_press
        self.on_long = on_long
        self.active = active
        self.presses = 0
        self.long_presses = 0
        self.held = False  # debounced state: True while pressed

    async def run(self):
        """Own task: watch the pin forever."""
        down_at = clock.ticks_ms()  # set again at each press, before it is read
        long_fired = False
        wait_edge = getattr(self.pin, "wait_edge", None)
        while True:
            v = self.pin.value() == self.active
            if v != self.held:
                # Contacts bounce for a few ms: read again after the debounce time.
                await asyncio.sleep(self.debounce_ms / 1000)
                if (self.pin.value() == self.active) == v:
                    self.held = v
                    if v:
                        down_at = clock.ticks_ms()
                        long_fired = False
                        if self.on_long is None:
                            self.presses += 1
                            self.on_press(self.name)
                    elif self.on_long is not None and not long_fired:
                        self.presses += 1
                        self.on_press(self.name)
            elif (
                v
                and self.on_long is not None
                and not long_fired
                and clock.ticks_diff(clock.ticks_ms(), down_at) >= self.long_press_ms
            ):
                long_fired = True
                self.long_presses += 1
                self.on_long(self.name)
            # Read and wait with no await between them: no edge can slip through.
            if wait_edge is not None and not self.held and self.pin.value() != self.active:
                await wait_edge()
            else:
                await asyncio.sleep(self.poll_ms / 1000)
