"""A virtual board's flash file system: directories, bytes, a capacity that can fill up.

What MicroPython's littlefs VFS gives a board, kept in memory: absolute POSIX
paths, files of bytes, directories, and a capacity (default 1.4 MB, about what
an ESP32 with 4 MB of flash leaves for files). A write that does not fit raises
OSError(ENOSPC), as on a full board. Errors carry MicroPython's wording
(`OSError: [Errno 2] ENOENT`), which is what mpremote looks for.

The firmware's `board.storage` (simulator/board.py VirtualStorage) keeps its
files under `/data`, as firmware/board/esp32.py's FlashStorage does on a real
board; the raw REPL (simulator/repl.py) sees the same tree.
"""

from __future__ import annotations

import errno
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

S_IFDIR = 0x4000
S_IFREG = 0x8000
DEFAULT_CAPACITY = 1_441_792  # 352 blocks of 4 KiB
BLOCK_SIZE = 4096
FILL_FILE = "/fill.bin"


def flash_error(code: int) -> OSError:
    """OSError as MicroPython raises it: `[Errno 2] ENOENT`."""
    return OSError(code, errno.errorcode.get(code, str(code)))


def normpath(path: str, cwd: str = "/") -> str:
    """An absolute path without `.`, `..` or doubled slashes."""
    if not path.startswith("/"):
        path = cwd.rstrip("/") + "/" + path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


