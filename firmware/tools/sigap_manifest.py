# MicroPython manifest: Sigap's board modules, for any port's image.
#
# Included by frozen_manifest.py (the ESP32 image) and by the firmware heap
# bench's 32-bit unix build (tests/tools/unix_manifest_sigap.py). Paths are
# relative to this file. Also freezes the module sigap_build: the image's
# build id (see the end). The lists must name exactly the modules
# `sigap deploy` copies (tests/unit/test_frozen_manifest.py checks it).
# ruff: noqa: F821  (package() and module() are defined by MicroPython's manifest loader)

import os
import sys

FIRMWARE = [
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
]
PROTOCOL = [
    "__init__.py",
    "wire.py",
]

package("firmware", files=FIRMWARE, base_path="../..")
package("protocol", files=PROTOCOL, base_path="../..")

# The image's build id (firmware/tools/build_id.py): the digest of exactly these
# sources, frozen as the module sigap_build, which `sigap deploy` compares with
# its checkout's. The loader runs this file with its folder as the working
# directory; the module is written under the repository's build/ (gitignored).
_root = os.path.abspath(os.path.join("..", ".."))
if _root not in sys.path:
    sys.path.insert(0, _root)
from firmware.tools import build_id  # noqa: E402

_sources = ["firmware/" + f for f in FIRMWARE] + ["protocol/" + f for f in PROTOCOL]
build_id.write_module(os.path.join(_root, "build", "frozen"), build_id.of_sources(_root, _sources))
module(build_id.MODULE + ".py", base_path="../../build/frozen")
