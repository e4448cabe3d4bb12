# Queue number display: a counter's number or the hall's latest calls.
#
# The board's text display decides the rendering (firmware/drivers/displays/
# text.py): a TM1637 7-segment shows the first line (the ticket number,
# "A012"), a MAX7219 dot-matrix chain shows the lines joined and scrolls them
# when they are wider than the chain (a hall display), an SSD1306 OLED shows
# one line per row. A new call (`chime: true`) blinks the display and rings
# the chime; the runtime clears `chime` on a retained message, so a board
# that reconnects or reboots shows the current call without ringing again.
import asyncio


class DisplayRole:
    """Renders cmd/show on the board's display; chimes on a new call."""

    def __init__(self, device):
        self.device = device
        self.display = device.board.text_display("main")
        self.lines = None
        self.display.show(["----"])

    def on_cmd(self, kind, msg):
        """A command from the controller for this board."""
        if kind != "show":
            return
        lines = msg["lines"]
        chime = msg.get("chime", False)
        if lines == self.lines and not chime:
            return  # the same content again (a retained repeat): keep any scroll going
        self.lines = lines
        self.display.show(lines, chime)

    async def run(self):
        """Nothing to poll: the display only reacts to commands (animation runs in the driver)."""
        while True:
            await asyncio.sleep(3600)
