"""A virtual board behind a serial port, driven by the real `mpremote` CLI.

The board (simulator/repl.py) speaks MicroPython's raw REPL and raw-paste
mode on a TCP port (`socket://`) or a pty; mpremote lists, copies and removes
files on its virtual flash, runs code on it and resets it, exactly as it
would a real ESP32 on a USB cable.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware.tools.deploy import VIRTUAL_IMPL, build, find_tool
from simulator.board import wait_until
from simulator.repl import SerialBoard
from simulator.serial_port import PtyPort, TcpPort
from simulator.vm import IMPLEMENTATION_NAME
from tests.harness.broker import free_port

MPREMOTE = find_tool("mpremote")


async def mpremote(port: str, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run the real mpremote CLI against `port`: (exit status, stdout, stderr)."""
    assert MPREMOTE is not None, "mpremote is part of the dev tools (make setup)"
    proc = await asyncio.create_subprocess_exec(
        MPREMOTE, "connect", port, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture(params=["socket", "pty"])
async def serial(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SerialBoard, str]]:
    """A blank virtual board and the port name mpremote opens (socket://... or /dev/pts/N)."""
    board = SerialBoard("loket-01")
    board.start()
    port: TcpPort | PtyPort
    if request.param == "socket":
        port = await TcpPort(board).start()
    else:
        port = PtyPort(board).start()
    try:
        yield board, port.name
    finally:
        await port.close()
        await board.stop()


@pytest.mark.timeout(60)
async def test_mpremote_copies_lists_and_removes_files_on_the_virtual_flash(serial, tmp_path: Path) -> None:
    board, port = serial
    payload = bytes(range(256)) * 20  # 5 KB of every byte value: many raw-paste windows
    local = tmp_path / "blob.bin"
    local.write_bytes(payload)

    rc, out, err = await mpremote(port, "fs", "mkdir", ":/lib", "+", "fs", "cp", str(local), ":/lib/blob.bin",
                                  "+", "fs", "ls", ":/lib")
    assert rc == 0, err
    assert "blob.bin" in out and str(len(payload)) in out
    assert board.flash.read_bytes("/lib/blob.bin") == payload  # on the board's flash ...
    assert not os.path.exists("/lib/blob.bin")  # ... never on the host's disk

    back = tmp_path / "back.bin"
    rc, out, err = await mpremote(port, "fs", "cp", ":/lib/blob.bin", str(back))
    assert rc == 0, err
    assert back.read_bytes() == payload

    rc, out, err = await mpremote(port, "fs", "rm", ":/lib/blob.bin", "+", "fs", "ls", ":/lib")
    assert rc == 0, err
    assert "blob.bin" not in out.split("ls :/lib", 1)[1]
    assert not board.flash.exists("/lib/blob.bin")

    rc, out, err = await mpremote(port, "fs", "rm", ":/lib/blob.bin")
    assert rc != 0 and "No such file" in out + err


@pytest.mark.timeout(60)
async def test_mpremote_exec_runs_on_the_board_and_shows_its_tracebacks(serial) -> None:
    board, port = serial
    rc, out, err = await mpremote(
        port, "exec", "import os, sys, machine; f = open('/note.txt', 'w'); f.write('hai'); f.close(); "
        "print(sys.implementation.name, os.listdir('/'), len(machine.unique_id()))"
    )
    assert rc == 0, err
    assert out.split() == [IMPLEMENTATION_NAME, "['note.txt']", "6"]
    assert IMPLEMENTATION_NAME == VIRTUAL_IMPL  # what `sigap deploy` looks for
    assert board.flash.read_bytes("/note.txt") == b"hai"

    rc, out, err = await mpremote(port, "exec", "x = 1\nprint(x / 0)")
    assert rc == 1
    assert 'File "<stdin>", line 2, in <module>' in out + err and "ZeroDivisionError" in out + err

    rc, out, err = await mpremote(port, "exec", "open('/missing.txt')")
    assert rc == 1 and "OSError: [Errno 2] ENOENT" in out + err  # MicroPython's wording


