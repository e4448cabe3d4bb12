# Counter (loket) board: staff keys, a small display, citizen rating keys.
import asyncio

from firmware.drivers.buttons.button import Button

STAFF_KEYS = ("next", "recall", "skip", "done", "pause", "resume")
RATING_KEYS = ("rate1", "rate2", "rate3", "rate4")


class CounterRole:
    """Turns key presses into press/rating events and shows what the controller sends."""

    def __init__(self, device):
        self.device = device
        board = device.board
        self.display = board.text_display("main")
        self.buttons = []
        for key in STAFF_KEYS + RATING_KEYS:
            pin = board.pin(key)
            if pin is not None:
                self.buttons.append(Button(pin, key, self.on_key))
        self.display.show(["SIGAP", "LOKET " + str(device.settings.get("counter", "?"))])

    def on_key(self, key):
        """A debounced key press."""
        if key.startswith("rate"):
            self.device.emit("rating", {"score": int(key[4:])})
        else:
            self.device.emit("press", {"key": key})

    def on_cmd(self, kind, msg):
        """A command from the controller for this board."""
        if kind == "show":
            self.display.show(msg["lines"], msg.get("chime", False))

    async def run(self):
        """One task per key."""
        tasks = [asyncio.create_task(b.run()) for b in self.buttons]
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            for t in tasks:
                t.cancel()