class VirtualFlash:
    """A file tree in memory: path -> bytes for files, a set of directory paths."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY):
        self.capacity = capacity
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {"/"}
        self.writes = 0  # files written (closed after a write), for tests

    # -- space ------------------------------------------------------------------
    def used(self) -> int:
        """Bytes held by files."""
        return sum(len(v) for v in self.files.values())

    def free(self) -> int:
        return max(0, self.capacity - self.used())

    def fill(self, free_bytes: int = 0) -> None:
        """Fill the flash (a file `/fill.bin`) until only `free_bytes` are left; remove it to undo."""
        self.files.pop(FILL_FILE, None)
        self.files[FILL_FILE] = bytes(max(0, self.free() - free_bytes))

    def _reserve(self, path: str, new_size: int) -> None:
        old = len(self.files.get(path, b""))
        if self.used() - old + new_size > self.capacity:
            raise flash_error(errno.ENOSPC)

    # -- queries ----------------------------------------------------------------
    def exists(self, path: str) -> bool:
        p = normpath(path)
        return p in self.files or p in self.dirs

    def isdir(self, path: str) -> bool:
        return normpath(path) in self.dirs

    def _parent_dir(self, p: str) -> None:
        parent = p.rsplit("/", 1)[0] or "/"
        if parent not in self.dirs:
            raise flash_error(errno.ENOENT)

    def listdir(self, path: str = "/") -> list[str]:
        p = normpath(path)
        if p not in self.dirs:
            raise flash_error(errno.ENOTDIR if p in self.files else errno.ENOENT)
        prefix = p.rstrip("/") + "/"
        names = {
            q[len(prefix):] for q in list(self.files) + list(self.dirs)
            if q != p and q.startswith(prefix) and "/" not in q[len(prefix):]
        }
        return sorted(names)

    def ilistdir(self, path: str = "/") -> Iterator[tuple[str, int, int, int]]:
        """(name, type, inode, size) as MicroPython's os.ilistdir yields them."""
        p = normpath(path)
        for name in self.listdir(p):
            full = p.rstrip("/") + "/" + name
            if full in self.dirs:
                yield (name, S_IFDIR, 0, 0)
            else:
                yield (name, S_IFREG, 0, len(self.files[full]))

    def stat(self, path: str) -> tuple[int, ...]:
        """MicroPython's 10-tuple: mode, ino, dev, nlink, uid, gid, size, atime, mtime, ctime."""
        p = normpath(path)
        if p in self.dirs:
            return (S_IFDIR, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        if p in self.files:
            return (S_IFREG, 0, 0, 0, 0, 0, len(self.files[p]), 0, 0, 0)
        raise flash_error(errno.ENOENT)

    def statvfs(self) -> tuple[int, ...]:
        """(bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax)."""
        blocks = self.capacity // BLOCK_SIZE
        free = self.free() // BLOCK_SIZE
        return (BLOCK_SIZE, BLOCK_SIZE, blocks, free, free, 0, 0, 0, 0, 255)

    # -- changes ----------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes:
        p = normpath(path)
        if p in self.dirs:
            raise flash_error(errno.EISDIR)
        if p not in self.files:
            raise flash_error(errno.ENOENT)
        return self.files[p]

    def write_bytes(self, path: str, data: bytes) -> None:
        p = normpath(path)
        if p in self.dirs:
            raise flash_error(errno.EISDIR)
        self._parent_dir(p)
        self._reserve(p, len(data))
        self.files[p] = bytes(data)
        self.writes += 1

    def remove(self, path: str) -> None:
        p = normpath(path)
        if p in self.dirs:
            raise flash_error(errno.EISDIR)
        if self.files.pop(p, None) is None:
            raise flash_error(errno.ENOENT)

    def mkdir(self, path: str) -> None:
        p = normpath(path)
        if p in self.dirs or p in self.files:
            raise flash_error(errno.EEXIST)
        self._parent_dir(p)
        self.dirs.add(p)

    def makedirs(self, path: str) -> None:
        """mkdir -p."""
        p = normpath(path)
        parts = p.strip("/").split("/") if p != "/" else []
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in self.dirs:
                self.mkdir(d)

    def rmdir(self, path: str) -> None:
        p = normpath(path)
        if p not in self.dirs:
            raise flash_error(errno.ENOTDIR if p in self.files else errno.ENOENT)
        if p == "/" or self.listdir(p):
            raise flash_error(errno.EACCES if p == "/" else errno.ENOTEMPTY)
        self.dirs.discard(p)

    def rename(self, old: str, new: str) -> None:
        o, n = normpath(old), normpath(new)
        if o in self.files:
            self._parent_dir(n)
            if n in self.dirs:
                raise flash_error(errno.EISDIR)
            self.files[n] = self.files.pop(o)
        elif o in self.dirs:
            if n in self.files or n in self.dirs:
                raise flash_error(errno.EEXIST)
            self._parent_dir(n)
            prefix = o.rstrip("/") + "/"
            for q in [q for q in self.files if q.startswith(prefix)]:
                self.files[n + q[len(o):]] = self.files.pop(q)
            for d in [d for d in self.dirs if d == o or d.startswith(prefix)]:
                self.dirs.discard(d)
                self.dirs.add(n + d[len(o):])
        else:
            raise flash_error(errno.ENOENT)

    def erase(self) -> None:
        """Every file and directory gone (esptool erase-flash)."""
        self.files.clear()
        self.dirs = {"/"}

    def save(self, image: str | os.PathLike[str]) -> None:
        """Write the whole tree to a tar file on the host (a flash image kept between runs)."""
        tmp = Path(str(image) + ".tmp")
        with tarfile.open(tmp, "w") as tar:
            for d in sorted(self.dirs - {"/"}):
                info = tarfile.TarInfo(d.lstrip("/"))
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            for path, data in sorted(self.files.items()):
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        tmp.replace(image)

    @classmethod
    def load(cls, image: str | os.PathLike[str], capacity: int = DEFAULT_CAPACITY) -> VirtualFlash:
        """A flash holding what `save` wrote."""
        flash = cls(capacity)
        with tarfile.open(image) as tar:
            for info in tar.getmembers():
                path = normpath("/" + info.name)
                if info.isdir():
                    flash.makedirs(path)
                elif info.isfile():
                    flash.makedirs(path.rsplit("/", 1)[0] or "/")
                    member = tar.extractfile(info)
                    flash.write_bytes(path, member.read() if member is not None else b"")
        return flash

    def open(self, path: str, mode: str = "r", cwd: str = "/") -> Any:
        """A file object (text or binary) as MicroPython's open() returns it."""
        p = normpath(path, cwd)
        binary = "b" in mode
        if "r" in mode and "+" not in mode:
            data = self.read_bytes(p)
            if binary:
                return io.BytesIO(data)
            return io.StringIO(data.decode("utf-8"))
        if p in self.dirs:
            raise flash_error(errno.EISDIR)
        self._parent_dir(p)
        initial = b""
        if "a" in mode or "+" in mode:
            if p not in self.files and "r" in mode:
                raise flash_error(errno.ENOENT)
            initial = self.files.get(p, b"")
        self.write_bytes(p, initial)  # created (or truncated) at open, as on littlefs
        return _FlashWriter(self, p, initial, binary, append="a" in mode)


class _FlashWriter(io.BytesIO):
    """A file open for writing: each write is stored (and may hit ENOSPC) at once."""

    def __init__(self, flash: VirtualFlash, path: str, initial: bytes, binary: bool, append: bool):
        super().__init__(initial)
        if append:
            self.seek(0, io.SEEK_END)
        self._flash = flash
        self._path = path
        self._binary = binary

    def write(self, data: Any) -> int:
        raw = bytes(data) if self._binary else str(data).encode("utf-8")
        if not self._binary and not isinstance(data, str):
            raise TypeError("can't write bytes to a text file")
        pos = self.tell()
        content = self.getvalue()
        new = content[:pos] + raw + content[pos + len(raw):]
        self._flash._reserve(self._path, len(new))
        super().write(raw)
        self._flash.files[self._path] = new
        return len(raw) if self._binary else len(data)

    def read(self, n: int | None = -1) -> Any:
        data = super().read(n)
        return data if self._binary else data.decode("utf-8")

    def close(self) -> None:
        if not self.closed:
            self._flash.writes += 1
        super().close()
