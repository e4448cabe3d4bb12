"""Virtual hardware that decodes what the firmware's drivers drive.

Each twin models the part's side of the wire from its datasheet, not the
driver's intent: the TM1637 decoder watches CLK/DIO edges for start, stop and
LSB-first bytes; the MAX7219 chain shifts 16-bit words through its modules and
latches on CS; the SSD1306 parses I2C control bytes and commands into GDDRAM;
the ESC/POS decoder turns a byte stream back into printed lines and the stored
QR payload. So a test that reads the twin back proves the bytes on the wire.

Sensor twins go the other way: VirtualEcho answers like machine.time_pulse_us
for a water surface at a given distance and air temperature (with noise,
dropped echoes and spikes), A02YYUW frames come from a02yyuw_frame, and
VirtualADC/VirtualDS18X20 stand in for the ADC and the 1-Wire probe.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any

Transition = tuple[str, int]


# -- pins -------------------------------------------------------------------------


class RecordingPin:
    """An output pin that appends (name, level) to `log` on every level change.

    Pins sharing one log give the interleaved edge sequence a logic analyser
    would capture on those wires.
    """

    def __init__(self, name: str, log: list[Transition] | None = None, level: int = 1):
        self.name = name
        self.log: list[Transition] = [] if log is None else log
        self.level = level

    def value(self, v: int | None = None) -> int:
        if v is not None:
            v = 1 if v else 0
            if v != self.level:
                self.level = v
                self.log.append((self.name, v))
        return self.level

    __call__ = value


# -- TM1637 -------------------------------------------------------------------------


def decode_tm1637(
    transitions: Iterable[Transition], clk: str = "clk", dio: str = "dio"
) -> list[tuple[int, bytes]]:
    """CLK/DIO edges -> the frames sent, as (command byte, following bytes).

    TM1637 datasheet §6: start = DIO falls while CLK high, stop = DIO rises
    while CLK high, bits are sampled on CLK rising edges, LSB first, and every
    9th clock is the chip's ACK slot.
    """
    level = {clk: 1, dio: 1}
    frames: list[tuple[int, bytes]] = []
    cur: list[int] | None = None
    byte = nbits = 0
    for name, v in transitions:
        if name not in level:
            continue
        clk_was = level[clk]
        level[name] = v
        if name == dio and clk_was == 1:
            if v == 0:  # start condition
                cur, byte, nbits = [], 0, 0
            elif cur is not None:  # stop condition
                if cur:
                    frames.append((cur[0], bytes(cur[1:])))
                cur = None
        elif name == clk and v == 1 and cur is not None:
            if nbits < 8:
                byte |= level[dio] << nbits
                nbits += 1
            else:  # the ACK clock closes the byte
                cur.append(byte)
                byte = nbits = 0
    return frames


# Segment shapes by name (a top, b upper right, c lower right, d bottom,
# e lower left, f upper left, g middle). Digits come first, so an ambiguous
# shape (0/O, 5/S, 2/Z) reads as the digit.
_SHAPES = [
    ("0", "abcdef"), ("1", "bc"), ("2", "abdeg"), ("3", "abcdg"), ("4", "bcfg"),
    ("5", "acdfg"), ("6", "acdefg"), ("7", "abc"), ("8", "abcdefg"), ("9", "abcdfg"),
    ("A", "abcefg"), ("B", "cdefg"), ("C", "adef"), ("D", "bcdeg"), ("E", "adefg"),
    ("F", "aefg"), ("G", "acdef"), ("H", "bcefg"), ("I", "ef"), ("J", "bcde"),
    ("L", "def"), ("N", "ceg"), ("P", "abefg"), ("Q", "abcfg"), ("R", "eg"),
    ("T", "defg"), ("U", "bcdef"), ("V", "cde"), ("Y", "bcdfg"), ("-", "g"),
    ("_", "d"), (" ", ""),
]  # fmt: skip


def _mask(names: str) -> int:
    return sum(1 << "abcdefg".index(s) for s in names)


SEGMENT_CHARS: dict[int, str] = {}
for _ch, _names in _SHAPES:
    SEGMENT_CHARS.setdefault(_mask(_names), _ch)


def segments_to_text(data: bytes) -> str:
    """Segment bytes -> what a person reads ('?' for an unknown shape, '.' for a lit dot)."""
    out = []
    for b in data:
        out.append(SEGMENT_CHARS.get(b & 0x7F, "?"))
        if b & 0x80:
            out.append(".")
    return "".join(out)


class TM1637Model:
    """The chip's state after a list of decoded frames (datasheet §7 commands)."""

    def __init__(self, grids: int = 6):
        self.memory = bytearray(grids)
        self.on = False
        self.brightness = 0
        self.auto_increment = True

    def apply(self, frames: Iterable[tuple[int, bytes]]) -> TM1637Model:
        for cmd, data in frames:
            kind = cmd & 0xC0
            if kind == 0x40:  # data command; bit 2 = fixed address
                self.auto_increment = not cmd & 0x04
            elif kind == 0xC0:  # address command, then display data
                addr = cmd & 0x07
                for b in data:
                    if addr < len(self.memory):
                        self.memory[addr] = b
                    if self.auto_increment:
                        addr += 1
            elif kind == 0x80:  # display control
                self.on = bool(cmd & 0x08)
                self.brightness = cmd & 0x07
        return self

    def text(self, digits: int = 4) -> str:
        """What the first `digits` positions show ('' while the display is off)."""
        return segments_to_text(bytes(self.memory[:digits])) if self.on else ""


