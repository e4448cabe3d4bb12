"""Firmware heap per role on real MicroPython (WebAssembly): import+boot, steady loop, peak, code, leak check."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOAL_KB = 40


def main() -> None:
    node = shutil.which("node")
    if node is None:
        print(
            "  node not found: skipped (needs node and npm's @micropython/micropython-webassembly-pyscript)"
        )
        return
    # heap.mjs runs each role in a fresh interpreter; see tests/mpy/heap_roles.py for what is measured.
    proc = subprocess.run(
        [node, "tests/mpy/heap.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    for line in (proc.stdout + proc.stderr).splitlines():
        print(line)
    if proc.returncode:
        print(f"  heap.mjs failed (exit status {proc.returncode})")
    print(f"  goal: under {GOAL_KB} KB per role (an ESP32 without PSRAM has ~110 KB of MicroPython heap).")
    print("  'peak' is the heap with the .mpy files loaded into RAM (how `sigap deploy` installs them);")
    print("  '1 iter' is what one pass of the steady loop allocates; 'code' is what importing the role's")
    print("  modules keeps, so 'peak - code' is the role's running state alone. '.mpy' is the size of")
    print("  those files: bytecode, names and constants, which a frozen image (firmware/tools/")
    print("  frozen_manifest.py) or a ROMFS partition reads in place from flash; 'peak - .mpy' estimates")
    print("  the heap then (the functions, dicts and module state stay in RAM). Not measured: this")
    print("  WebAssembly port can neither freeze modules nor mount a ROMFS.")

if __name__ == "__main__":
    main()
