# Board entry point: `sigap deploy` copies this file to the board as /main.py.
import asyncio

from firmware.board.esp32 import Esp32Board
from firmware.core.runtime import run_board

asyncio.run(run_board(Esp32Board()))