@pytest.mark.timeout(60)
async def test_reset_boots_main_py_from_the_flash(serial, tmp_path: Path) -> None:
    board, port = serial
    await board.wait_console(">>> ")  # a blank board stays at the REPL
    assert board.boots == 0
    main = tmp_path / "main.py"
    main.write_text("import machine\nprint('booted from flash', len(machine.unique_id()))\n")

    rc, out, err = await mpremote(port, "fs", "cp", str(main), ":main.py", "+", "reset")
    assert rc == 0, err
    await board.wait_console("booted from flash 6")
    assert board.boots == 1


@pytest.mark.timeout(60)
async def test_a_full_flash_refuses_a_copy(serial, tmp_path: Path) -> None:
    board, port = serial
    board.flash.fill(free_bytes=1000)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 4000)
    rc, out, err = await mpremote(port, "fs", "cp", str(big), ":big.bin")
    assert rc != 0 and "No space left" in out + err
    board.flash.remove("/fill.bin")
    rc, out, err = await mpremote(port, "fs", "cp", str(big), ":big.bin")
    assert rc == 0, err
    assert board.flash.read_bytes("/big.bin") == b"x" * 4000


class _Wire:
    """Bytes in, bytes out: the board's serial line without a port."""

    def __init__(self, board: SerialBoard):
        self.board = board
        self.buf = bytearray()
        self.got = asyncio.Event()
        board.attach(self._sink)

    def _sink(self, data: bytes) -> None:
        self.buf += data
        self.got.set()

    async def expect(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Everything up to and including `data` (consumed)."""

        async def _wait() -> bytes:
            while data not in self.buf:
                self.got.clear()
                await self.got.wait()
            end = self.buf.index(data) + len(data)
            out = bytes(self.buf[:end])
            del self.buf[:end]
            return out

        return await asyncio.wait_for(_wait(), timeout)

    async def enter_raw_repl(self) -> None:
        """From the friendly REPL's first prompt into the raw REPL (Ctrl-A)."""
        await self.expect(b">>> ")
        self.board.feed(b"\r\x01")
        await self.expect(b"raw REPL; CTRL-B to exit\r\n>")


@pytest.mark.timeout(30)
async def test_raw_repl_and_raw_paste_frame_output_as_pyexec_does() -> None:
    board = SerialBoard("b")
    wire = _Wire(board)
    board.start()
    try:
        await wire.enter_raw_repl()
        # Raw REPL: OK, output, EOF, error output, EOF, prompt.
        board.feed(b"print('a')\x04")
        assert await wire.expect(b"\x04>") == b"OKa\r\n\x04\x04>"
        board.feed(b"raise ValueError('bad')\x04")
        got = await wire.expect(b"\x04>")
        assert got.startswith(b"OK\x04Traceback") and got.endswith(b"ValueError: bad\r\n\x04>")
        # Raw paste: R\x01, a 128-byte window (twice free at first), \x01 per window used.
        board.feed(b"\x05A\x01")
        assert await wire.expect(b"R\x01\x80\x00\x01") == b"R\x01\x80\x00\x01"
        code = b"x = '" + b"y" * 300 + b"'\nprint(len(x))\n"
        board.feed(code[:256])
        await wire.expect(b"\x01")  # the first window was used up: the host may send another
        board.feed(code[256:] + b"\x04")
        got = await wire.expect(b"\x04>")
        assert got.endswith(b"\x04300\r\n\x04\x04>")
        # Ctrl-D on an empty line: soft reset, and back in the raw REPL.
        board.feed(b"\x04")
        assert await wire.expect(b"raw REPL; CTRL-B to exit\r\n>") == b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>"
    finally:
        await board.stop()


def _flash_build(board: SerialBoard, files: list, settings: dict) -> None:
    """Put a deploy build on the board's flash directly (what `sigap deploy` copies)."""
    for f in files:
        board.flash.makedirs(f.remote.rsplit("/", 1)[0] or "/")
        board.flash.write_bytes(f.remote, f.local.read_bytes())
    board.flash.write_bytes("/settings.json", json.dumps(settings).encode())


@pytest.mark.timeout(30)
async def test_a_board_boots_its_own_modules_from_flash_not_the_hosts(tmp_path: Path) -> None:
    import firmware.core.runtime as host_runtime
    from firmware.drivers.printer.escpos import EscPos

    settings = {"device_id": "kiosk-01", "role": "kiosk", "prefix": "sigap", "services": ["A"],
                "broker_host": "127.0.0.1", "broker_port": free_port(), "pins": {}}
    board = SerialBoard("kiosk-01")
    _flash_build(board, build(tmp_path / "build", sources=True), settings)
    board.start()
    try:
        hw = await board.wait_running(10)
        vm = board.vm
        assert vm is not None
        runtime = vm.modules["firmware.core.runtime"]
        assert runtime.__file__ == "/lib/firmware/core/runtime.py"
        assert runtime is not host_runtime and runtime.Device is not host_runtime.Device
        printer = hw.printer()
        assert type(printer).__name__ == "EscPos" and not isinstance(printer, EscPos)  # the flash's driver
        await wait_until(lambda: hw.storage.read("boot") == "1", 10)
        assert board.flash.read_bytes("/data/boot") == b"1"  # the firmware's files live under /data
    finally:
        await board.stop()


@pytest.mark.timeout(60)
async def test_compiled_mpy_files_do_not_load_on_a_virtual_board(tmp_path: Path) -> None:
    board = SerialBoard("loket-01")
    _flash_build(board, build(tmp_path / "build"), {"device_id": "loket-01", "role": "counter"})
    board.start()
    try:
        await board.wait_console("ValueError: incompatible .mpy file")
        await board.wait_console(">>> ")  # main.py failed: the board waits at the REPL
        assert not board.running.is_set()
    finally:
        await board.stop()


@pytest.mark.timeout(30)
async def test_ctrl_c_interrupts_code_running_at_the_raw_repl() -> None:
    board = SerialBoard("b")
    wire = _Wire(board)
    board.start()
    try:
        await wire.enter_raw_repl()
        for code in (b"while True:\n    pass\n", b"import time\ntime.sleep(3600)\n"):
            board.feed(code + b"\x04")
            await wire.expect(b"OK")
            board.feed(b"\x03")
            got = await wire.expect(b"\x04>")
            assert got.startswith(b"\x04Traceback") and b"KeyboardInterrupt" in got, got
        board.feed(b"print('still here')\x04")
        assert await wire.expect(b"\x04>") == b"OKstill here\r\n\x04\x04>"
    finally:
        await board.stop()


@pytest.mark.timeout(30)
async def test_a_reset_the_firmware_asks_for_boots_the_board_again_from_flash(tmp_path: Path) -> None:
    settings = {"device_id": "loket-01", "role": "counter", "counter": "1", "prefix": "sigap",
                "broker_host": "127.0.0.1", "broker_port": free_port(), "pins": {}}
    board = SerialBoard("loket-01")
    _flash_build(board, build(tmp_path / "build", sources=True), settings)
    board.start()
    try:
        first = await board.wait_running(10)
        await wait_until(lambda: first.storage.read("boot") == "1", 10)
        first.reset("config")  # what the runtime calls for machine.reset()
        await wait_until(lambda: board.boots == 2 and board.running.is_set(), 10)
        second = board.board
        assert second is not None and second is not first  # RAM is gone, a new boot
        await wait_until(lambda: board.flash.read_bytes("/data/boot") == b"2", 10)
        assert first.resets == ["config"]
    finally:
        await board.stop()
