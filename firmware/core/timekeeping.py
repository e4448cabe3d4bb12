# Wall-clock time with a known "unsynced" state.
#
# An ESP32 has no battery-backed clock: after power-on its RTC counts from
# 2000-01-01, so a reading stamped then would be 25 years off. The board
# therefore knows whether its clock is real: board.time() is Unix seconds once
# NTP succeeded (or the RTC kept a plausible time across a soft reset or deep
# sleep), and None before; a water reading then goes without "ts" and the
# controller stamps its arrival (CONTRACT section 1).
#
# Timekeeper syncs after the network is up, retries failures with an
# exponential back-off (half jitter: a hall of boards does not hit the NTP
# server in one burst after a power cut), and re-syncs every resync_s (the
# RTC's crystal drifts by seconds a day; ESP32 datasheet, RTC clock sources).
#
# Epochs: MicroPython's time.time() counts from 2000-01-01 on ports built with
# that epoch (the ESP32 up to v1.2x) and from 1970 on others (unix, webassembly,
# newer ports); time.gmtime(0)[0] tells which, once, at import.
import random
import time

from firmware.core import clock

UNIX_AT_2000 = 946684800  # 2000-01-01T00:00:00Z in Unix seconds
MIN_PLAUSIBLE = 1735689600  # 2025-01-01: an RTC before that was never set


def epoch_offset(epoch_year):
    """Seconds to add to time.time() for Unix time on a port whose epoch is epoch_year."""
    return UNIX_AT_2000 if epoch_year == 2000 else 0


def _epoch_year():
    try:
        return time.gmtime(0)[0]
    except Exception:  # a port without gmtime: assume the Unix epoch
        return 1970


EPOCH_OFFSET = epoch_offset(_epoch_year())  # an int, decided once


def unix_now():
    """The RTC's time in Unix seconds (whether or not it was ever set)."""
    return int(time.time()) + EPOCH_OFFSET


def plausible(unix):
    """True if unix seconds can be a real date (not an RTC counting from 2000)."""
    return unix >= MIN_PLAUSIBLE


class Timekeeper:
    """Keeps the clock synced through `sync` (e.g. ntptime.settime) and knows when it is not."""

    retry_min_ms = 2000
    retry_max_ms = 600000  # 10 minutes between attempts at most
    resync_s = 21600  # 6 hours
    offline_poll_ms = 1000

    def __init__(self, sync, now=None, resync_s=None):
        self.sync = sync  # sets the RTC; returns False or raises on failure (may be a coroutine)
        self._now = now or unix_now
        if resync_s:
            self.resync_s = resync_s
        self.synced = False
        self.syncs = 0
        self.failures = 0

    def time(self):
        """Unix seconds, or None while the clock is not synced."""
        return self._now() if self.synced else None

    def trust_rtc(self):
        """After a soft reset or deep sleep the RTC still runs: trust it if plausible."""
        if plausible(self._now()):
            self.synced = True
        return self.synced

    def retry_ms(self, attempt):
        """Wait before retry number attempt: min * 2**attempt capped, half of it random."""
        cap = self.retry_min_ms << min(attempt, 16)
        if cap > self.retry_max_ms:
            cap = self.retry_max_ms
        half = cap // 2
        return half + half * random.getrandbits(10) // 1023

    async def sync_once(self):
        """One attempt; True when the clock is now synced."""
        try:
            r = self.sync()
            if hasattr(r, "send"):  # a coroutine (a generator on MicroPython)
                r = await r
        except Exception:  # OSError (timeout, DNS), or what a board's sync raises
            r = False
        if r is not False and plausible(self._now()):
            self.synced = True
            self.syncs += 1
            return True
        self.failures += 1
        return False

    async def run(self, network_up=None):
        """Sync when the network is up, retry with back-off, re-sync every resync_s; forever."""
        attempt = 0
        while True:
            if network_up is not None and not network_up():
                await clock.sleep_ms(self.offline_poll_ms)
                continue
            if await self.sync_once():
                attempt = 0
                await clock.sleep_ms(self.resync_s * 1000)
            else:
                await clock.sleep_ms(self.retry_ms(attempt))
                attempt += 1
