# Frozen into the bench's 32-bit unix build "micropython-stock" (see
# micropython-unix.sh): what a stock ESP32 image freezes that Sigap's boards
# use, asyncio. Sigap's own modules then come from .mpy files or ROMFS.
# ruff: noqa: F821  (include() is defined by MicroPython's manifest loader)

include("$(MPY_DIR)/extmod/asyncio")
