# DS18B20 1-Wire temperature probe, for the speed-of-sound compensation of the
# ultrasonic ranger. Mount it in the ranger's shade: sun on the housing reads
# hot and makes every distance too long.
#
# Maxim DS18B20 datasheet (19-7487 Rev 6):
#  Figure 9 scratchpad: byte 0 temperature LSB, 1 MSB (two's complement,
#     1/16 °C per bit), 2 TH, 3 TL, 4 configuration (0 R1 R0 1 1 1 1 1),
#     5..7 reserved, 8 CRC of bytes 0..7.
#  Table 2: at 9/10/11-bit resolution the low 3/2/1 bits are undefined.
#  "CRC Generation": CRC-8 with polynomial x^8 + x^5 + x^4 + 1, LSB first.
#  Table 3: 12-bit conversion takes up to 750 ms. The power-on value of the
#     temperature register is +85 °C: reading it means no conversion ran
#     (typically a brown-out on parasitic power), so it counts as a failure.
from firmware.core import clock

try:
    import ds18x20 as _ds18x20
    import onewire as _onewire

    _HAVE_ONEWIRE = True
except ImportError:  # CPython (simulator) or a port without 1-Wire
    _HAVE_ONEWIRE = False

CONVERSION_MS = 750  # Table 3, 12-bit resolution
_POWER_ON_RAW = 0x0550  # +85.0 °C


def crc8(data, n=None):
    """Dallas/Maxim 1-Wire CRC-8 (reflected polynomial 0x8C) of data[0:n]."""
    if n is None:
        n = len(data)
    crc = 0
    for i in range(n):
        b = data[i]
        for _ in range(8):
            mix = (crc ^ b) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            b >>= 1
    return crc


def decode_scratchpad(sp):
    """9 scratchpad bytes -> °C, or None when they cannot be trusted
    (wrong length, CRC mismatch, impossible config byte, power-on value)."""
    if sp is None or len(sp) != 9 or crc8(sp, 8) != sp[8]:
        return None
    # Config byte is 0 R1 R0 1 1 1 1 1: this also rejects an all-zero
    # scratchpad (bus stuck low), whose CRC is "valid".
    if (sp[4] & 0x9F) != 0x1F:
        return None
    raw = sp[0] | (sp[1] << 8)
    if raw == _POWER_ON_RAW:
        return None
    if raw & 0x8000:
        raw -= 0x10000
    undefined = 3 - ((sp[4] >> 5) & 3)  # low bits undefined at 9..11-bit resolution
    raw &= ~((1 << undefined) - 1)
    return raw / 16


class DS18B20:
    """One DS18B20 on a 1-Wire pin.

    `sensor` is anything shaped like MicroPython's ds18x20.DS18X20 (scan(),
    convert_temp(), read_scratch(rom)); by default one is built on `pin` from
    the onewire/ds18x20 modules when the firmware has them.
    """

    conversion_ms = CONVERSION_MS

    def __init__(self, pin=None, sensor=None):
        if sensor is None and pin is not None and _HAVE_ONEWIRE:
            sensor = _ds18x20.DS18X20(_onewire.OneWire(pin))
        self.sensor = sensor
        self.rom = None
        self.failures = 0
        self.last_c = None

    async def read_c(self):
        """Convert, wait, read: °C, or None on any failure (no probe, CRC, bus error)."""
        s = self.sensor
        if s is None:
            return None
        try:
            if self.rom is None:
                roms = s.scan()
                if not roms:
                    raise OSError("no DS18B20")
                self.rom = roms[0]
            s.convert_temp()
            await clock.sleep_ms(self.conversion_ms)
            t = decode_scratchpad(s.read_scratch(self.rom))
        except Exception:  # OSError from the bus, or anything a broken probe causes
            t = None
            self.rom = None  # rescan next time: the probe may have been replaced
        if t is None:
            self.failures += 1
        self.last_c = t
        return t
