# SSD1306: 128x64 or 128x32 monochrome OLED on I2C (address 0x3C, or 0x3D
# with SA0 high).
#
# Solomon Systech SSD1306 datasheet Rev 1.1:
#  §8.1.5.1 I2C write: after the address, each CONTROL byte says what follows:
#     Co=bit7 (1: exactly one byte follows, then another control byte),
#     D/C#=bit6 (0: command, 1: GDDRAM data). 0x80 = one command byte,
#     0x40 = data bytes until the stop condition.
#  §8.7 / Figure 8-13 GDDRAM: 8 pages of 128 bytes; a byte is a vertical run
#     of 8 pixels, bit 0 at the top (framebuf.MONO_VLSB).
#  §10 command table, and the "Software initialization" flow of the
#     application note, which the init sequence below follows.
#
# The pixel buffer is the driver's own bytearray, so text drawing works on
# CPython too (the simulator). Where MicroPython's framebuf module exists it
# is wrapped around the same bytes as `self.fb` for lines and shapes; the
# platform is decided once, here at import.

from firmware.core.compat import const

try:
    import framebuf as _framebuf

    _HAVE_FRAMEBUF = True
except ImportError:  # CPython (simulator): text is drawn from font.py only
    _HAVE_FRAMEBUF = False

from firmware.drivers.displays import font

_SET_CONTRAST = const(0x81)
_DISPLAY_ALL_ON_RESUME = const(0xA4)
_NORMAL = const(0xA6)
_INVERT = const(0xA7)
_DISPLAY_OFF = const(0xAE)
_DISPLAY_ON = const(0xAF)
_MEM_ADDR_MODE = const(0x20)
_COL_ADDR = const(0x21)
_PAGE_ADDR = const(0x22)
_START_LINE = const(0x40)
_SEG_REMAP = const(0xA1)
_MUX_RATIO = const(0xA8)
_COM_SCAN_DEC = const(0xC8)
_DISPLAY_OFFSET = const(0xD3)
_COM_PINS = const(0xDA)
_CLOCK_DIV = const(0xD5)
_PRECHARGE = const(0xD9)
_VCOM_DESELECT = const(0xDB)
_CHARGE_PUMP = const(0x8D)

_CTRL_CMD = const(0x80)  # Co=1, D/C#=0: one command byte follows
_CTRL_DATA = const(0x40)  # Co=0, D/C#=1: GDDRAM bytes until stop


class SSD1306:
    """SSD1306 OLED over I2C; draw into the buffer, then show()."""

    def __init__(self, i2c, width=128, height=64, addr=0x3C, contrast=0xCF):
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.pages = height // 8
        # Control byte 0x40 + the whole GDDRAM: show() is a single I2C write.
        self.buffer = bytearray(1 + self.pages * width)
        self.buffer[0] = _CTRL_DATA
        self.pixels = memoryview(self.buffer)[1:]
        self.fb = None
        if _HAVE_FRAMEBUF:
            self.fb = _framebuf.FrameBuffer(self.pixels, width, height, _framebuf.MONO_VLSB)
        self._cmd = bytearray(2)
        self._cmd[0] = _CTRL_CMD
        self.on = True
        self.init(contrast)

    def command(self, c):
        """Send one command byte (§8.1.5.1: control byte 0x80, then the byte)."""
        self._cmd[1] = c
        self.i2c.writeto(self.addr, self._cmd)

    def init(self, contrast=0xCF):
        """Initialization flow (datasheet application note, charge pump app note)."""
        for c in (
            _DISPLAY_OFF,
            _MEM_ADDR_MODE, 0x00,  # horizontal addressing: show() streams all pages
            _START_LINE | 0,
            _SEG_REMAP,  # column 127 mapped to SEG0: upright on common modules
            _MUX_RATIO, self.height - 1,
            _COM_SCAN_DEC,
            _DISPLAY_OFFSET, 0x00,
            _COM_PINS, 0x12 if self.height == 64 else 0x02,
            _CLOCK_DIV, 0x80,
            _PRECHARGE, 0xF1,  # internal charge pump (not external VCC)
            _VCOM_DESELECT, 0x30,
            _SET_CONTRAST, contrast,
            _DISPLAY_ALL_ON_RESUME,
            _NORMAL,
            _CHARGE_PUMP, 0x14,  # charge pump on: needed before display on
            _DISPLAY_ON,
        ):  # fmt: skip
            self.command(c)
        self.fill(0)
        self.flush()

    def power(self, on):
        self.on = bool(on)
        self.command(_DISPLAY_ON if on else _DISPLAY_OFF)

    def invert(self, inv):
        """Inverse video without touching GDDRAM (used to blink on a new call)."""
        self.command(_INVERT if inv else _NORMAL)

    def contrast(self, level):
        self.command(_SET_CONTRAST)
        self.command(level & 0xFF)

    def flush(self):
        """Copy the buffer into GDDRAM: full window, then one data write."""
        self.command(_COL_ADDR)
        self.command(0)
        self.command(self.width - 1)
        self.command(_PAGE_ADDR)
        self.command(0)
        self.command(self.pages - 1)
        self.i2c.writeto(self.addr, self.buffer)

    def show(self, lines=None, chime=False):
        """show(): flush the buffer (framebuf-driver habit). show(lines): clear,
        draw the lines (the first twice as large when it fits) and flush."""
        if lines is not None:
            self.fill(0)
            y = 0
            for i, line in enumerate(lines):
                scale = 2 if i == 0 and font.text_width(line) * 2 <= self.width else 1
                if y + 8 * scale > self.height:
                    break
                self.text(line, 0, y, scale)
                y += 8 * scale
        self.flush()

    # --- drawing ----------------------------------------------------------------
    def fill(self, c):
        v = 0xFF if c else 0
        px = self.pixels
        for i in range(len(px)):
            px[i] = v

    def pixel(self, x, y, c=1):
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y >> 3) * self.width + x
            bit = 1 << (y & 7)
            if c:
                self.pixels[i] |= bit
            else:
                self.pixels[i] &= ~bit & 0xFF

    def text(self, s, x=0, y=0, scale=1):
        """Draw `s` in the 5x7 font, top-left at (x, y); returns the width."""
        glyphs = font.GLYPHS
        px = self.pixels
        w = self.width
        step = (font.WIDTH + 1) * scale
        for ch in s:
            if x >= w:
                break
            g = font.glyph_index(ch)
            if scale == 1 and (y & 7) == 0 and 0 <= x <= w - font.WIDTH and y < self.height:
                # Page-aligned: the font's columns ARE GDDRAM bytes (§8.7).
                base = (y >> 3) * w + x
                for col in range(font.WIDTH):
                    px[base + col] = glyphs[g + col]
            else:
                for col in range(font.WIDTH):
                    bits = glyphs[g + col]
                    for r in range(font.HEIGHT):
                        if bits & (1 << r):
                            for dx in range(scale):
                                for dy in range(scale):
                                    self.pixel(x + col * scale + dx, y + r * scale + dy)
            x += step
        return len(s) * step - scale if s else 0
