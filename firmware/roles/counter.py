# Counter (loket) board: staff keys, a small display, citizen rating keys.
#
# Keys (pin names in the board's pin map; a key without a pin is left out):
#   next, recall, skip, done   sent as they are (CONTRACT §1 counter keys)
#   pause                      toggles: sends "pause", and "resume" when paused
#                              (a separate "resume" key works too)
#   transfer                   moves the current ticket to another service:
#                              a short press picks the next code of the
#                              settings' `transfer_to` list (shown on the
#                              display), a long press sends the transfer to
#                              the picked code (with a single code, a long
#                              press alone sends it). The pick expires after
#                              transfer_pick_ms.
#   rate1..rate4               the citizen's rating of the ticket just finished
# The display shows what the controller sends (cmd/show); the controller's
# next cmd/show replaces any local hint (PAUSE, PINDAH). A transfer hint the
# controller does not answer goes back to its last show by itself: a pick
# not confirmed within transfer_pick_ms, and a sent transfer with no new show
# within hint_ms (refused, e.g. no ticket being served: the display then
# shows again the ticket that stayed).
import asyncio

from firmware.core import clock
from firmware.drivers.buttons.button import Button

STAFF_KEYS = ("next", "recall", "skip", "done", "pause", "resume")
RATING_KEYS = ("rate1", "rate2", "rate3", "rate4")


class CounterRole:
    """Turns key presses into press/rating events and shows what the controller sends."""

    transfer_pick_ms = 10000  # a picked transfer target not confirmed by then is dropped
    hint_ms = 5000  # a sent transfer not answered by a new show by then: the last show again

    def __init__(self, device):
        self.device = device
        board = device.board
        s = device.settings
        self.display = board.text_display("main")
        self.name = "LOKET " + str(s.get("counter", "?"))
        self.transfer_to = list(s.get("transfer_to", ()))
        self.paused = False
        self.pick = -1  # index into transfer_to, -1: nothing picked
        self.pick_at = clock.ticks_ms()
        self.lines = ["SIGAP", self.name]  # what the controller last sent
        self.hint = 0  # counts transfer hints and shows: an expiry acts only on the newest hint
        self.buttons = []
        for key in STAFF_KEYS + RATING_KEYS:
            pin = board.pin(key)
            if pin is not None:
                self.buttons.append(Button(pin, key, self.on_key))
        pin = board.pin("transfer")
        if pin is not None and self.transfer_to:
            self.buttons.append(Button(pin, "transfer", self.on_key, on_long=self.on_long))
        self.display.show(self.lines)

    def on_key(self, key):
        """A debounced key press (a short press, for keys with a long-press action)."""
        if key.startswith("rate"):
            self.device.emit("rating", {"score": int(key[4:])})
            return
        if key == "transfer":
            self.pick_next()
            return
        if key == "pause" and self.paused:
            key = "resume"
        if key == "pause":
            self.paused = True
            self.display.show(["PAUSE", self.name])
        elif key == "resume":
            self.paused = False
            self.display.show(self.lines)
        self.device.emit("press", {"key": key})

    def pick_next(self):
        """Short press on transfer: the next target service, shown for confirmation."""
        now = clock.ticks_ms()
        if self.pick >= 0 and clock.ticks_diff(now, self.pick_at) >= self.transfer_pick_ms:
            self.pick = -1
        self.pick = (self.pick + 1) % len(self.transfer_to)
        self.pick_at = now
        self._hint(["PINDAH " + self.transfer_to[self.pick], "Tahan untuk kirim"], self.transfer_pick_ms)

    def on_long(self, key):
        """Long press on transfer: send the picked (or the only) target."""
        now = clock.ticks_ms()
        i = self.pick
        if i >= 0 and clock.ticks_diff(now, self.pick_at) >= self.transfer_pick_ms:
            i = -1
        if i < 0 and len(self.transfer_to) == 1:
            i = 0
        self.pick = -1
        if i < 0:
            self.display.show(self.lines)  # nothing picked: a long press alone is ambiguous
            return
        self.device.emit("press", {"key": "transfer", "to": self.transfer_to[i]})
        self._hint(["PINDAH " + self.transfer_to[i], "Mengirim..."], self.hint_ms)

    def _hint(self, lines, ms):
        """Show a transfer hint; without a newer hint or show within ms, the last show again."""
        self.display.show(lines)
        self.hint += 1
        expire = self._expire(self.hint, ms)
        try:
            asyncio.create_task(expire)
        except RuntimeError:  # CPython with no running event loop (a bare unit test): no expiry
            expire.close()

    async def _expire(self, hint, ms):
        await clock.sleep_ms(ms)
        if hint == self.hint:
            self.pick = -1
            self.display.show(self.lines)

    def on_cmd(self, kind, msg):
        """A command from the controller for this board."""
        if kind == "show":
            self.lines = msg["lines"]
            self.pick = -1
            self.hint += 1
            self.display.show(self.lines, msg.get("chime", False))

    async def run(self):
        """One task per key."""
        tasks = [asyncio.create_task(b.run()) for b in self.buttons]
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            for t in tasks:
                t.cancel()
