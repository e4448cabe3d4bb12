# Waterproof ultrasonic rangers looking down at the water, and the filter that
# turns a burst of echoes into one honest distance.
#
# Why a burst: a single echo lies now and then (rain drops, a spider web, the
# wall of a culvert). FloodNet (NYC) found single reads let about 1 in 100
# spikes through and a median of 5 removed them. So: take `samples` echoes
# `gap_ms` apart (JSN-SR04T datasheet: >= 50 ms between measurements so the
# last ring-down has died), drop the invalid ones, take the median, reject
# echoes too far from it, and report the median of what is left together
# with how many echoes were kept (CONTRACT §1 `n`).
#
# Speed of sound in air: c = 331.3 + 0.606 * T m/s (T in °C): 343.4 m/s at
# 20 °C, 352.5 m/s at 35 °C; ignoring it is a 2.6 % error on a hot
# afternoon (5 cm at 2 m). T comes from a DS18B20 in the sensor's shade:
# sun on the housing heats the probe and skews the compensation.
from firmware.core import clock

DEFAULT_TEMP_C = 20.0  # used when no temperature is known


def speed_of_sound(temp_c):
    """m/s in dry air at temp_c °C (linear approximation, good to 0.1 % over -20..50 °C)."""
    if temp_c is None:
        temp_c = DEFAULT_TEMP_C
    return 331.3 + 0.606 * temp_c


def echo_to_mm(echo_us, temp_c):
    """Round-trip echo time (µs) -> one-way distance (mm) at temp_c."""
    # c m/s = c/1000 mm/µs; the sound travels there and back.
    return echo_us * speed_of_sound(temp_c) / 2000


def _isort(a, n):
    """Insertion sort of a[0:n] in place: no allocation, fine for n <= 15."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


def _median_sorted(a, n):
    h = n >> 1
    if n & 1:
        return a[h]
    return (a[h - 1] + a[h]) / 2


def filter_echoes(vals, n, lo, hi, scratch, band_min=50, band_max=250, k_mad=3):
    """Median-of-N with outlier rejection, in place on vals[0:n] (None = no echo).

    Keeps readings within [lo, hi] mm and sorts them; the band around their
    median is k_mad * MAD (median absolute deviation: one spike among five
    moves neither the median nor the MAD), clamped to [band_min, band_max]
    mm; readings outside it are dropped. The answer is the median of the rest,
    provided they are a strict majority of the valid readings: with two good
    echoes and two spikes nothing can tell which pair is the water, so the
    honest answer is None. `scratch` is a list at least n long.
    Returns (mm or None, number of readings kept).
    """
    m = 0
    for i in range(n):
        v = vals[i]
        if v is not None and lo <= v <= hi:
            vals[m] = v
            m += 1
    if m == 0:
        return None, 0
    _isort(vals, m)
    med = _median_sorted(vals, m)
    for i in range(m):
        scratch[i] = abs(vals[i] - med)
    _isort(scratch, m)
    band = k_mad * _median_sorted(scratch, m)
    if band < band_min:
        band = band_min
    elif band > band_max:
        band = band_max
    k = 0
    for i in range(m):
        v = vals[i]
        if abs(v - med) <= band:
            vals[k] = v  # order is kept, so vals[0:k] stays sorted
            k += 1
    if 2 * k <= m:
        return None, k
    return int(_median_sorted(vals, k) + 0.5), k


class Ranger:
    """Shared burst-and-filter logic; subclasses implement `async _echo_mm(temp_c)`."""

    samples = 5
    gap_ms = 60
    band_min_mm = 50  # readings this close to the median always count
    band_max_mm = 250  # readings farther than this from the median never do
    min_valid = 2  # fewer kept echoes than this: no reading (None)
    min_mm = 250
    max_mm = 4500

    def __init__(self):
        self._vals = [None] * self.samples
        self._scratch = [0] * self.samples
        self.last_n = 0

    async def _echo_mm(self, temp_c):
        """One echo's distance in mm, or None when none came back."""
        raise NotImplementedError

    async def measure(self, temp_c=None):
        """Burst of echoes -> (distance mm or None, number of echoes kept)."""
        vals = self._vals
        n = self.samples
        if len(vals) != n:  # `samples` changed on the instance
            vals = self._vals = [None] * n
            self._scratch = [0] * n
        for i in range(n):
            if i:
                await clock.sleep_ms(self.gap_ms)
            vals[i] = await self._echo_mm(temp_c)
        mm, k = filter_echoes(
            vals, n, self.min_mm, self.max_mm, self._scratch, self.band_min_mm, self.band_max_mm
        )
        self.last_n = k
        if mm is None or k < self.min_valid:
            return None, k
        return mm, k


