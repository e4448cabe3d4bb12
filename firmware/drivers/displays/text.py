# One API for every display: show(lines, chime=False), what the roles call
# (firmware/README.md, "the board object"). Each adapter renders at once, in
# the caller; blinking (on a chime) and scrolling (text wider than a dot-matrix
# chain) are frames of one short-lived task per display that ends when there
# is nothing left to animate. step() is one frame, so a test can drive the
# animation without an event loop.
import asyncio

from firmware.core import clock
from firmware.drivers.displays import font

# MicroPython's asyncio queues a task created before the loop runs; CPython's
# refuses without a running loop. Decided once, here.
_get_running_loop = getattr(asyncio, "get_running_loop", None)


def _loop_running():
    if _get_running_loop is None:
        return True
    try:
        _get_running_loop()
        return True
    except RuntimeError:
        return False


class TextDisplay:
    """Base adapter: subclasses implement render() and flash(on)."""

    blink_times = 3  # blinks on a chime
    blink_ms = 250  # half a blink period
    frame_ms = 60  # one scroll step (one pixel column)

    def __init__(self, driver):
        self.driver = driver
        self.lines = ()
        self.blinks_left = 0  # half-periods of blinking still to show
        self.scrolling = False
        self.task = None
        self.shown = 0  # show() calls
        self.chimes = 0

    def show(self, lines, chime=False):
        """Show `lines` now; on a chime, blink to catch the eye."""
        self.lines = lines
        self.shown += 1
        self.render()
        if chime:
            self.chimes += 1
            self.blinks_left = 2 * self.blink_times
        self._animate()

    def step(self):
        """One animation frame. Returns ms until the next frame, 0 when idle."""
        if self.blinks_left:
            self.blinks_left -= 1
            self.flash(self.blinks_left % 2 == 0)  # off, on, off, ... ends on
            return self.blink_ms
        if self.scrolling:
            self.scroll_step()
            return self.frame_ms
        return 0

    async def run(self):
        """The display's animation task (started by show() when needed)."""
        try:
            while True:
                ms = self.step()
                if not ms:
                    break
                await clock.sleep_ms(ms)
        finally:
            self.task = None

    def _animate(self):
        if self.task is None and (self.blinks_left or self.scrolling) and _loop_running():
            self.task = asyncio.create_task(self.run())

    # --- per display ------------------------------------------------------------
    def render(self):
        raise NotImplementedError

    def flash(self, on):
        raise NotImplementedError

    def scroll_step(self):
        self.scrolling = False


class SevenSegText(TextDisplay):
    """TM1637: the last 4 characters of the first line (a ticket like "A012")."""

    def render(self):
        self.driver.show_text(self.lines[0] if self.lines else "")

    def flash(self, on):
        self.driver.power(on)


class MatrixText(TextDisplay):
    """MAX7219 chain: the lines joined; centred when they fit, else scrolled
    right to left, entering at the right edge."""

    gap = "   "  # between lines

    def __init__(self, driver):
        super().__init__(driver)
        self.text = ""
        self.text_w = 0
        self.x = 0  # left edge of the scrolling text, in pixel columns

    def render(self):
        self.text = self.gap.join(self.lines)
        self.text_w = font.text_width(self.text)
        d = self.driver
        if self.text_w <= d.width:
            self.scrolling = False
            d.fill(0)
            d.text(self.text, (d.width - self.text_w) // 2)
            d.flush()
        else:
            self.scrolling = True
            self.x = d.width
            self.scroll_step()

    def scroll_step(self):
        d = self.driver
        d.fill(0)
        d.text(self.text, self.x)
        d.flush()
        self.x -= 1
        if self.x < -self.text_w:
            self.x = d.width

    def flash(self, on):
        self.driver.power(on)


class OledText(TextDisplay):
    """SSD1306: one line per text row, the first one large; blinks in inverse video."""

    def render(self):
        self.driver.show(self.lines)

    def flash(self, on):
        self.driver.invert(not on)
