# A small bounded queue on flash: what must survive a reboot (a water board's
# unsent readings) while the network is away.
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


class Spool:
    """Bounded FIFO on flash in chunk files, RAM bounded by two chunks; keeps the oldest.

    For a water board's unsent readings: hours of them may wait on flash while
    only the head chunk (next to send) and the tail chunk (being filled) are in
    RAM, `chunk` lines each. Files in board.storage:
      <name>.m    "h o t d": head chunk number, items already taken from it,
                  tail chunk number, items dropped (both numbers only grow)
      <name>.<k % slots>  chunk k: first line "#k", then one JSON item a line
    A chunk file whose first line does not name the chunk that meta expects
    (a slot left over from an earlier lap, a write lost in a power cut) counts
    as empty. An append writes the tail chunk, then meta; a crash between the
    two is repaired at load (a tail chunk k+1 that names itself is adopted).

    Full (max_items): the NEW item is refused and counted in `dropped`: the
    oldest readings are the ones kept, so the history the controller gets
    back has no hole in its middle (the board's live level comes back as soon
    as it is online).

    A write that fails (OSError, e.g. 28 ENOSPC on a full flash) is counted in
    `write_errors`; the queue goes on in RAM as far as its chunks hold, so the
    board keeps running and sending. RAM stays the source of truth while
    powered; flash is what survives.
    """

    def __init__(self, storage, name, max_items, chunk=16):
        if max_items < 1 or chunk < 1:
            raise ValueError("max_items and chunk must be at least 1")
        self.storage = storage
        self.name = name
        self.chunk = chunk
        self.slots = (max_items + chunk - 1) // chunk + 1
        self.max_items = max_items
        self.write_errors = 0
        self.h = self.o = self.t = self.dropped = 0
        raw = storage.read(name + ".m")
        if raw:
            try:
                f = raw.split()
                self.h, self.o, self.t, self.dropped = int(f[0]), int(f[1]), int(f[2]), int(f[3])
            except (ValueError, IndexError):
                self.h = self.o = self.t = self.dropped = 0
        if self.t < self.h or self.t - self.h >= self.slots:
            self.h = self.o = self.t = 0  # nonsense meta: start afresh
        self.head = self._load(self.h)
        if self.o > len(self.head):
            self.o = len(self.head)
        if self.t == self.h:
            self.tail = self.head
        else:
            self.tail = self._load(self.t)
        # A chunk written just before a power cut, before its meta.
        if len(self.tail) >= chunk and self.t + 1 - self.h < self.slots:
            nxt = self._load(self.t + 1)
            if nxt:
                self.t += 1
                self.tail = nxt
                self._save_meta()

    def _file(self, k):
        return self.name + "." + str(k % self.slots)

    def _load(self, k):
        text = self.storage.read(self._file(k))
        lines = []  # type: list
        if not text:
            return lines
        parts = text.split("\n")
        if parts[0] != "#" + str(k):
            return lines  # an old lap's chunk, or never written
        for line in parts[1:]:
            if not line:
                continue
            try:
                json.loads(line)
            except ValueError:
                continue  # a torn line: skipped
            lines.append(line)
        return lines

    def _write(self, name, text):
        try:
            self.storage.write(name, text)
            return True
        except OSError:
            self.write_errors += 1
            return False

    def _save_meta(self):
        meta = str(self.h) + " " + str(self.o) + " " + str(self.t) + " " + str(self.dropped)
        return self._write(self.name + ".m", meta)

    def _save_chunk(self, k, lines):
        return self._write(self._file(k), "#" + str(k) + "\n" + "\n".join(lines))

    def __len__(self):
        if self.t == self.h:
            return len(self.tail) - self.o
        return len(self.head) - self.o + (self.t - self.h - 1) * self.chunk + len(self.tail)

    def append(self, item):
        """Queue item at the end; True, or False when full (item dropped and counted)."""
        line = json.dumps(item)
        if "\n" in line:
            raise ValueError("item encodes to more than one line")
        if len(self) >= self.max_items:
            self.dropped += 1
            self._save_meta()
            return False
        if len(self.tail) >= self.chunk:
            self.t += 1
            self.tail = []
        self.tail.append(line)
        self._save_chunk(self.t, self.tail)
        self._save_meta()
        return True

    def _fix_head(self):
        # Move past an exhausted head chunk; a middle chunk that flash lost
        # (a failed write) is skipped the same way.
        while self.o >= len(self.head) and self.h < self.t:
            self.h += 1
            self.o = 0
            self.head = self.tail if self.h == self.t else self._load(self.h)

    def peek(self):
        """The oldest item, or None when empty (it stays queued)."""
        self._fix_head()
        if self.o >= len(self.head):
            return None
        return json.loads(self.head[self.o])

    def pop(self):
        """Remove the oldest item (after it was delivered); returns it, or None when empty."""
        self._fix_head()
        if self.o >= len(self.head):
            return None
        item = json.loads(self.head[self.o])
        self.o += 1
        self._fix_head()
        if self.o >= len(self.head):
            # Empty: the next item starts a fresh chunk, so no file is rewritten
            # for nothing; its slot's old lap is ignored by its header.
            self.h = self.t = self.t + 1
            self.o = 0
            self.head = self.tail = []
        self._save_meta()
        return item
