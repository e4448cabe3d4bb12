"""The files here run on MicroPython through `node tests/mpy/run.mjs`, not under pytest."""

collect_ignore_glob = ["*.py"]
