# Board entry point: `sigap deploy` copies this file to the board as /main.py.
#
# Esp32Board reads settings.json as it is; the runtime validates it, falls
# back to the last good copy or boots unconfigured (firmware/core/settings.py),
# and supervises WiFi, MQTT, the clock and the watchdog (firmware/core/runtime.py).
import asyncio

from firmware.board.esp32 import Esp32Board
from firmware.core.runtime import run_board

asyncio.run(run_board(Esp32Board()))
