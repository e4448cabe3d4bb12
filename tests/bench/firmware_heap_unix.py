"""Firmware heap per role on 32-bit MicroPython, three ways of installing the code.

The programs are MicroPython's unix port built 32-bit (an ESP32's word size:
every object, pointer and 16-byte GC block as on the board) by
tests/tools/micropython-unix.sh. Each role runs tests/mpy/heap_roles.py (the
same fake board, broker and steady loop as the WebAssembly bench) in a fresh
process with a 110 KB heap, its modules installed as a board gets them:

  mpy     .mpy files loaded into the heap: `sigap deploy`
          (the stock program; the files are deploy's own build, compiled
          by the mpy-cross of the same MicroPython source, as the frozen
          modules are)
  romfs   one ROMFS image read in place: `sigap deploy --romfs` (the stock
          program; deploy's own image, mounted at /rom. On the unix port the
          image is a bytes object in the heap, loaded before the measurement
          starts and given room of its own, so it is not counted: on a board
          it is flash)
  frozen  frozen into the MicroPython image: firmware/tools/frozen_manifest.py
          (the program built with firmware/tools/sigap_manifest.py)

For each: the heap_roles figures (boot, peak, iter, growth), `code` (what
importing exactly the role's modules keeps, in another fresh process), and
`esp32` (what importing firmware/board/esp32.py adds after them: the real
board's module, which the fake board replaces; `network` is a stand-in
module on the unix port, counted apart). `board` = peak + esp32 is the
figure to hold against the goal.
"""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import tempfile
from collections.abc import Sequence
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tests" / "tools" / "micropython-unix.sh"
HARNESS = ROOT / "tests" / "mpy" / "heap_roles.py"
ROLES = ("kiosk", "counter", "display", "water")
HEAP = 110 * 1024
RESULT = "@@heap "
TIMEOUT_S = 300
MODES = {
    "mpy": ("stock", ".mpy files in RAM (sigap deploy)"),
    "romfs": ("stock", "ROMFS image, read in place (sigap deploy --romfs)"),
    "frozen": ("sigap", "frozen into the image (firmware/tools/frozen_manifest.py)"),
}


class Unavailable(Exception):
    """The 32-bit MicroPython programs could not be built here (the reason)."""


class Programs(NamedTuple):
    stock: pathlib.Path  # asyncio frozen, as in every port's image
    sigap: pathlib.Path  # asyncio and Sigap's modules frozen
    mpy_cross: pathlib.Path  # the mpy-cross of the same source, which froze Sigap's modules
    about: str  # which MicroPython, from where


def build_programs() -> Programs:
    """Build (or bring up to date: the script skips what is built) the two programs."""
    try:
        res = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1200, check=False
        )
    except subprocess.TimeoutExpired:
        raise Unavailable("building MicroPython took more than 20 minutes") from None
    if res.returncode != 0:
        lines = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()
        raise Unavailable(lines[-1])
    stock, sigap, mpy_cross = (pathlib.Path(p) for p in res.stdout.split()[-3:])
    return Programs(stock, sigap, mpy_cross, res.stderr.strip().splitlines()[-1].removeprefix("micropython-unix: "))


def _program(mode: str, work: pathlib.Path, call: str) -> str:
    """The MicroPython program of one run: sys.path for the mode, then `call`."""
    lines = ["import sys"]
    path = [str(work / "harness"), ".frozen"]  # asyncio is frozen (and Sigap's modules, "frozen")
    if mode == "mpy":
        path.insert(0, str(work / "lib"))
    lines.append(f"sys.path[:] = {path!r}")
    if mode == "romfs":
        # The image is read before heap_roles takes its base: not counted.
        lines += [
            "import vfs",
            f"with open({str(work / 'sigap.romfs')!r}, 'rb') as f:",
            "    _image = f.read()",
            "vfs.mount(vfs.VfsRom(_image), '/rom')",
            "sys.path.insert(0, '/rom')",
        ]
    lines += ["import asyncio", "import heap_roles", f"print({RESULT!r} + asyncio.run({call}))"]
    return "\n".join(lines) + "\n"


