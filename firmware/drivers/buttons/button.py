# Debounced push button over any object with value() (a machine.Pin or a
# virtual pin). Active low: the pin reads 0 while pressed (internal pull-up).
import asyncio


class Button:
    """Calls on_press(name) once per press, after the contact has settled."""

    poll_ms = 10
    debounce_ms = 30

    def __init__(self, pin, name, on_press, active=0):
        self.pin = pin
        self.name = name
        self.on_press = on_press
        self.active = active
        self.presses = 0

    async def run(self):
        """Own task: watch the pin forever."""
        pressed = False
        while True:
            v = self.pin.value() == self.active
            if v != pressed:
                # Contacts bounce for a few ms: read again after the debounce time.
                await asyncio.sleep(self.debounce_ms / 1000)
                if (self.pin.value() == self.active) == v:
                    pressed = v
                    if v:
                        self.presses += 1
                        self.on_press(self.name)
            await asyncio.sleep(self.poll_ms / 1000)
