"""Run every benchmark module (bench_*.py) in this folder, or the ones named."""

from __future__ import annotations

import importlib
import pathlib
import sys


def main(argv: list[str]) -> int:
    here = pathlib.Path(__file__).parent
    names = argv or sorted(p.stem for p in here.glob("bench_*.py"))
    if not names:
        print("no benchmarks yet")
        return 0
    for name in names:
        mod = importlib.import_module(f"tests.bench.{name}")
        print(f"== {name}: {(mod.__doc__ or '').strip().splitlines()[0]}")
        mod.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
