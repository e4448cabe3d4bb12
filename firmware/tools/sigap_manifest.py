# MicroPython manifest: Sigap's board modules, for any port's image.
#
# Included by frozen_manifest.py (the ESP32 image) and by the firmware heap
# bench's 32-bit unix build (tests/tools/unix_manifest_sigap.py). Paths are
# relative to this file. The lists must name exactly the modules
# `sigap deploy` copies (tests/unit/test_frozen_manifest.py checks it).
# ruff: noqa: F821  (package() is defined by MicroPython's manifest loader)

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
