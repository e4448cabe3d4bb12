"""Firmware heap per role on real MicroPython (WebAssembly; 32-bit unix with .mpy, ROMFS or frozen modules): boot, loop peak, code, leaks."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

from tests.bench import firmware_heap_unix

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOAL_KB = 40


def main() -> None:
    wasm()
    print()
    measured = board()
    print(f"  goal: under {GOAL_KB} KB per role (an ESP32 without PSRAM has ~110 KB of MicroPython heap).")
    for line in verdict(measured.board if measured else {}):
        print(line)


def verdict(peaks: dict[tuple[str, str], int], goal_kb: int = GOAL_KB) -> list[str]:
    """Per install mode, which roles' board peak is under the goal: {(mode, role): bytes}."""
    lines = []
    for mode in firmware_heap_unix.MODES:
        got = [(role, peaks[(mode, role)]) for role in firmware_heap_unix.ROLES if (mode, role) in peaks]
        if not got:
            continue
        under = [role for role, n in got if n < goal_kb * 1024]
        over = [(role, n) for role, n in got if n >= goal_kb * 1024]
        if not over:
            role, n = max(got, key=lambda rn: rn[1])
            what = f"met by all {len(got)} roles (largest: {role} {firmware_heap_unix.kb(n)} KB)"
        else:
            what = "met by " + (", ".join(under) or "no role") + "; over: "
            what += ", ".join(f"{role} {firmware_heap_unix.kb(n)} KB" for role, n in over)
        lines.append(f"  {mode:<7} {what}")
    missing = len(firmware_heap_unix.MODES) * len(firmware_heap_unix.ROLES) - len(peaks)
    if missing:
        lines.append(f"  ({missing} of the runs failed or were skipped: no verdict for them)")
    return lines


def wasm() -> None:
    """The WebAssembly port (tests/mpy/heap.mjs), .mpy files only."""
    node = shutil.which("node")
    if node is None:
        print("  WebAssembly: skipped (needs node and npm's @micropython/micropython-webassembly-pyscript)")
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
    print("  'peak' is the heap with the .mpy files loaded into RAM (how `sigap deploy` installs them);")
    print("  '1 iter' is what one pass of the steady loop allocates; 'code' is what importing the role's")
    print("  modules keeps, so 'peak - code' is the role's running state alone. '.mpy' is the size of")
    print("  those files; 'peak - .mpy' was the estimate for a board that reads them in place (this port")
    print("  can neither freeze modules nor mount a ROMFS): measured below instead.")


def board() -> firmware_heap_unix.Measured | None:
    """The same harness on 32-bit MicroPython built from source, in the three ways a
    board gets its modules (tests/bench/firmware_heap_unix.py says how)."""
    try:
        measured = firmware_heap_unix.measure()
    except firmware_heap_unix.Unavailable as e:
        print(f"  32-bit MicroPython: skipped ({e})")
        return None
    print(f"  {measured.about}; heap 110 KB per role, each role in a fresh process")
    for line in measured.lines:
        print(line)
    print("  'esp32.py' is what importing firmware/board/esp32.py (the real board's module, which the")
    print("  harness's fake board stands in for) adds; 'board peak' = peak + esp32.py, the figure for")
    print("  the goal. Frozen is the install for boards in service (firmware/tools/frozen_manifest.py).")
    return measured


if __name__ == "__main__":
    main()
