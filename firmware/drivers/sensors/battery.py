# Battery voltage through a resistor divider into an ESP32 ADC pin.
#
# ESP32 ADC: nonlinear near both ends of its range; with 11 dB attenuation
# (ADC.ATTN_11DB) it reads up to ~2.45 V usefully. MicroPython's
# ADC.read_uv() applies the chip's eFuse calibration, so it is preferred over
# scaling read_u16() by a nominal reference. A 1-cell Li-ion (4.2 V max)
# through 100k/100k (ratio 2.0) gives at most 2.1 V at the pin.


class Battery:
    """Averaged battery voltage in mV from an ADC behind a divider."""

    samples = 16  # averaging removes the ADC's few-LSB noise

    def __init__(self, adc, ratio=2.0, vref_mv=3300, trim=1.0):
        self.adc = adc
        self.ratio = ratio * trim  # trim: measured V / reported V, from a multimeter
        self.vref_mv = vref_mv
        # Decided once: a calibrated read_uv() if the ADC has one.
        self._uv = getattr(adc, "read_uv", None)

    def pin_mv(self):
        """One ADC reading at the pin, in mV."""
        if self._uv is not None:
            return self._uv() / 1000
        return self.adc.read_u16() * self.vref_mv / 65535

    def read_mv(self):
        """Battery voltage in mV, averaged over `samples` readings."""
        total = 0
        for _ in range(self.samples):
            total += self.pin_mv()
        return int(total / self.samples * self.ratio + 0.5)