def _run(program: pathlib.Path, mode: str, work: pathlib.Path, image: bytes | None, call: str) -> dict:
    heap = HEAP
    if image is not None:
        # Room for the image itself: 16-byte blocks, plus 3 bits of GC tables per block
        # (2 of allocation table, 1 of finaliser table), plus one block of slack.
        blocks = math.ceil(len(image) / 16) + 1
        heap += blocks * 16 + math.ceil(blocks * 3 / 8)
    code = _program(mode, work, call)
    try:
        res = subprocess.run(
            [str(program), "-X", f"heapsize={heap}", "-c", code],
            cwd=work / "cwd",
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {TIMEOUT_S} s"}
    for line in res.stdout.splitlines():
        if line.startswith(RESULT):
            out: dict = json.loads(line[len(RESULT) :])
            return out
    tail = (res.stderr.strip() or res.stdout.strip() or f"exit status {res.returncode}").splitlines()
    return {"failed": " | ".join(tail[-3:])}


def _prepare(work: pathlib.Path, mpy_cross: pathlib.Path) -> bytes:
    """deploy's own build under work/lib and its ROMFS image work/sigap.romfs (returned),
    compiled by the programs' own mpy-cross (as the frozen modules are); the harness
    (compiled, as the firmware is) and a stand-in `network` module."""
    from controller.errors import UserError
    from firmware.tools.deploy import build, build_romfs, find_tool

    mpremote = find_tool("mpremote")
    if mpremote is None:
        raise Unavailable("mpremote not found: make setup")
    try:
        build(work / "build", mpy_cross=str(mpy_cross))
        (work / "build" / "lib").rename(work / "lib")
        image = build_romfs(mpremote, work / "lib", work / "sigap.romfs")
        harness = work / "harness"
        harness.mkdir()
        res = subprocess.run(
            [str(mpy_cross), "-o", str(harness / "heap_roles.mpy"), str(HARNESS)],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode:
            raise Unavailable(f"mpy-cross rejects {HARNESS.name}: {res.stderr.strip()}")
    except UserError as e:
        raise Unavailable(str(e)) from None
    # esp32.py imports `network` at the top; the unix port has none.
    (harness / "network.py").write_text("# stand-in for the ESP32's network module\n")
    (work / "cwd").mkdir()
    return image


class Measured(NamedTuple):
    about: str  # which MicroPython, from where
    lines: list[str]  # the tables, as printed
    board: dict[tuple[str, str], int]  # (mode, role) -> board peak in bytes, for the runs that did not fail


def measure(roles: Sequence[str] = ROLES, modes: Sequence[str] = tuple(MODES)) -> Measured:
    """Run every role in every mode."""
    programs = build_programs()
    lines: list[str] = []
    board: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory(prefix="sigap-heap-unix-") as tmp:
        work = pathlib.Path(tmp)
        image = _prepare(work, programs.mpy_cross)
        for mode in modes:
            kind, what = MODES[mode]
            program = getattr(programs, kind)
            img = image if mode == "romfs" else None
            lines.append(f"  modules {what}:")
            lines.append(
                "  role      import+boot    peak  (1 iter)  growth over N     code   esp32.py   board peak   (KB)"
            )
            for role in roles:
                flash = str(work / "cwd") + "/"
                r = _run(program, mode, work, img, f"heap_roles.main({role!r}, {flash!r})")
                if "failed" in r:
                    lines.append(f"  {role:<8} FAILED: {r['failed']}")
                    continue
                names = r["modules"]
                c = _run(program, mode, work, img, f"heap_roles.code({names + ['network', 'firmware.board.esp32']!r})")
                if "failed" in c:
                    lines.append(f"  {role:<8} FAILED measuring its code: {c['failed']}")
                    continue
                each = dict(c["each"])
                esp32 = each["firmware.board.esp32"]
                code = c["code"] - each["network"] - esp32
                board[(mode, role)] = r["peak"] + esp32
                lines.append(
                    f"  {role:<8} {kb(r['boot']):>12} {kb(r['peak']):>7} {kb(r['iter']):>9}"
                    f" {kb(r['growth']):>7} over {r['n']:>3} {kb(code):>8} {kb(esp32):>10}"
                    f" {kb(r['peak'] + esp32):>12}   ({len(names)} modules; {r['published']} publishes acked)"
                )
    return Measured(programs.about, lines, board)


def kb(n: float) -> str:
    return f"{n / 1024:.1f}"