class JSNSR04T(Ranger):
    """JSN-SR04T (AJ-SR04M in mode 1): trigger pulse, echo pulse width = round trip.

    `time_pulse_us(pin, level, timeout_us)` is machine.time_pulse_us on the
    board (negative on timeout: -2 no pulse started, -1 pulse too long), a
    virtual echo in the simulator. `delay_us` is time.sleep_us or a no-op.
    """

    trigger_us = 20  # datasheet: >= 10 µs; some batches need more, 20 is safe
    timeout_us = 30000  # 5 m and back at 50 °C is 27.9 ms
    min_mm = 250  # blind zone: ~20-25 cm, closer echoes are the ring-down
    max_mm = 4500

    def __init__(self, trig_pin, echo_pin, time_pulse_us, delay_us=None):
        super().__init__()
        self.trig = trig_pin
        self.echo = echo_pin
        self.time_pulse_us = time_pulse_us
        self.delay_us = delay_us
        self.timeouts = 0
        trig_pin.value(0)

    def echo_us(self):
        """One trigger -> the echo pulse width in µs (negative on timeout)."""
        self.trig.value(0)
        if self.delay_us:
            self.delay_us(4)
        self.trig.value(1)
        if self.delay_us:
            self.delay_us(self.trigger_us)
        self.trig.value(0)
        return self.time_pulse_us(self.echo, 1, self.timeout_us)

    async def _echo_mm(self, temp_c):
        t = self.echo_us()
        if t <= 0:
            self.timeouts += 1
            return None
        return echo_to_mm(t, temp_c)


class A02Parser:
    """A02YYUW UART frames: 0xFF, H, L, SUM with SUM = (0xFF + H + L) & 0xFF and
    distance = H*256 + L mm (DFRobot SEN0311 datasheet, "UART output").

    A 4-byte sliding window: any byte can start a frame, so after noise or a
    bad checksum the parser finds the next 0xFF header by itself.
    """

    def __init__(self):
        self.win = bytearray(4)
        self.fill = 0
        self.frames = 0
        self.bad = 0  # frames with a header but a wrong checksum

    def feed(self, b):
        """One received byte; returns the distance (mm) when it completes a frame."""
        w = self.win
        w[0] = w[1]
        w[1] = w[2]
        w[2] = w[3]
        w[3] = b
        if self.fill < 4:
            self.fill += 1
            if self.fill < 4:
                return None
        # A real H is at most 0x11 (4.5 m), so 0xFF followed by H >= 0x80 is
        # not a frame: e.g. a stray 0xFF right before the true header.
        if w[0] != 0xFF or w[1] & 0x80:
            return None
        if (w[0] + w[1] + w[2]) & 0xFF != w[3]:
            self.bad += 1
            return None
        self.fill = 0  # the next frame starts after this one
        self.frames += 1
        return (w[1] << 8) | w[2]


class A02YYUW(Ranger):
    """DFRobot A02YYUW (SEN0311) on a UART at 9600 8N1, streaming a frame
    every ~100 ms (RX left high/unconnected: "processed value" output mode).

    The module computes the distance itself from its own assumptions. With
    compensate=True the reading is rescaled by c(T)/c(20 °C) with the DS18B20
    temperature; leave it off when the module compensates internally.
    """

    min_mm = 30  # blind zone 3 cm
    max_mm = 4500
    frame_timeout_ms = 300  # three frame periods
    poll_ms = 10

    def __init__(self, uart, compensate=False):
        super().__init__()
        self.uart = uart
        self.parser = A02Parser()
        self.compensate = compensate
        self.timeouts = 0

    def poll(self):
        """Read what the UART holds; the newest complete frame's mm, or None."""
        data = self.uart.read()
        mm = None
        if data:
            feed = self.parser.feed
            for b in data:
                r = feed(b)
                if r is not None:
                    mm = r
        return mm

    async def _echo_mm(self, temp_c):
        self.poll()  # drop what queued up since the last echo: it is stale
        waited = 0
        while waited < self.frame_timeout_ms:
            await clock.sleep_ms(self.poll_ms)
            waited += self.poll_ms
            mm = self.poll()
            if mm is not None:
                if self.compensate and temp_c is not None:
                    return mm * speed_of_sound(temp_c) / speed_of_sound(DEFAULT_TEMP_C)
                return mm
        self.timeouts += 1
        return None
