# MicroPython manifest: Sigap's board modules frozen into the firmware image.
#
# Frozen modules run their bytecode from flash and keep their names and
# constants in ROM, so the heap holds the running state and only the modules'
# dicts, classes and function objects:
# `make bench` (firmware heap) measures each role's loop at 21-32 KB this way
# against 63-82 KB with .mpy files (firmware/README.md, RAM). Build an image
# with the ESP-IDF and a MicroPython checkout (not part of this repository):
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/sigap/firmware/tools/frozen_manifest.py
#
# then flash it with firmware/tools/flash.py (`flash_main`, see
# firmware/tools/README.md) and run `sigap deploy`:
# it sees the frozen modules and writes only /main.py and the board's settings
# (".frozen" comes before "/rom" and "/lib" in sys.path, so copies would never
# load), and it checks the build id the image carries against its checkout
# (build_id.py). New firmware code means a new image.
#
# Sigap's modules are listed in sigap_manifest.py beside this file (the bench's
# 32-bit unix build freezes the same list: tests/tools/micropython-unix.sh).
# ruff: noqa: F821  (include() and package() are defined by MicroPython's manifest loader)

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (asyncio, ...)
include("sigap_manifest.py")  # Sigap's board modules
