# Health monitor: decides whether the hardware watchdog may be fed.
#
# The ESP32's watchdog (machine.WDT) reboots the board unless it is fed in
# time. Feeding it from a timer or from any task that happens to run would
# keep a half-dead board alive forever (say the MQTT task crashed but the
# loop still ticks). So the runtime feeds it only when every essential part
# has shown life recently:
#   heartbeats  expect(name, within_ms) + beat(name): a loop that must keep
#               turning (the runtime's supervisor; a role may add its own);
#   tasks       watch(name, task): alive while the task is not done; an
#               ended task, by crash or by return, is a failure.
# A failure stops the feeding and the watchdog reboots the board: on the
# next boot the birth says "reset": "watchdog".
#
# The clock is injected (ticks_ms-like) so tests drive time by hand.
from firmware.core import clock


class Health:
    """Heartbeats and watched tasks; ok() when all are recent and alive."""

    def __init__(self, now=None):
        self._now = now or clock.ticks_ms
        self._beats = {}  # name -> [last beat ticks, within_ms]
        self._tasks = {}  # name -> task (anything with done())
        self.failures = 0  # times ok() turned False
        self.failing = None  # the first failing part's name at the last check
        self._was_ok = True

    def expect(self, name, within_ms):
        """Require beat(name) at least every within_ms from now on."""
        self._beats[name] = [self._now(), within_ms]

    def beat(self, name):
        """name is alive now (unknown names are ignored)."""
        b = self._beats.get(name)
        if b is not None:
            b[0] = self._now()

    def forget(self, name):
        """Stop requiring name (a heartbeat or a watched task)."""
        self._beats.pop(name, None)
        self._tasks.pop(name, None)

    def watch(self, name, task):
        """Require task to be running (None: forget name)."""
        if task is None:
            self._tasks.pop(name, None)
        else:
            self._tasks[name] = task

    def task(self, name):
        """The task watched under name, or None."""
        return self._tasks.get(name)

    def check(self):
        """The name of the first failing part, or None when all are healthy."""
        now = self._now()
        for name, b in self._beats.items():
            if clock.ticks_diff(now, b[0]) > b[1]:
                return name
        for name, task in self._tasks.items():
            if task.done():
                return name
        return None

    def ok(self):
        """True when the watchdog may be fed; notes the failing part otherwise."""
        name = self.check()
        self.failing = name
        healthy = name is None
        if self._was_ok and not healthy:
            self.failures += 1
        self._was_ok = healthy
        return healthy
