# Millisecond ticks and sleeps that behave the same on MicroPython and CPython.
#
# MicroPython has time.ticks_ms()/ticks_diff()/ticks_add(): a counter that wraps
# (at 2**30 ms on most ports, ~12.4 days) and must only be compared through
# ticks_diff(). CPython has none of them, so the same wrapping arithmetic is
# built on the running asyncio loop's clock when a loop runs (so a simulator
# loop whose clock runs faster, simulator/clock.py, speeds the firmware's
# timers and its sleeps alike), else on time.monotonic_ns(). The platform is
# decided once, at import; code that uses this module never asks which one it
# runs on.
import asyncio
import time

if hasattr(time, "ticks_ms"):
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
else:
    # Same period as MicroPython's ports, so wrap-around bugs show up here too.
    _PERIOD = 1 << 30
    _MASK = _PERIOD - 1
    _HALF = _PERIOD >> 1
    # CPython only. Looked up by name because this module is type-checked
    # against MicroPython's time stubs, which rightly have no monotonic_ns.
    _monotonic_ns = getattr(time, "monotonic_ns")  # noqa: B009 (see above)
    _running_loop = getattr(asyncio, "get_running_loop")  # noqa: B009 (CPython only, as above)

    def ticks_ms():
        """Milliseconds from an arbitrary origin, wrapping at 2**30.

        On the running loop's clock (an ordinary loop's is time.monotonic(),
        so both sources agree there), else on the monotonic clock."""
        try:
            ms = int(_running_loop().time() * 1000)
        except RuntimeError:  # no loop runs: the host's clock
            ms = _monotonic_ns() // 1000000
        return ms & _MASK

    def ticks_add(a, d):
        """The tick value d milliseconds after a (d may be negative)."""
        return (a + d) & _MASK

    def ticks_diff(a, b):
        """Signed milliseconds from b to a, correct across one wrap."""
        d = (a - b) & _MASK
        return d - _PERIOD if d >= _HALF else d


async def sleep_ms(ms):
    """Sleep ms milliseconds (asyncio.sleep takes seconds on both platforms)."""
    await asyncio.sleep(ms / 1000)
