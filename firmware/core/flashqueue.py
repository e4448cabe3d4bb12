# A small bounded queue on flash: what must survive a reboot while the
# network is away. (The water board's unsent readings, hours of them, use the
# chunked Spool instead: firmware/core/spool.py, RAM bounded by two chunks.)
#
# One file in board.storage, one JSON document per line, oldest first. Every
# change rewrites the file through storage.write(), which on the ESP32 writes
# a temporary file and renames it (firmware/board/esp32.py), so a brown-out
# mid-write leaves the old queue or the new one, never half a line. The lines
# are also kept in RAM: size max_items for the board's heap (a reading is
# about 100 bytes; 100 readings cost about 10 KB).
#
# Full queue: the oldest item is dropped to make room (the newest readings
# matter most in a flood) and counted in `dropped`, which is kept on flash
# too (file name + ".dropped"). A line that does not parse (a file edited by
# hand, a storage that lost its tail) is dropped on load and counted as well.
#
# Rewriting the file on each change wears flash: fine at one reading every
# few minutes (littlefs spreads the writes), wrong for many items a second.
import json


class FlashQueue:
    """Bounded FIFO of JSON-able items on flash: append, peek, pop, len, dropped."""

    def __init__(self, storage, name, max_items):
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.storage = storage
        self.name = name
        self.max_items = max_items
        self._lines = []
        self.dropped = 0
        self.write_errors = 0
        raw = storage.read(name + ".dropped")
        try:
            self.dropped = int(raw) if raw else 0
        except ValueError:
            self.dropped = 0
        bad = 0
        text = storage.read(name)
        if text:
            for line in text.split("\n"):
                if not line:
                    continue
                try:
                    json.loads(line)
                except ValueError:
                    bad += 1
                    continue
                self._lines.append(line)
        over = len(self._lines) - max_items  # max_items lowered since the file was written
        if over > 0:
            self._lines = self._lines[over:]
            bad += over
        if bad:
            self._count_dropped(bad)
            self._save()

    def __len__(self):
        return len(self._lines)

    def _write(self, name, text):
        # A full flash (OSError 28) must not crash the caller: counted, and the
        # queue goes on in RAM (what flash missed is lost only at a reboot).
        try:
            self.storage.write(name, text)
        except OSError:
            self.write_errors += 1

    def _count_dropped(self, n):
        self.dropped += n
        self._write(self.name + ".dropped", str(self.dropped))

    def _save(self):
        self._write(self.name, "\n".join(self._lines) + "\n" if self._lines else "")

    def append(self, item):
        """Add item at the end; when full, the oldest is dropped first (False returned)."""
        line = json.dumps(item)
        if "\n" in line:  # json.dumps escapes newlines in strings; be sure anyway
            raise ValueError("item encodes to more than one line")
        ok = True
        if len(self._lines) >= self.max_items:
            self._lines.pop(0)
            self._count_dropped(1)
            ok = False
        self._lines.append(line)
        self._save()
        return ok

    def peek(self):
        """The oldest item, or None when empty (it stays queued)."""
        if not self._lines:
            return None
        return json.loads(self._lines[0])

    def pop(self):
        """Remove and return the oldest item, or None when empty."""
        if not self._lines:
            return None
        line = self._lines.pop(0)
        self._save()
        return json.loads(line)

    def clear(self):
        """Remove every item (the dropped count stays)."""
        if self._lines:
            self._lines = []
            self._save()