# -- MAX7219 ---------------------------------------------------------------------------


class MAX7219Module:
    """One MAX7219 and its 8x8 matrix (registers per datasheet Table 2)."""

    def __init__(self) -> None:
        self.digits = bytearray(8)
        self.decode_mode = 0
        self.intensity = 0
        self.scan_limit = 0
        self.shutdown = True  # power-up state: shutdown mode
        self.test = False
        self.writes = 0

    def apply(self, reg: int, data: int) -> None:
        reg &= 0x0F
        if reg == 0x00:
            return  # no-op: this module keeps its state
        self.writes += 1
        if 0x01 <= reg <= 0x08:
            self.digits[reg - 1] = data
        elif reg == 0x09:
            self.decode_mode = data
        elif reg == 0x0A:
            self.intensity = data & 0x0F
        elif reg == 0x0B:
            self.scan_limit = data & 0x07
        elif reg == 0x0C:
            self.shutdown = not data & 1
        elif reg == 0x0F:
            self.test = bool(data & 1)

    def lit(self) -> list[list[bool]]:
        """8 rows of 8 LEDs, left to right (bit 7 of a row byte is the leftmost)."""
        rows = []
        for r in range(8):
            if self.test:
                bits = 0xFF
            elif self.shutdown or r > self.scan_limit:
                bits = 0
            else:
                bits = self.digits[r]
            rows.append([bool(bits & (0x80 >> c)) for c in range(8)])
        return rows


class VirtualSPI:
    """An SPI bus whose bytes go to a device while its chip select is low."""

    def __init__(self, device: MAX7219Chain):
        self.device = device
        self.writes = 0

    def write(self, buf: Any) -> None:
        self.writes += 1
        self.device.shift(bytes(buf))


class _LoadPin:
    """The MAX7219 chain's LOAD/CS input: data latches on its rising edge."""

    def __init__(self, chain: MAX7219Chain):
        self.chain = chain
        self.level = 1

    def value(self, v: int | None = None) -> int:
        if v is not None:
            v = 1 if v else 0
            if v and not self.level:
                self.chain.latch()
            self.level = v
        return self.level

    __call__ = value


class MAX7219Chain:
    """N daisy-chained MAX7219 modules behind one SPI bus and CS pin.

    modules[0] is the leftmost, the one FARTHEST from the MCU: the first word
    shifted in travels through every module and ends up there.
    """

    def __init__(self, n: int = 4):
        self.n = n
        self.modules = [MAX7219Module() for _ in range(n)]
        self.spi = VirtualSPI(self)
        self.cs = _LoadPin(self)
        self.shift_register = bytearray(2 * n)
        self.latches = 0
        self.ignored = 0  # bytes clocked in while CS was high

    def shift(self, data: bytes) -> None:
        if self.cs.level:
            self.ignored += len(data)
            return
        self.shift_register = (self.shift_register + data)[-2 * self.n :]

    def latch(self) -> None:
        self.latches += 1
        sr = self.shift_register
        for i, m in enumerate(self.modules):
            m.apply(sr[2 * i], sr[2 * i + 1])

    def rows(self) -> list[str]:
        """The whole chain as 8 text rows, '#' lit and '.' dark."""
        mats = [m.lit() for m in self.modules]
        return ["".join("#" if px else "." for mat in mats for px in mat[r]) for r in range(8)]


