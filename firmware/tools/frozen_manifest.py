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
# Paths are relative to this file. The lists must name exactly the modules
# `sigap deploy` copies (tests/unit/test_deploy.py checks it).
# ruff: noqa: F821  (include() and package() are defined by MicroPython's manifest loader)

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (asyncio, ...)

package(
    "firmware",
    files=[
        "__init__.py",
        "board/__init__.py",
        "board/esp32.py",
        "core/__init__.py",
        "core/clock.py",
        "core/compat.py",
        "core/flashqueue.py",
        "core/health.py",
        "core/mqtt.py",
        "core/runtime.py",
        "core/settings.py",
        "core/spool.py",
        "core/startup.py",
        "core/status_led.py",
        "core/timekeeping.py",
        "drivers/__init__.py",
        "drivers/buttons/__init__.py",
        "drivers/buttons/button.py",
        "drivers/displays/__init__.py",
        "drivers/displays/font.py",
        "drivers/displays/max7219.py",
        "drivers/displays/ssd1306.py",
        "drivers/displays/text.py",
        "drivers/displays/tm1637.py",
        "drivers/outputs/__init__.py",
        "drivers/outputs/dfplayer.py",
        "drivers/outputs/siren.py",
        "drivers/printer/__init__.py",
        "drivers/printer/escpos.py",
        "drivers/sensors/__init__.py",
        "drivers/sensors/battery.py",
        "drivers/sensors/ds18b20.py",
        "drivers/sensors/ultrasonic.py",
        "roles/__init__.py",
        "roles/counter.py",
        "roles/display.py",
        "roles/kiosk.py",
        "roles/water.py",
    ],
    base_path="../..",
)

package(
    "protocol",
    files=[
        "__init__.py",
        "wire.py",
    ],
    base_path="../..",
)
