# DFPlayer Mini (YX5200/MH2024K MP3 module, microSD) on a UART at 9600 8N1:
# spoken queue calls built from short recorded clips.
#
# DFPlayer Mini manual, "Serial communication format": 10-byte frames
#   0x7E  0xFF  0x06  CMD  FEEDBACK  PARAM_H  PARAM_L  CHK_H  CHK_L  0xEF
# checksum = -(0xFF + 0x06 + CMD + FEEDBACK + PARAM_H + PARAM_L) & 0xFFFF,
# e.g. play track 1: 7E FF 06 03 00 00 01 FE F7 EF.
# Commands used: 0x0F play folder/track (PARAM_H folder 1..99, PARAM_L track
# 1..255: file /NN/TTT.mp3), 0x06 volume 0..30, 0x16 stop, 0x0C reset.
# The BUSY pin is low while a clip plays; without it each clip gets clip_ms.
#
# microSD layout (record the clips in one voice, trim the silence):
#   /01/001.mp3 chime ("ding-dong")   /01/002.mp3 "nomor antrean"
#   /01/003.mp3 "silakan ke loket"
#   /02/001.mp3 .. /02/026.mp3  letters "A" .. "Z"
#   /03/001..009 "satu".."sembilan", 010 "sepuluh", 011 "sebelas",
#       012 "belas", 013 "puluh", 014 "seratus", 015 "ratus",
#       016 "seribu", 017 "ribu", 018 "nol"
import asyncio

from firmware.core import clock
from firmware.core.compat import const

_CMD_PLAY_FOLDER = const(0x0F)
_CMD_VOLUME = const(0x06)
_CMD_STOP = const(0x16)
_CMD_RESET = const(0x0C)

PHRASES = const(1)
LETTERS = const(2)
NUMBERS = const(3)
CHIME = const(1)
NOMOR_ANTREAN = const(2)
SILAKAN_KE_LOKET = const(3)
SEPULUH = const(10)
SEBELAS = const(11)
BELAS = const(12)
PULUH = const(13)
SERATUS = const(14)
RATUS = const(15)
SERIBU = const(16)
RIBU = const(17)
NOL = const(18)


def checksum(cmd, feedback, param):
    """Frame checksum: minus the sum of version, length, cmd, feedback, param bytes."""
    return -(0xFF + 0x06 + cmd + feedback + (param >> 8) + (param & 0xFF)) & 0xFFFF


def frame_into(buf, cmd, param=0, feedback=0):
    """Build the 10-byte frame for `cmd` in `buf`; returns buf."""
    chk = checksum(cmd, feedback, param)
    buf[0] = 0x7E
    buf[1] = 0xFF
    buf[2] = 0x06
    buf[3] = cmd
    buf[4] = feedback
    buf[5] = (param >> 8) & 0xFF
    buf[6] = param & 0xFF
    buf[7] = chk >> 8
    buf[8] = chk & 0xFF
    buf[9] = 0xEF
    return buf


def _below_100(n, out):
    if n < 10:
        out.append(n)  # tracks 1..9 are the digits
    elif n == 10:
        out.append(SEPULUH)
    elif n == 11:
        out.append(SEBELAS)
    elif n < 20:
        out.append(n - 10)
        out.append(BELAS)
    else:
        out.append(n // 10)
        out.append(PULUH)
        if n % 10:
            out.append(n % 10)


def number_clips(n, out):
    """Append the NUMBERS-folder tracks that say `n` (0..9999) in Indonesian:
    12 "dua belas", 105 "seratus lima", 1250 "seribu dua ratus lima puluh"."""
    if n == 0:
        out.append(NOL)
        return out
    th = n // 1000
    h = (n // 100) % 10
    rest = n % 100
    if th == 1:
        out.append(SERIBU)
    elif th > 1:
        _below_100(th, out)
        out.append(RIBU)
    if h == 1:
        out.append(SERATUS)
    elif h > 1:
        out.append(h)
        out.append(RATUS)
    if rest:
        _below_100(rest, out)
    return out


def _say_label(label, clips):
    """Letters one by one, then the digits as one number ("A012" -> A, dua belas)."""
    digits = 0
    has_digits = False
    for ch in str(label):
        c = ord(ch.upper())
        if 0x41 <= c <= 0x5A:
            clips.append((LETTERS << 8) | (c - 0x40))
        elif 0x30 <= c <= 0x39:
            digits = digits * 10 + c - 0x30
            has_digits = True
    if has_digits:
        for t in number_clips(digits % 10000, []):
            clips.append((NUMBERS << 8) | t)


class DFPlayer:
    """DFPlayer Mini on `uart` (write(bytes)); `busy` is its BUSY pin or None."""

    max_clips = 32  # bounded queue; a call that does not fit is dropped and counted
    clip_ms = 900  # per clip when there is no BUSY pin
    start_ms = 400  # time for BUSY to go low after a play command
    clip_max_ms = 5000  # a clip longer than this is cut short (stuck BUSY)
    poll_ms = 20

    def __init__(self, uart, busy=None, volume=25):
        self.uart = uart
        self.busy = busy
        self.buf = bytearray(10)
        self.queue = []  # (folder << 8) | track
        self.dropped = 0  # calls dropped because the queue was full
        self.played = 0
        self.ready = asyncio.Event()
        self.volume(volume)

    def send(self, cmd, param=0):
        self.uart.write(frame_into(self.buf, cmd, param))

    def volume(self, v):
        self.send(_CMD_VOLUME, max(0, min(30, v)))

    def play(self, folder, track):
        """Play /folder/track.mp3 now (interrupts what is playing)."""
        self.send(_CMD_PLAY_FOLDER, (folder << 8) | track)
        self.played += 1

    def stop(self):
        self.send(_CMD_STOP)

    def say_call(self, ticket, counter):
        """Queue "ding-dong, nomor antrean A dua belas, silakan ke loket tiga"."""
        clips = [(PHRASES << 8) | CHIME, (PHRASES << 8) | NOMOR_ANTREAN]
        _say_label(ticket, clips)
        clips.append((PHRASES << 8) | SILAKAN_KE_LOKET)
        _say_label(counter, clips)
        if len(self.queue) + len(clips) > self.max_clips:
            self.dropped += 1
            return False
        self.queue.extend(clips)
        self.ready.set()
        return True

    async def _wait_clip(self):
        busy = self.busy
        if busy is None:
            await clock.sleep_ms(self.clip_ms)
            return
        t0 = clock.ticks_ms()
        while busy.value() and clock.ticks_diff(clock.ticks_ms(), t0) < self.start_ms:
            await clock.sleep_ms(self.poll_ms)
        while not busy.value() and clock.ticks_diff(clock.ticks_ms(), t0) < self.clip_max_ms:
            await clock.sleep_ms(self.poll_ms)

    async def run(self):
        """Own task: play the queued clips one after another."""
        while True:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            clip = self.queue.pop(0)
            self.play(clip >> 8, clip & 0xFF)
            await self._wait_clip()
