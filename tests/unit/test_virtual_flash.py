"""The virtual board's flash: a file tree with a capacity, and the firmware's storage on it."""

from __future__ import annotations

import errno

import pytest

from simulator.board import VirtualBoard, VirtualStorage
from simulator.flash import VirtualFlash


def test_directories_files_and_errors_as_micropython_reports_them() -> None:
    flash = VirtualFlash()
    flash.makedirs("/lib/firmware/core")
    flash.write_bytes("/lib/firmware/core/mqtt.py", b"x = 1\n")
    with flash.open("notes.txt", "w", cwd="/lib") as f:
        f.write("hai\n")
    with flash.open("/lib/notes.txt", "a") as f:
        f.write("lagi\n")
    assert flash.listdir("/lib") == ["firmware", "notes.txt"]
    assert list(flash.ilistdir("/lib")) == [("firmware", 0x4000, 0, 0), ("notes.txt", 0x8000, 0, 9)]
    assert flash.open("/lib/notes.txt").read() == "hai\nlagi\n"
    assert flash.stat("/lib/firmware")[0] == 0x4000 and flash.stat("/lib/notes.txt")[6] == 9
    with pytest.raises(OSError) as e:
        flash.open("/nope/x.txt", "w")
    assert e.value.errno == errno.ENOENT and str(e.value) == "[Errno 2] ENOENT"
    with pytest.raises(OSError) as e:
        flash.rmdir("/lib/firmware")
    assert e.value.errno == errno.ENOTEMPTY
    flash.rename("/lib/firmware", "/lib/fw")
    assert flash.read_bytes("/lib/fw/core/mqtt.py") == b"x = 1\n" and not flash.exists("/lib/firmware")


def test_a_full_flash_refuses_writes_with_enospc_until_space_is_freed() -> None:
    flash = VirtualFlash(capacity=10_000)
    flash.write_bytes("/a.bin", bytes(4000))
    flash.fill(free_bytes=100)
    assert flash.free() == 100
    flash.write_bytes("/small.bin", bytes(100))
    with pytest.raises(OSError) as e:
        flash.write_bytes("/b.bin", b"1")
    assert e.value.errno == errno.ENOSPC and "ENOSPC" in str(e.value)
    f = flash.open("/c.txt", "w")
    with pytest.raises(OSError, match="ENOSPC"):
        f.write("more")
    flash.remove("/fill.bin")
    flash.write_bytes("/b.bin", bytes(5000))
    assert flash.statvfs()[0] == 4096


def test_firmware_storage_keeps_its_api_on_the_tree_under_data() -> None:
    board = VirtualBoard({"device_id": "loket-01", "role": "counter"})
    storage = board.storage
    assert isinstance(storage, VirtualStorage) and storage.read("boot") is None
    storage.write("boot", "7")
    assert storage.read("boot") == "7" and storage.flash.read_bytes("/data/boot") == b"7"
    assert dict(storage.files) == {"boot": "7"}
    del storage.files["boot"]
    assert storage.read("boot") is None and "boot" not in storage.files
    storage.fill()
    with pytest.raises(OSError) as e:
        storage.write("reset_reason", "watchdog")
    assert e.value.errno == errno.ENOSPC


def test_a_flash_image_saved_to_the_host_loads_back_the_same_tree(tmp_path) -> None:
    flash = VirtualFlash()
    flash.makedirs("/lib/empty")
    flash.makedirs("/data")
    flash.write_bytes("/data/boot", b"3")
    flash.write_bytes("/main.py", bytes(range(256)))
    flash.save(tmp_path / "board.tar")
    again = VirtualFlash.load(tmp_path / "board.tar")
    assert again.files == flash.files and again.dirs == flash.dirs
