# TM1637: 4-digit 7-segment LED driver on a two-wire bus (CLK, DIO) that looks
# like I2C but is not: no device address, and bytes go LSB first.
#
# Titan Micro TM1637 datasheet V2.4:
#  §6 "Interface interpretation": start = DIO falls while CLK is high; stop =
#     DIO rises while CLK is high; DIO may only change while CLK is low and is
#     sampled on CLK's rising edge; after the 8th bit the chip pulls DIO low
#     for one extra (9th) clock as its ACK.
#  §7 Commands: data command 0x40 (write, auto-increment address), address
#     command 0xC0 | addr (grid 0..5), display control 0x80 | 0x08 (on) |
#     brightness 0..7 (pulse width 1/16 .. 14/16).
#
# Both pins are plain outputs (the common modules have pull-ups and the
# chip's ACK only needs DIO released high): anything with value(v) will do.
# Bit timing comes from `delay_us` (board: time.sleep_us; simulator: a no-op).

from firmware.core.compat import const

_CMD_DATA = const(0x40)  # §7.1 data command: write to display, auto-increment
_CMD_ADDR = const(0xC0)  # §7.2 address command: grid 0
_CMD_CTRL = const(0x80)  # §7.3 display control; | 0x08 = display on
_DISPLAY_ON = const(0x08)
_DP = const(0x80)  # segment bit 7: the dot (or the colon after digit 2)

# Segment bits: 0=a (top), 1=b, 2=c, 3=d (bottom), 4=e, 5=f, 6=g (middle).
#   aaa
#  f   b
#   ggg
#  e   c
#   ddd
DIGITS = b"\x3f\x06\x5b\x4f\x66\x6d\x7d\x07\x7f\x6f"
# A-Z as well as seven segments allow: K, M, W, X are approximations and
# O, S, Z look like 0, 5, 2. Service codes are single capitals, so every
# letter needs some shape.
LETTERS = (
    b"\x77\x7c\x39\x5e\x79\x71\x3d\x76\x30\x1e\x75\x38\x37"  # A-M
    b"\x54\x3f\x73\x67\x50\x6d\x78\x3e\x1c\x2a\x76\x6e\x5b"  # N-Z
)
_MINUS = const(0x40)
_UNDERSCORE = const(0x08)


def segments(ch):
    """Segment byte for one character (blank for what 7 segments cannot show)."""
    c = ord(ch)
    if 0x30 <= c <= 0x39:
        return DIGITS[c - 0x30]
    if 0x61 <= c <= 0x7A:
        c -= 0x20
    if 0x41 <= c <= 0x5A:
        return LETTERS[c - 0x41]
    if c == 0x2D:
        return _MINUS
    if c == 0x5F:
        return _UNDERSCORE
    return 0


def encode(text, buf):
    """Fill `buf` (one byte per digit) with `text` right-aligned; '.' lights the
    previous digit's dot. Returns buf."""
    n = len(buf)
    for i in range(n):
        buf[i] = 0
    i = n
    dot = 0
    # Walk backwards so the LAST characters are kept when the text is too long.
    for k in range(len(text) - 1, -1, -1):
        ch = text[k]
        if ch == "." or ch == ":":
            dot = _DP
            continue
        if i == 0:
            break
        i -= 1
        buf[i] = segments(ch) | dot
        dot = 0
    return buf


class TM1637:
    """A TM1637 display on two duck-typed output pins."""

    def __init__(self, clk, dio, delay_us, brightness=7, digits=4):
        self.clk = clk
        self.dio = dio
        self.delay_us = delay_us
        self.digits = bytearray(digits)
        self.level = brightness & 7
        self.on = True
        # Idle bus: both lines high (datasheet §6).
        clk.value(1)
        dio.value(1)

    # --- bus primitives (datasheet §6) ---------------------------------------
    def _start(self):
        self.dio.value(0)  # DIO falls while CLK is high
        self.delay_us(2)
        self.clk.value(0)
        self.delay_us(2)

    def _stop(self):
        self.dio.value(0)  # CLK is low here, DIO may change
        self.delay_us(2)
        self.clk.value(1)
        self.delay_us(2)
        self.dio.value(1)  # DIO rises while CLK is high
        self.delay_us(2)

    def _write_byte(self, b):
        clk = self.clk
        dio = self.dio
        delay = self.delay_us
        for i in range(8):  # LSB first
            dio.value((b >> i) & 1)
            delay(2)
            clk.value(1)  # the chip samples DIO on this rising edge
            delay(2)
            clk.value(0)
            delay(2)
        # 9th clock: release DIO so the chip can pull it low as its ACK.
        dio.value(1)
        delay(2)
        clk.value(1)
        delay(2)
        clk.value(0)
        delay(2)

    def _command(self, cmd):
        self._start()
        self._write_byte(cmd)
        self._stop()

    # --- display --------------------------------------------------------------
    def write(self, segs, pos=0):
        """Write raw segment bytes starting at digit `pos` (datasheet §7.2)."""
        self._command(_CMD_DATA)
        self._start()
        self._write_byte(_CMD_ADDR | pos)
        for b in segs:
            self._write_byte(b)
        self._stop()
        self._control()

    def _control(self):
        self._command(_CMD_CTRL | (_DISPLAY_ON if self.on else 0) | self.level)

    def brightness(self, level):
        """Set brightness 0..7 (datasheet §7.3 pulse width)."""
        self.level = level & 7
        self._control()

    def power(self, on):
        """Display on/off; the digits stay in the chip's memory (used to blink)."""
        self.on = bool(on)
        self._control()

    def show_text(self, text):
        """Show the last digits of `text` (right-aligned)."""
        self.write(encode(text, self.digits))
