# Frozen into the bench's 32-bit unix build "micropython-sigap" (see
# micropython-unix.sh): asyncio, as in a stock ESP32 image, and Sigap's board
# modules, the list firmware/tools/frozen_manifest.py freezes into an ESP32
# image.
# ruff: noqa: F821  (include() is defined by MicroPython's manifest loader)

include("$(MPY_DIR)/extmod/asyncio")
include("../../firmware/tools/sigap_manifest.py")
