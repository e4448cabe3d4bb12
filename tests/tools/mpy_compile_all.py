"""Compile every board-side file (firmware/ and protocol/) with mpy-cross.

Proves each file is valid MicroPython syntax before it reaches a board.
Build tooling (firmware/tools/) runs on the engineer's PC and is skipped.
"""

import argparse
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
SKIP_DIRS = {"tools", "tests", "__pycache__"}


def board_files() -> list[pathlib.Path]:
    files = []
    for top in ("firmware", "protocol"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT / top)
            if SKIP_DIRS.intersection(rel.parts[:-1]):
                continue
            files.append(path)
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mpy-cross", default="mpy-cross")
    args = ap.parse_args()
    failed = 0
    files = board_files()
    with tempfile.TemporaryDirectory() as out:
        for path in files:
            res = subprocess.run(
                [args.mpy_cross, "-o", str(pathlib.Path(out) / "x.mpy"), str(path)],
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                failed += 1
                msg = (res.stderr or res.stdout).strip().splitlines()
                print(f"mpy-cross: {path.relative_to(ROOT)}: {msg[-1] if msg else 'failed'}")
    print(f"mpy-cross: {len(files) - failed} compiled, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
