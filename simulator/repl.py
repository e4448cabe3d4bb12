"""A virtual board behind a serial port: MicroPython's REPL, raw REPL and raw-paste, and boot from flash.

`SerialBoard` is one virtual ESP32 as `mpremote` (and so `sigap deploy`)
sees it on a serial line: it answers the raw REPL and raw-paste mode of
MicroPython's shared/runtime/pyexec.c byte for byte, runs what mpremote sends
in the board's own interpreter (simulator/vm.py: `open`, `os`, `machine` bound
to its flash), and boots from that flash like a real board:

    power on / machine.reset()   /boot.py if present, then /main.py if present;
                                 no /main.py: the friendly REPL (a blank board)
    Ctrl-C                       stops the running firmware, friendly REPL
    Ctrl-D (soft reset)          fresh interpreter; main.py runs only from the
                                 friendly REPL, not from the raw REPL (as pyexec.c)

main.py runs as written; `firmware.*` and `protocol.*` load from the flash's
`.py` files, the hardware seam `firmware.board.esp32.Esp32Board()` is a
`VirtualBoard` configured from the flash's /settings.json and storing its
firmware files under /data, and `asyncio.run(run_board(...))` runs on the
simulator's event loop. The serial line itself is a TCP port or a pty
(simulator/serial_port.py). Run one from the shell::

    python -m simulator.repl --listen 127.0.0.1:2323 [--pty] [--device loket-01]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from simulator.board import VirtualBoard, VirtualPin, VirtualStorage, _BatteryADC, _SirenPin
from simulator.flash import DEFAULT_CAPACITY, VirtualFlash
from simulator.vm import BANNER, BoardVM, Console, HardReset, SoftReset

log = logging.getLogger("sigap.simulator")

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PASTE_WINDOW = 128  # half of MICROPY_REPL_STDIN_BUFFER_MAX (256), as pyexec.c offers
CONSOLE_TAIL = 64 * 1024


class _Reset(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind  # "hard" or "soft"


class FlashBoard(VirtualBoard):
    """The hardware of a board booted from its flash: part drivers come from the flash's modules too.

    A `VirtualBoard` builds its printer, ranger, thermometer, battery and siren
    drivers from the host's `firmware` package; this one builds the same twins
    under the drivers the board's own interpreter loaded from its flash, as
    firmware/board/esp32.py does on a real board.
    """

    def __init__(self, settings: dict[str, Any], vm: BoardVM):
        super().__init__(settings)
        self._vm = vm

    def _flash_class(self, module: str, name: str) -> Any:
        return getattr(self._vm.import_module(module), name)

    def printer(self) -> Any:
        return self._part("printer", lambda: self._flash_class("firmware.drivers.printer.escpos", "EscPos")(
            self.printer_uart))

    def rangefinder(self) -> Any:
        return self._part("rangefinder", lambda: self._flash_class("firmware.drivers.sensors.ultrasonic", "JSNSR04T")(
            VirtualPin("trig", 0), VirtualPin("echo", 0), self._time_pulse_us))

    def thermometer(self) -> Any:
        def build() -> Any:
            t = self._flash_class("firmware.drivers.sensors.ds18b20", "DS18B20")(sensor=self.ds18x20)
            t.conversion_ms = self.ds18b20_conversion_ms
            return t

        return self._part("thermometer", build)

    def battery(self) -> Any:
        return self._part("battery", lambda: self._flash_class("firmware.drivers.sensors.battery", "Battery")(
            _BatteryADC(self, 2.0), ratio=2.0))

    def siren(self) -> Any:
        return self._part("siren", lambda: self._flash_class("firmware.drivers.outputs.siren", "Siren")(
            _SirenPin(self.siren_history)))


class SerialBoard:
    """One virtual board reached through its serial console; its flash outlives every reset."""

    def __init__(self, device_id: str = "", flash: VirtualFlash | None = None,
                 configure: Callable[[VirtualBoard], None] | None = None):
        self.device_id = device_id
        self.flash = flash if flash is not None else VirtualFlash()
        self.configure = configure
        self.board: FlashBoard | None = None  # the hardware of the running boot (new on each boot)
        self.boots = 0
        self.console_tail = bytearray()  # the last CONSOLE_TAIL bytes the board wrote
        self._console_changed = asyncio.Event()
        self.running = asyncio.Event()  # main.py's firmware coroutine is running
        self.at_repl = asyncio.Event()  # waiting at a REPL prompt
        self._sinks: list[Callable[[bytes], None]] = []
        self._input = bytearray()
        self._input_event = asyncio.Event()
        self._reset_request: str | None = None
        self._reset_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._firmware: asyncio.Task[Any] | None = None
        self._main: Coroutine[Any, Any, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.vm: BoardVM | None = None
        self._raw_mode = False

    # -- the serial line ----------------------------------------------------------
    def attach(self, sink: Callable[[bytes], None]) -> None:
        """Send the board's output to `sink` too (a TCP client, a pty)."""
        self._sinks.append(sink)

    def detach(self, sink: Callable[[bytes], None]) -> None:
        with contextlib.suppress(ValueError):
            self._sinks.remove(sink)

    def feed(self, data: bytes) -> None:
        """Bytes arriving on the board's UART."""
        self._input += data
        self._input_event.set()
        if CTRL_C in data and self.vm is not None:
            self.vm.raise_interrupt()  # interrupts a running exec (as the UART IRQ does)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self.console_tail += data
        del self.console_tail[:-CONSOLE_TAIL]
        self._console_changed.set()
        for sink in list(self._sinks):
            sink(data)

    def _write_threadsafe(self, data: bytes) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._write(data)
        else:
            loop.call_soon_threadsafe(self._write, data)

    async def _read(self) -> int:
        while not self._input:
            self._input_event.clear()
            await self._input_event.wait()
        c = self._input[0]
        del self._input[0]
        return c

    # -- power ----------------------------------------------------------------------
    def start(self) -> None:
        """Power on."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._life(), name=f"serial-board:{self.device_id}")

    async def stop(self) -> None:
        """Power off (no clean shutdown: the broker fires the Will)."""
        if self.vm is not None:
            self.vm.raise_interrupt()  # code running at the REPL stops too
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._stop_firmware()

    async def wait_running(self, timeout: float = 10.0) -> FlashBoard:
        """Wait until main.py's firmware runs; its VirtualBoard."""
        await asyncio.wait_for(self.running.wait(), timeout)
        assert self.board is not None
        return self.board

    async def wait_console(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the console's recent output holds `text`."""

        async def _wait() -> None:
            while text.encode() not in self.console_tail:
                self._console_changed.clear()
                await self._console_changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def _life(self) -> None:
        kind = "power"
        while True:
            try:
                await self._run(kind)
                return
            except _Reset as r:
                kind = r.kind

    async def _run(self, kind: str) -> None:
        await self._stop_firmware()
        self._reset_request = None
        self._reset_event.clear()
        raw = kind == "soft" and self._raw_mode
        if kind == "soft":
            self._write(b"MPY: soft reboot\r\n")
        else:
            self._input.clear()  # a hard reset empties the UART's buffer
        self.vm = BoardVM(self.flash, Console(self._write_threadsafe), self.device_id,
                          on_main=self._take_main, make_board=self._make_board,
                          reset_cause=5 if kind == "soft" else 2 if kind == "hard" else 1)
        if self.flash.exists("/boot.py"):
            await self._exec(self.flash.read_bytes("/boot.py"), "/boot.py", eof=False)
        if not raw and self.flash.exists("/main.py"):
            await self._run_main()
        self._raw_mode = raw
        if raw:
            await self._raw_repl()
        await self._friendly_repl(banner=True)

    def _reset(self, kind: str) -> None:
        """Asked from inside (the firmware's board.reset, the watchdog): reboot soon."""
        self._reset_request = kind
        self._reset_event.set()

    # -- boot from flash ------------------------------------------------------------
    def _make_board(self) -> FlashBoard:
        """Esp32Board() on the virtual board: the hardware, configured from /settings.json."""
        try:
            text = self.flash.read_bytes("/settings.json").decode("utf-8")
        except (OSError, UnicodeError):
            text = None
        settings: Any = text
        if text is not None:
            try:
                settings = json.loads(text)
            except ValueError:
                pass
        assert self.vm is not None
        board = FlashBoard(settings if isinstance(settings, dict) else {}, self.vm)
        board.settings = settings  # as found: the runtime validates it
        board.storage = VirtualStorage(self.flash)
        board.on_reset = lambda reason: self._reset("hard")
        if self.configure is not None:
            self.configure(board)
        self.board = board
        return board

    def _take_main(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._main is not None:
            self._main.close()
        self._main = coro

    async def _run_main(self) -> None:
        vm = self.vm
        assert vm is not None
        self.boots += 1
        err = vm.run_source(self.flash.read_bytes("/main.py"), "/main.py")
        if err:
            self._write_text(err)
            return
        main, self._main = self._main, None
        if main is None:
            return
        self._firmware = asyncio.create_task(main, name=f"firmware:{self.device_id}")
        self.running.set()
        try:
            while True:
                waits: list[asyncio.Future[Any]] = [self._firmware, asyncio.ensure_future(self._input_event.wait()),
                                                    asyncio.ensure_future(self._reset_event.wait())]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits[1:]:
                        w.cancel()
                if self._reset_request is not None:
                    raise _Reset(self._reset_request)
                if self._firmware.done():
                    exc = None if self._firmware.cancelled() else self._firmware.exception()
                    if exc is not None:
                        self._write_text(vm.format_exception(exc))
                    return
                if CTRL_C in self._input:
                    del self._input[: self._input.index(CTRL_C) + 1]
                    await self._stop_firmware()
                    self._write_text("Traceback (most recent call last):\n  File \"/main.py\", line 1, in <module>\n"
                                     "KeyboardInterrupt: \n")
                    return
                self._input.clear()  # the firmware does not read the console
                self._input_event.clear()
        finally:
            self.running.clear()
            if self._reset_request is not None:
                await self._stop_firmware()

    async def _stop_firmware(self) -> None:
        task, self._firmware = self._firmware, None
        board = self.board
        if task is not None and not task.done():
            # What a soft reset does to a running board: the program stops, its sockets close.
            if board is not None:
                board.set_wifi(False)
            while not task.done():
                # Cancel again if a cancellation got lost: CPython 3.11's
                # asyncio.wait_for can swallow one that races its inner future.
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            if board is not None:
                board.set_wifi(True)
        if board is not None:
            board.stop_watchdog()  # differs from an ESP32, whose WDT cannot be stopped
        self.running.clear()

    # -- REPLs ----------------------------------------------------------------------
    def _write_text(self, text: str) -> None:
        self._write(text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace"))

    async def _friendly_repl(self, banner: bool) -> None:
        self._raw_mode = False
        if banner:
            self._write_text(BANNER + "\nType \"help()\" for more information.\n")
        line = bytearray()
        self._write(b">>> ")
        self.at_repl.set()
        while True:
            c = await self._read()
            if c == CTRL_A:
                self._write(b"\r\n")
                await self._raw_repl()
                self._write_text(BANNER + "\nType \"help()\" for more information.\n>>> ")
                line.clear()
            elif c == CTRL_B:
                self._write_text("\n" + BANNER + "\nType \"help()\" for more information.\n>>> ")
                line.clear()
            elif c == CTRL_C:
                self._write(b"\r\n>>> ")
                line.clear()
            elif c == CTRL_D:
                self._write(b"\r\n")
                raise _Reset("soft")
            elif c == ord("\r"):
                self._write(b"\r\n")
                if line.strip():
                    await self._exec(bytes(line), "<stdin>", eof=False, single=True)
                line.clear()
                self._write(b">>> ")
            elif c in (8, 127):
                if line:
                    line.pop()
                    self._write(b"\x08 \x08")
            elif c == ord("\n"):
                pass
            else:
                line.append(c)
                self._write(bytes([c]))

    async def _raw_repl(self) -> None:
        """pyexec_raw_repl(): returns on Ctrl-B; Ctrl-D on an empty line soft-resets."""
        self._raw_mode = True
        self._write(RAW_BANNER)
        line = bytearray()
        self._write(b">")
        while True:
            c = await self._read()
            if c == CTRL_A:
                if len(line) == 2 and line[0] == CTRL_E:
                    await self._raw_paste(line[1])
                    line.clear()
                    self._write(b">")
                    continue
                line.clear()
                self._write(RAW_BANNER + b">")
            elif c == CTRL_B:
                self._write(b"\r\n")
                self._raw_mode = False
                return
            elif c == CTRL_C:
                line.clear()
            elif c == CTRL_D:
                self._write(b"OK")
                if not line:
                    self._write(b"\r\n")
                    raise _Reset("soft")
                await self._exec(bytes(line), "<stdin>", eof=True)
                line.clear()
                self._write(b">")
            else:
                line.append(c)

    async def _raw_paste(self, command: int) -> None:
        """do_reader_stdin(): raw-paste with its flow-control window."""
        if command != ord("A"):
            self._write(b"R\x00")
            return
        self._write(b"R\x01" + bytes([PASTE_WINDOW & 0xFF, PASTE_WINDOW >> 8, 0x01]))
        data = bytearray()
        remain = PASTE_WINDOW
        while True:
            c = await self._read()
            if c in (CTRL_C, CTRL_D):
                self._write(b"\x04")  # end acknowledged
                if c == CTRL_C:
                    self._write(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04")
                    return
                break
            data.append(c)
            remain -= 1
            if remain == 0:
                self._write(b"\x01")  # another window may come
                remain = PASTE_WINDOW
        await self._exec(bytes(data), "<stdin>", eof=True)

    async def _exec(self, source: bytes, filename: str, eof: bool, single: bool = False) -> None:
        """Run code in a worker thread (Ctrl-C interrupts it); output framed as the raw REPL does."""
        vm = self.vm
        assert vm is not None
        vm.interrupt.clear()
        self.at_repl.clear()

        def work() -> tuple[str | None, str | None]:
            try:
                if single:
                    return vm.call_interruptible(lambda: vm.run_single(source)), None
                return vm.call_interruptible(lambda: vm.run_source(source, filename)), None
            except HardReset:
                return None, "hard"
            except SoftReset:
                return None, "soft"

        err, reset = await asyncio.to_thread(work)
        if reset is not None:
            raise _Reset(reset)
        if eof:
            self._write(b"\x04")
        if err:
            self._write_text(err)
        if eof:
            self._write(b"\x04")
        if CTRL_C in self._input:  # consumed by the interrupt
            self._input.remove(CTRL_C)
        self.at_repl.set()


# ---------------------------------------------------------------------- command line


async def serve(board: SerialBoard, listen: str | None, pty: bool,
                ready: Callable[[list[str]], None] | None = None) -> None:
    """Power the board on behind a TCP port and/or a pty until cancelled."""
    from simulator.serial_port import PtyPort, TcpPort

    board.start()
    ports: list[Any] = []
    try:
        if listen:
            host, _, port = listen.rpartition(":")
            tcp = TcpPort(board, host or "127.0.0.1", int(port))
            await tcp.start()
            ports.append(tcp)
        if pty:
            p = PtyPort(board)
            p.start()
            ports.append(p)
        names = [p.name for p in ports]
        if ready is not None:
            ready(names)
        await asyncio.Event().wait()
    finally:
        for p in ports:
            await p.close()
        await board.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m simulator.repl`: one blank virtual board on a serial port, until Ctrl-C."""
    ap = argparse.ArgumentParser(prog="python -m simulator.repl", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--listen", default=None,
                    help="HOST:PORT: the console over TCP, for --port socket://HOST:PORT (default 127.0.0.1:2323)")
    ap.add_argument("--pty", action="store_true", help="the console on a pty too (its path is printed)")
    ap.add_argument("--device", default="", help="the device id this board will be (seeds machine.unique_id())")
    ap.add_argument("--config", default=None, help="site config: checks that --device is one of its devices")
    ap.add_argument("--capacity", type=int, default=None, help="flash size in bytes (default 1.4 MB)")
    ap.add_argument("--image", default=None,
                    help="a tar file holding the flash: loaded at start if it exists, saved at exit")
    args = ap.parse_args(argv)
    if not args.listen and not args.pty:
        args.listen = "127.0.0.1:2323"
    if args.config:
        from controller.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except (ConfigError, OSError) as e:
            errors = getattr(e, "errors", None) or [str(e)]
            print(f"{args.config} is not a valid site config: {'; '.join(errors)}", file=sys.stderr)
            return 2
        dev = cfg.device(args.device) if args.device else None
        if dev is None:
            print(f"no device {args.device!r} in {args.config}", file=sys.stderr)
            return 2
        print(f"virtual board for {dev.id} ({dev.role} at {dev.site}): blank until `sigap deploy` flashes it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    capacity = args.capacity or DEFAULT_CAPACITY
    if args.image and os.path.exists(args.image):
        flash = VirtualFlash.load(args.image, capacity)
        print(f"flash loaded from {args.image}: {len(flash.files)} files")
    else:
        flash = VirtualFlash(capacity)
    board = SerialBoard(args.device, flash)

    def ready(names: list[str]) -> None:
        for name in names:
            print(f"console on {name}", flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # stop as Ctrl-C does (and save the image)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(board, args.listen, args.pty, ready))
    finally:
        if args.image:
            flash.save(args.image)
            print(f"flash saved to {args.image}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
