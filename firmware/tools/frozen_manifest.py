# MicroPython manifest: Sigap's board modules frozen into the firmware image.
#
# Frozen modules run their bytecode from flash and keep their names and
# constants in ROM, so the heap holds only the running state: `make bench`
# (firmware heap) prints per role the heap the loaded code takes ("code") and
# what is left when that code is frozen ("peak - code"). Build an image with
# the ESP-IDF and a MicroPython checkout (not part of this repository):
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/sigap/firmware/tools/frozen_manifest.py
#
# then flash it with `python -m firmware.tools.flash` and deploy the settings
# with `sigap deploy`. On such a board the frozen modules win over copies in
# /lib (".frozen" comes before "/lib" in sys.path), so new firmware code means
# a new image; `sigap deploy` still writes the board's settings.
#
# Sigap's modules are listed in sigap_manifest.py beside this file (the bench's
# 32-bit unix build freezes the same list: tests/tools/micropython-unix.sh).
# ruff: noqa: F821  (include() and package() are defined by MicroPython's manifest loader)

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (asyncio, ...)
include("sigap_manifest.py")  # Sigap's board modules
