# The drivers' pure logic on real MicroPython: byte encodings, the echo
# filter, checksums and decoders, on fake buses that only collect bytes.
#
# Run by tests/mpy/run.mjs. tests/unit/test_drivers.py runs the drivers on
# CPython against the decoding virtual hardware of simulator/hw.py; here the
# same code proves it runs on the board's interpreter and gives the same bytes.
from mpyunit import Failure

from firmware.drivers.displays import font
from firmware.drivers.displays.max7219 import MAX7219
from firmware.drivers.displays.ssd1306 import SSD1306
from firmware.drivers.displays.tm1637 import TM1637, encode, segments
from firmware.drivers.outputs.dfplayer import DFPlayer, checksum, frame_into, number_clips
from firmware.drivers.printer.escpos import EscPos, ascii_text, local_time
from firmware.drivers.sensors.ds18b20 import crc8, decode_scratchpad
from firmware.drivers.sensors.ultrasonic import (
    JSNSR04T,
    A02Parser,
    echo_to_mm,
    filter_echoes,
    speed_of_sound,
)


def check(cond, what):
    if not cond:
        raise Failure(what)


class Bytes:
    """A UART/SPI that keeps what was written."""

    def __init__(self):
        self.data = bytearray()

    def write(self, buf):
        self.data.extend(buf)
        return len(buf)


class Pin:
    def __init__(self, level=1):
        self.level = level
        self.log = []

    def value(self, v=None):
        if v is not None and v != self.level:
            self.level = v
            self.log.append(v)
        return self.level


class I2C:
    def __init__(self):
        self.writes = []

    def writeto(self, addr, buf):
        self.writes.append((addr, bytes(buf)))


def no_delay(us):
    pass


# -- ESC/POS --------------------------------------------------------------------------


def test_escpos_native_qr_command_bytes():
    out = Bytes()
    EscPos(out).qr("http://x/t/ab")
    check(
        bytes(out.data)
        == b"\x1d(k\x04\x001A2\x00"  # fn 65: model 2
        + b"\x1d(k\x03\x001C\x06"  # fn 67: module 6 dots
        + b"\x1d(k\x03\x001E1"  # fn 69: error correction M
        + b"\x1d(k\x10\x001P0http://x/t/ab"  # fn 80: store 13 bytes (+3)
        + b"\x1d(k\x03\x001Q0",  # fn 81: print
        "QR bytes: " + repr(bytes(out.data)),
    )


def test_escpos_ticket_is_ascii_with_a_big_bold_number():
    out = Bytes()
    EscPos(out).print_ticket(
        {
            "ticket": "A012",
            "service": "Perekaman KTP-el",
            "agency": "Dispendukcapil",
            "ahead": 5,
            "wait_min": 12,
            "at": "2026-11-23T08:15:04+08:00",
            "url": "http://sigap.local/t/Zk3q",
        }
    )
    data = bytes(out.data)
    check(data.startswith(b"\x1b@\x1bt\x00"), "init and code page first")
    check(b"\x1d!\x11\x1bE\x01A012\n\x1bE\x00\x1d!\x00" in data, "double-size bold number")
    check(b"Di depan Anda: 5 orang\n" in data, "people ahead")
    check(b"Perkiraan tunggu: 12 menit\n" in data, "waiting time")
    check(b"23 Nov 2026 08:15 WITA\n" in data, "local time")
    check(b"1P0http://sigap.local/t/Zk3q" in data, "QR payload")
    check(data.endswith(b"\x1dVB0"), "feed and cut last")
    check(max(data) < 0x80, "ASCII only")


def test_escpos_transliteration_on_micropython_strings():
    got = ascii_text("Pérékaman — “Akta” Ñ…")
    check(got == 'Perekaman - "Akta" N...', got)
    check(ascii_text("中") == "?", "unknown character")
    check(local_time("not a time") == "not a time", "unparseable time kept")


# -- ultrasonic -------------------------------------------------------------------------


def test_median_filter_drops_invalid_and_rejects_a_spike():
    vals = [2003, None, 650, 2001, 1999, 90, 1998]
    mm, n = filter_echoes(vals, 7, 250, 4500, [0] * 7)
    check((mm, n) == (2000, 4), repr((mm, n)))
    check(filter_echoes([None, None, None], 3, 250, 4500, [0] * 3) == (None, 0), "all dropped")
    check(filter_echoes([1500, 1502, 420, 880], 4, 250, 4500, [0] * 4)[0] is None, "2 vs 2")


def test_speed_of_sound_compensation():
    check(abs(speed_of_sound(20) - 343.42) < 0.01, "c(20)")
    us = 2 * 2000 / (speed_of_sound(35) / 1000)
    check(abs(echo_to_mm(us, 35) - 2000) < 0.01, "round trip at 35 C")