# -- SSD1306 over I2C --------------------------------------------------------------


class VirtualI2C:
    """An I2C bus with devices at addresses; writeto to nobody raises OSError like a NACK."""

    def __init__(self) -> None:
        self.devices: dict[int, Any] = {}
        self.writes = 0

    def attach(self, addr: int, device: Any) -> Any:
        self.devices[addr] = device
        return device

    def scan(self) -> list[int]:
        return sorted(self.devices)

    def writeto(self, addr: int, buf: Any, stop: bool = True) -> int:
        dev = self.devices.get(addr)
        if dev is None:
            raise OSError(19, "ENODEV")  # MicroPython's error for an address NACK
        self.writes += 1
        data = bytes(buf)
        dev.receive(data)
        return len(data)


# Commands with argument bytes (SSD1306 datasheet §10 command table).
_SSD1306_ARGS = {
    0x81: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xDA: 1, 0xD5: 1,
    0xD9: 1, 0xDB: 1, 0x8D: 1, 0xA3: 2, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5,
}  # fmt: skip


class SSD1306Model:
    """The controller side of an SSD1306: command parser and GDDRAM (8 pages x 128)."""

    def __init__(self, width: int = 128, height: int = 64):
        self.width = width
        self.height = height
        self.gddram = bytearray(8 * 128)
        self.on = False
        self.inverted = False
        self.contrast = 0x7F
        self.mux = 63
        self.charge_pump = False
        self.addressing = 2  # reset: page addressing
        self.seg_remap = False
        self.com_scan_dec = False
        self.col = self.col_start = 0
        self.col_end = 127
        self.page = self.page_start = 0
        self.page_end = 7
        self.commands: list[int] = []
        self.data_bytes = 0
        self._pending: list[int] = []

    def receive(self, buf: bytes) -> None:
        """One I2C write: control byte(s) then command or data bytes (§8.1.5.1)."""
        i = 0
        while i < len(buf):
            ctrl = buf[i]
            i += 1
            is_data = bool(ctrl & 0x40)
            if ctrl & 0x80:  # Co = 1: exactly one byte, then another control byte
                chunk = buf[i : i + 1]
                i += 1
            else:  # Co = 0: the rest of the transfer
                chunk = buf[i:]
                i = len(buf)
            for b in chunk:
                if is_data:
                    self._data(b)
                else:
                    self._command_byte(b)

    def _command_byte(self, b: int) -> None:
        self._pending.append(b)
        need = _SSD1306_ARGS.get(self._pending[0], 0)
        if len(self._pending) <= need:
            return
        cmd, args = self._pending[0], self._pending[1:]
        self._pending = []
        self.commands.append(cmd)
        if cmd in (0xAE, 0xAF):
            self.on = cmd == 0xAF
        elif cmd in (0xA6, 0xA7):
            self.inverted = cmd == 0xA7
        elif cmd == 0x81:
            self.contrast = args[0]
        elif cmd == 0xA8:
            self.mux = args[0]
        elif cmd == 0x8D:
            self.charge_pump = bool(args[0] & 0x04)
        elif cmd == 0x20:
            self.addressing = args[0] & 3
        elif cmd in (0xA0, 0xA1):
            self.seg_remap = cmd == 0xA1
        elif cmd in (0xC0, 0xC8):
            self.com_scan_dec = cmd == 0xC8
        elif cmd == 0x21:
            self.col_start, self.col_end = args[0] & 0x7F, args[1] & 0x7F
            self.col = self.col_start
        elif cmd == 0x22:
            self.page_start, self.page_end = args[0] & 7, args[1] & 7
            self.page = self.page_start
        elif 0xB0 <= cmd <= 0xB7:  # page addressing: page start
            self.page = cmd & 7
        elif cmd <= 0x0F:  # page addressing: lower column nibble
            self.col = (self.col & 0xF0) | cmd
        elif 0x10 <= cmd <= 0x1F:
            self.col = (self.col & 0x0F) | ((cmd & 0x0F) << 4)

    def _data(self, b: int) -> None:
        self.data_bytes += 1
        self.gddram[self.page * 128 + self.col] = b
        if self.addressing == 0:  # horizontal: column, then page, wrapping in the window
            if self.col >= self.col_end:
                self.col = self.col_start
                self.page = self.page_start if self.page >= self.page_end else self.page + 1
            else:
                self.col += 1
        elif self.addressing == 1:  # vertical: page, then column
            if self.page >= self.page_end:
                self.page = self.page_start
                self.col = self.col_start if self.col >= self.col_end else self.col + 1
            else:
                self.page += 1
        else:  # page addressing: the column pointer stops at 127
            self.col = min(self.col + 1, 127)

    def pixel(self, x: int, y: int) -> bool:
        """GDDRAM bit at (x, y) in RAM coordinates (what the driver drew)."""
        return bool(self.gddram[(y >> 3) * 128 + x] & (1 << (y & 7)))

    def rows(self, x: int = 0, y: int = 0, w: int | None = None, h: int | None = None) -> list[str]:
        """A region of GDDRAM as text rows, '#' lit and '.' dark."""
        w = self.width - x if w is None else w
        h = self.height - y if h is None else h
        return [
            "".join("#" if self.pixel(cx, cy) else "." for cx in range(x, x + w))
            for cy in range(y, y + h)
        ]


