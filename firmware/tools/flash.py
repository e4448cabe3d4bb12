"""Flash the MicroPython image itself onto an ESP32 with esptool (a new or wiped board).

The image is a file the engineer supplies (downloaded from micropython.org by
hand, checked, kept with the site's records); this tool never downloads one.
After flashing, `sigap deploy` copies the firmware and settings.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from firmware.tools.deploy import find_tool

FLASH_OFFSETS: dict[str, int] = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
}
"""Where MicroPython's combined image (bootloader, partitions, app) starts, per chip,
as micropython.org's download page gives it for each board."""

ESP_IMAGE_MAGIC = 0xE9
"""First byte of an ESP bootloader/app image (esptool's ESPLoader.ESP_IMAGE_MAGIC)."""


def flash_commands(
    port: str, image: Path, chip: str = "esp32", baud: int = 460800, erase: bool = True
) -> list[list[str]]:
    """The esptool command lines: erase the whole flash, then write the image."""
    esptool = find_tool("esptool") or "esptool"
    base = [esptool, "--chip", chip, "--port", port, "--baud", str(baud)]
    cmds = [base + ["erase-flash"]] if erase else []
    cmds.append(base + ["write-flash", "-z", hex(FLASH_OFFSETS[chip]), str(image)])
    return cmds


def flash_main(
    port: str,
    image: str | Path,
    chip: str = "esp32",
    baud: int = 460800,
    *,
    erase: bool = True,
    dry_run: bool = False,
) -> int:
    """Check the image, then erase and write it with esptool; 0 on success.

    Erasing wipes the board's filesystem too: settings.json and the boot
    counter go, so run `sigap deploy` afterwards.
    """
    from controller.cli import UserError

    if chip not in FLASH_OFFSETS:
        raise UserError(f"unknown chip {chip!r}; known: {', '.join(FLASH_OFFSETS)}")
    path = Path(image)
    if not path.is_file():
        raise UserError(f"no firmware image at {path}")
    head = path.read_bytes()[:1]
    if not head:
        raise UserError(f"{path} is empty")
    if head[0] != ESP_IMAGE_MAGIC:
        raise UserError(
            f"{path} is not an ESP firmware image (first byte 0x{head[0]:02x}, expected 0xe9); "
            "use the .bin file for your board from micropython.org"
        )
    cmds = flash_commands(port, path, chip, baud, erase)
    for cmd in cmds:
        print("$ " + " ".join(cmd))
        if dry_run:
            continue
        if find_tool("esptool") is None:
            raise UserError("esptool not found: install the dev tools (make setup)")
        try:
            res = subprocess.run(cmd, check=False)
        except OSError as e:
            raise UserError(f"cannot run esptool: {e}") from None
        if res.returncode != 0:
            raise UserError(
                f"esptool {cmd[7]} failed (exit {res.returncode}); check the port, hold BOOT "
                "while it connects if the board does not enter its bootloader"
            )
    print("dry run: nothing flashed" if dry_run else f"flashed {path.name}; now run sigap deploy")
    return 0