async def test_jsnsr04t_burst_with_a_fake_time_pulse():
    echoes = [11647, -2, 11650, 3000, 11644]  # 2000 mm at 20 C, a drop, a spike

    def time_pulse_us(pin, level, timeout_us):
        return echoes.pop(0)

    trig = Pin(0)
    ranger = JSNSR04T(trig, Pin(0), time_pulse_us, no_delay)
    ranger.gap_ms = 0
    mm, n = await ranger.measure(20.0)
    check(abs(mm - 2000) <= 1 and n == 3, repr((mm, n)))
    check(trig.log == [1, 0] * 5 and ranger.timeouts == 1, "trigger pulses")


def test_a02yyuw_parser_resyncs_after_a_bad_checksum():
    p = A02Parser()
    got = []
    for b in b"\xff\x04\xd2\xd5" + b"\xff\x05\xdc\x00" + b"\x13\xff" + b"\xff\x01\xff\xff":
        mm = p.feed(b)
        if mm is not None:
            got.append(mm)
    check(got == [1234, 511], repr(got))
    check(p.bad == 1, "one bad frame")


# -- displays ----------------------------------------------------------------------------


def test_tm1637_segment_encoding():
    check(bytes(encode("A012", bytearray(4))) == b"\x77\x3f\x06\x5b", "A012")
    check(bytes(encode("LOKET 12.5", bytearray(4))) == b"\x00\x06\xdb\x6d", "dot on 2")
    check(segments("-") == 0x40 and segments("?") == 0, "symbols")


def test_tm1637_writes_lsb_first_with_ack_clocks():
    clk = Pin()
    dio = Pin()
    tm = TM1637(clk, dio, no_delay)
    clk.log.clear()
    dio.log.clear()
    tm.brightness(7)  # one frame: start, 0x8F, stop
    check(clk.log.count(1) == 10, "8 data + ACK + stop clocks: " + repr(clk.log))


def test_max7219_buffer_holds_the_font_glyph():
    spi = Bytes()
    mx = MAX7219(spi, Pin(), 2)
    mx.fill(0)
    mx.text("A", 0)
    # Row 3 of "A" is "#####": the top five bits of module 0's row-3 byte.
    check(mx.buf[3 * 2] == 0xF8 and mx.buf[0] == 0x70, repr(bytes(mx.buf)))
    spi.data = bytearray()
    mx.flush()
    check(bytes(spi.data[:4]) == b"\x01\x70\x01\x00", "row 1 to both modules")


def test_ssd1306_text_on_micropython_with_framebuf():
    i2c = I2C()
    oled = SSD1306(i2c, 128, 32)
    check(oled.fb is not None, "framebuf wraps the buffer on MicroPython")
    oled.show(["A1", "L"])
    check(bytes(oled.pixels[256:261]) == b"\x7f\x40\x40\x40\x40", "L in page 2")
    oled.fb.pixel(127, 31, 1)
    check(oled.pixels[3 * 128 + 127] == 0x80, "framebuf draws into the same bytes")
    addr, last = i2c.writes[-1]
    check(addr == 0x3C and last[0] == 0x40 and len(last) == 1 + 512, "one GDDRAM write")


def test_font_table_size():
    check(len(font.GLYPHS) == (font.LAST - font.FIRST + 1) * font.WIDTH, "font size")


# -- DS18B20, DFPlayer -------------------------------------------------------------------


def test_ds18b20_scratchpad_decode_and_crc():
    check(crc8(b"\x02\x1c\xb8\x01\x00\x00\x00") == 0xA2, "AN27 ROM example")
    body = bytearray(b"\x78\x01\x4b\x46\x7f\xff\x0c\x10")  # 0x0178 = 23.5 C
    sp = body + bytes([crc8(body)])
    check(decode_scratchpad(sp) == 23.5, "23.5")
    sp[1] ^= 0x01
    check(decode_scratchpad(sp) is None, "CRC mismatch")
    neg = bytearray(b"\x5e\xff\x4b\x46\x7f\xff\x0c\x10")  # 0xFF5E = -10.125 C
    check(decode_scratchpad(neg + bytes([crc8(neg)])) == -10.125, "negative")
    check(decode_scratchpad(bytes(9)) is None, "all zero")


def test_dfplayer_checksum_and_frame():
    check(checksum(0x03, 0, 1) == 0xFEF7, "manual example checksum")
    frame = bytes(frame_into(bytearray(10), 0x0F, 0x0203))
    check(frame == b"\x7e\xff\x06\x0f\x00\x02\x03\xfe\xe7\xef", "play 02/003")
    out = Bytes()
    player = DFPlayer(out)
    check(player.say_call("A012", 3), "queued")
    check(player.queue == [0x101, 0x102, 0x201, 0x302, 0x30C, 0x103, 0x303], repr(player.queue))
    check(number_clips(250, []) == [2, 15, 5, 13], "dua ratus lima puluh")