# -- UART and ESC/POS ---------------------------------------------------------------


class VirtualUART:
    """A UART: what the driver wrote is in `tx`; `source()` (if any) supplies
    bytes that arrived before each read, `feed()` queues bytes directly."""

    def __init__(self, source: Callable[[], bytes] | None = None):
        self.tx = bytearray()
        self.rx = bytearray()
        self.source = source

    def write(self, buf: Any) -> int:
        data = bytes(buf)
        self.tx += data
        return len(data)

    def feed(self, data: bytes) -> None:
        self.rx += data

    def _pull(self) -> None:
        if self.source is not None:
            self.rx += self.source()

    def any(self) -> int:
        self._pull()
        return len(self.rx)

    def read(self, n: int | None = None) -> bytes | None:
        """Like machine.UART.read: None when nothing has arrived."""
        self._pull()
        if not self.rx:
            return None
        n = len(self.rx) if n is None else n
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out


def decode_escpos(data: bytes) -> dict[str, Any]:
    """An ESC/POS byte stream -> what the paper shows.

    Keys: lines (text of each printed line), styled (per line: text, bold,
    width, height, align), bold and double (texts of such lines), qr (payload
    of the last GS ( k store, fn 80), qr_printed (payloads printed by fn 81,
    with the index of the line they follow), qr_model, qr_module, qr_ec,
    cuts, inits, feeds, codepage, unknown (bytes no command explains).
    """
    out: dict[str, Any] = {
        "lines": [], "styled": [], "bold": [], "double": [], "qr": None,
        "qr_printed": [], "qr_model": None, "qr_module": None, "qr_ec": None,
        "cuts": 0, "inits": 0, "feeds": 0, "codepage": None, "unknown": [],
    }  # fmt: skip
    bold = False
    width = height = 1
    align = 0
    line: list[str] = []
    line_bold = False
    line_w = line_h = 1
    qr_store: bytes | None = None

    def end_line() -> None:
        nonlocal line, line_bold, line_w, line_h
        text = "".join(line)
        out["lines"].append(text)
        out["styled"].append(
            {"text": text, "bold": line_bold, "width": line_w, "height": line_h, "align": align}
        )
        if line_bold:
            out["bold"].append(text)
        if line_w >= 2 and line_h >= 2:
            out["double"].append(text)
        line, line_bold, line_w, line_h = [], bold, width, height

    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b == 0x0A:
            end_line()
            i += 1
        elif b == 0x1B and i + 1 < n:
            op = data[i + 1]
            if op == 0x40:  # ESC @
                out["inits"] += 1
                bold, width, height, align = False, 1, 1, 0
                i += 2
                continue
            arg = data[i + 2] if i + 2 < n else 0
            if op == 0x45:  # ESC E n
                bold = bool(arg & 1)
                line_bold = line_bold or bold
            elif op == 0x61:  # ESC a n (0/48 left, 1/49 centre, 2/50 right)
                align = arg - 48 if arg >= 48 else arg
            elif op == 0x74:  # ESC t n
                out["codepage"] = arg
            elif op == 0x64:  # ESC d n
                if line:
                    end_line()
                out["feeds"] += arg
            else:
                out["unknown"].append(bytes(data[i : i + 3]))
            i += 3
        elif b == 0x1D and i + 1 < n:
            op = data[i + 1]
            if op == 0x21:  # GS ! n
                n_ = data[i + 2]
                width, height = (n_ >> 4) + 1, (n_ & 0x0F) + 1
                line_w, line_h = max(line_w, width), max(line_h, height)
                i += 3
            elif op == 0x56:  # GS V m [n]
                m = data[i + 2]
                out["cuts"] += 1
                i += 4 if m in (65, 66, 97, 98, 103, 104) else 3
            elif op == 0x28 and data[i + 2] == 0x6B:  # GS ( k pL pH cn fn ...
                plen = data[i + 3] | (data[i + 4] << 8)
                body = bytes(data[i + 5 : i + 5 + plen])
                cn, fn, params = body[0], body[1], body[2:]
                if cn == 49:
                    if fn == 65:
                        out["qr_model"] = params[0] - 48
                    elif fn == 67:
                        out["qr_module"] = params[0]
                    elif fn == 69:
                        out["qr_ec"] = "LMQH"[params[0] - 48]
                    elif fn == 80:
                        qr_store = params[1:]  # params[0] is m = 48
                        out["qr"] = qr_store.decode("ascii", "replace")
                    elif fn == 81 and qr_store is not None:
                        out["qr_printed"].append(
                            (len(out["lines"]), qr_store.decode("ascii", "replace"))
                        )
                else:
                    out["unknown"].append(bytes(data[i : i + 5]) + body)
                i += 5 + plen
            else:
                out["unknown"].append(bytes(data[i : i + 2]))
                i += 2
        elif 0x20 <= b < 0x7F:
            if not line:
                line_bold, line_w, line_h = bold, width, height
            line.append(chr(b))
            i += 1
        else:
            out["unknown"].append(bytes([b]))
            i += 1
    if line:
        end_line()
    return out


