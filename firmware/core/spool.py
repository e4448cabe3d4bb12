# The water board's unsent readings on flash: a bounded FIFO in chunk files
# whose RAM is two chunks, however many readings wait (see Spool below).
# FlashQueue (firmware/core/flashqueue.py) is the simpler one-file queue; a
# Spool is its own module so a board that needs only one of them loads only
# that one's code.
import json


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
