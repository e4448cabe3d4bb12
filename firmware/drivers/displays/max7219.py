# MAX7219: a chain of 8x8 LED dot-matrix modules (the common "FC-16" 4-in-1
# boards) on SPI (DIN, CLK) plus a chip-select/LOAD pin.
#
# Maxim MAX7219 datasheet (19-4452 Rev 4):
#  "Serial-Addressing Modes": each write is 16 bits, D15..D12 ignored, D11..D8
#     register address, D7..D0 data, MSB first. Modules are daisy-chained
#     (DOUT -> DIN), so a frame of 2*N bytes is shifted through all of them
#     and each module latches the 16 bits it holds on the rising edge of
#     LOAD/CS. The FIRST 16 bits shifted out end up in the module FARTHEST
#     from the MCU; a module sent the no-op register (0x00) keeps its state.
#  Table 2 register map: digit 0..7 = 0x01..0x08, decode mode 0x09,
#     intensity 0x0A, scan limit 0x0B, shutdown 0x0C, display test 0x0F.
#
# Geometry (as wired on FC-16 boards): module 0 is the LEFTMOST, i.e. the one
# farthest from the MCU; digit register r is pixel row r (top = 0); bit 7 of
# a row byte is its leftmost pixel. Boards wired the other way round can pass
# reverse=True.

from firmware.core.compat import const
from firmware.drivers.displays import font

_NOOP = const(0x00)
_DIGIT0 = const(0x01)
_DECODE_MODE = const(0x09)
_INTENSITY = const(0x0A)
_SCAN_LIMIT = const(0x0B)
_SHUTDOWN = const(0x0C)
_DISPLAY_TEST = const(0x0F)


class MAX7219:
    """A chain of `n` MAX7219 8x8 matrices; draw into `buf`, then flush()."""

    def __init__(self, spi, cs, n=4, intensity=3, reverse=False):
        self.spi = spi
        self.cs = cs
        self.n = n
        self.reverse = reverse
        self.width = 8 * n
        self.height = 8
        # Row-major, 1 bit per pixel, MSB = leftmost: row r of module m is
        # buf[r * n + m] (the layout of framebuf.MONO_HLSB at width 8*n).
        self.buf = bytearray(8 * n)
        self._frame = bytearray(2 * n)  # one register write to every module
        self.on = True
        cs.value(1)
        self.init(intensity)

    def _write_all(self, reg, value):
        """The same register write to every module of the chain."""
        f = self._frame
        for i in range(0, len(f), 2):
            f[i] = reg
            f[i + 1] = value
        self._send()

    def _send(self):
        self.cs.value(0)
        self.spi.write(self._frame)
        self.cs.value(1)  # every module latches its 16 bits on this edge

    def init(self, intensity=3):
        """Datasheet "Initial Power-Up": registers are undefined until written."""
        self._write_all(_SHUTDOWN, 0)  # blank while configuring
        self._write_all(_DISPLAY_TEST, 0)
        self._write_all(_DECODE_MODE, 0)  # no code-B: raw segments (pixels)
        self._write_all(_SCAN_LIMIT, 7)  # scan all 8 rows
        self._write_all(_INTENSITY, intensity & 15)
        self.fill(0)
        self.flush()
        self._write_all(_SHUTDOWN, 1)  # normal operation

    def intensity(self, level):
        """Brightness 0..15 (Table 7: duty cycle 1/32 .. 31/32)."""
        self._write_all(_INTENSITY, level & 15)

    def power(self, on):
        """Shutdown mode blanks the display but keeps the digit registers (used to blink)."""
        self.on = bool(on)
        self._write_all(_SHUTDOWN, 1 if on else 0)

    def flush(self):
        """Send the buffer: one chained write per row."""
        n = self.n
        buf = self.buf
        f = self._frame
        for row in range(8):
            for k in range(n):
                # k-th 16-bit word shifted out goes to module k counted from the far end.
                m = n - 1 - k if self.reverse else k
                f[2 * k] = _DIGIT0 + row
                f[2 * k + 1] = buf[row * n + m]
            self._send()

    # --- drawing ----------------------------------------------------------------
    def fill(self, c):
        v = 0xFF if c else 0
        buf = self.buf
        for i in range(len(buf)):
            buf[i] = v

    def pixel(self, x, y, c=1):
        if 0 <= x < self.width and 0 <= y < 8:
            i = y * self.n + (x >> 3)
            bit = 0x80 >> (x & 7)
            if c:
                self.buf[i] |= bit
            else:
                self.buf[i] &= ~bit & 0xFF

    def text(self, s, x=0, y=0):
        """Draw `s` in the 5x7 font with its left edge at pixel column x
        (may be negative: that is how scrolling works). Returns the width."""
        glyphs = font.GLYPHS
        for ch in s:
            if x >= self.width:
                break
            if x > -font.WIDTH:
                g = font.glyph_index(ch)
                for col in range(font.WIDTH):
                    bits = glyphs[g + col]
                    cx = x + col
                    if 0 <= cx < self.width:
                        for r in range(font.HEIGHT):
                            if bits & (1 << r):
                                self.pixel(cx, y + r)
            x += font.WIDTH + 1
        return font.text_width(s)