# -- sensors -------------------------------------------------------------------------


def speed_of_sound(temp_c: float) -> float:
    """m/s in dry air: the ideal-gas law, not the drivers' linear fit."""
    return 331.3 * math.sqrt(1 + temp_c / 273.15)


class VirtualEcho:
    """A `time_pulse_us(pin, level, timeout_us)` for a water surface `distance_mm`
    below a JSN-SR04T in air at `temp_c`.

    `script` holds results consumed first: a negative int is returned as is
    (-2: no echo started, -1: echo longer than the timeout, as
    machine.time_pulse_us), a number is a distance in mm for that one echo
    (a spike). Then random noise, drops and spikes at the given rates.
    A surface nearer than `dead_zone_mm` (the JSN-SR04T's blind zone, ~25 cm:
    the transducer still rings from its own burst) gives a ring-down echo
    somewhere inside the blind zone instead of the true distance.
    """

    dead_zone_mm = 250.0

    def __init__(
        self,
        distance_mm: float,
        temp_c: float = 20.0,
        noise_mm: float = 0.0,
        drop_rate: float = 0.0,
        spike_rate: float = 0.0,
        seed: int = 0,
    ):
        self.distance_mm = distance_mm
        self.temp_c = temp_c
        self.noise_mm = noise_mm
        self.drop_rate = drop_rate
        self.spike_rate = spike_rate
        self.script: list[float] = []
        self.rng = random.Random(seed)
        self.calls = 0

    def echo_us(self, distance_mm: float) -> int:
        """Round trip at this temperature, µs."""
        return round(2 * distance_mm / (speed_of_sound(self.temp_c) / 1000))

    def __call__(self, pin: Any, level: int, timeout_us: int) -> int:
        self.calls += 1
        if self.script:
            item = self.script.pop(0)
            if item < 0:
                return int(item)
            d = item
        elif self.rng.random() < self.drop_rate:
            return -2
        elif self.rng.random() < self.spike_rate:
            d = self.rng.uniform(300, self.distance_mm * 0.6)  # rain drop, web, wall
        elif self.distance_mm < self.dead_zone_mm:
            d = self.rng.uniform(0.4, 0.95) * self.dead_zone_mm  # the ring-down, not the water
        else:
            d = self.distance_mm
            if self.noise_mm:
                d += self.rng.gauss(0, self.noise_mm)
        us = self.echo_us(d)
        return -1 if us > timeout_us else us


