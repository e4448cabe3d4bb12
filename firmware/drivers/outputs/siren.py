# Siren or any load behind a relay/MOSFET on one output pin. Many relay
# modules are active-low (the opto-coupler LED is on when the pin is 0): pass
# active=0 for those. The pin is driven to "off" at construction, so a reboot
# never leaves a siren sounding that nobody asked for.


class Siren:
    """A switched output: on(), off(), is_on."""

    def __init__(self, pin, active=1):
        self.pin = pin
        self.active = active
        self.switches = 0  # times it was turned on
        self._on = False
        pin.value(1 - active)

    def on(self):
        if not self._on:
            self.switches += 1
        self._on = True
        self.pin.value(self.active)

    def off(self):
        self._on = False
        self.pin.value(1 - self.active)

    def set(self, on):
        if on:
            self.on()
        else:
            self.off()

    @property
    def is_on(self):
        return self._on
