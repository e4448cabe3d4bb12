# Queue number display: a counter's number or the hall's latest calls.
import asyncio


class DisplayRole:
    """Renders cmd/show on the board's display; chimes on a new call."""

    def __init__(self, device):
        self.device = device
        self.display = device.board.text_display("main")
        self.display.show(["----"])

    def on_cmd(self, kind, msg):
        """A command from the controller for this board."""
        if kind == "show":
            self.display.show(msg["lines"], msg.get("chime", False))

    async def run(self):
        """Nothing to poll: the display only reacts to commands."""
        while True:
            await asyncio.sleep(3600)