def a02yyuw_frame(mm: int, corrupt: bool = False) -> bytes:
    """One A02YYUW UART frame: 0xFF, H, L, SUM (SUM = low byte of the other three)."""
    h, low = (mm >> 8) & 0xFF, mm & 0xFF
    s = (0xFF + h + low) & 0xFF
    return bytes([0xFF, h, low, s ^ 0x5A if corrupt else s])


class A02YYUWStream:
    """A `source` for VirtualUART: one frame per read, as if ~100 ms passed.

    `script` frames (bytes) go first; then frames of `distance_mm`.
    """

    def __init__(self, distance_mm: int):
        self.distance_mm = distance_mm
        self.script: list[bytes] = []

    def __call__(self) -> bytes:
        if self.script:
            return self.script.pop(0)
        return a02yyuw_frame(self.distance_mm)


class VirtualADC:
    """An ESP32 ADC pin at `mv` millivolts (after the divider), with optional noise."""

    def __init__(self, mv: float, noise_mv: float = 0.0, seed: int = 0):
        self.mv = mv
        self.noise_mv = noise_mv
        self.rng = random.Random(seed)
        self.reads = 0

    def _mv(self) -> float:
        self.reads += 1
        return self.mv + (self.rng.gauss(0, self.noise_mv) if self.noise_mv else 0.0)

    def read_uv(self) -> int:
        return max(0, round(self._mv() * 1000))

    def read_u16(self) -> int:
        return max(0, min(65535, round(self._mv() / 3300 * 65535)))


def crc8_maxim(data: bytes) -> int:
    """Dallas/Maxim 1-Wire CRC-8 (x^8 + x^5 + x^4 + 1, LSB first)."""
    crc = 0
    for b in data:
        for _ in range(8):
            mix = (crc ^ b) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            b >>= 1
    return crc


def ds18b20_scratchpad(temp_c: float, resolution: int = 12) -> bytes:
    """The 9 scratchpad bytes a DS18B20 at temp_c returns (datasheet Figure 9)."""
    raw = round(temp_c * 16) & 0xFFFF
    config = 0x1F | ((resolution - 9) << 5)
    body = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, config, 0xFF, 0x0C, 0x10])
    return body + bytes([crc8_maxim(body)])


class VirtualDS18X20:
    """Shaped like MicroPython's ds18x20.DS18X20 with one probe at `temp_c`
    (None: no probe on the bus)."""

    def __init__(self, temp_c: float | None = 20.0):
        self.temp_c = temp_c
        self.conversions = 0
        self.corrupt = False  # flip a bit in the next scratchpad read

    def scan(self) -> list[bytes]:
        return [] if self.temp_c is None else [b"\x28\x01\x02\x03\x04\x05\x06\x07"]

    def convert_temp(self) -> None:
        if self.temp_c is None:
            raise OSError("no presence pulse")
        self.conversions += 1

    def read_scratch(self, rom: bytes) -> bytearray:
        if self.temp_c is None:
            raise OSError("no presence pulse")
        sp = bytearray(ds18b20_scratchpad(self.temp_c))
        if self.corrupt:
            sp[0] ^= 0x01
            self.corrupt = False
        return sp
