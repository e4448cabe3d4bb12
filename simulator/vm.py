"""The Python inside one virtual board: its own modules, its own flash, CPython underneath.

A real board runs MicroPython over its flash; a virtual board runs CPython's
`exec` in a namespace of its own (`BoardVM`), so many boards share one process
and none of them touches the host's files:

- `open`, `print` and `__import__` in the board's builtins are the board's:
  files come from its `VirtualFlash`, output goes to its serial console;
- `os`, `sys`, `machine`, `micropython` and `time` are virtual modules bound to
  this board (`os.listdir` lists its flash, `machine.reset()` resets it);
- `import firmware...` / `import protocol...` load the `.py` files found on the
  board's flash (`/` then `/lib`, MicroPython's `sys.path`), into this board's
  own module table, never into the host's `sys.modules`. A module that is on
  the flash only as `.mpy` fails as on a MicroPython that cannot load it
  (`ValueError: incompatible .mpy file`): CPython cannot run .mpy, which is why
  `sigap deploy` copies sources to a virtual board;
- `firmware.board.esp32`, the hardware seam, is the simulator's (a factory for
  the virtual board); everything else (json, struct, asyncio, ...) is CPython's,
  except that `asyncio.run()` hands the board's main coroutine to the board.

The VM holds RAM state only: a soft or hard reset makes a new one.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import hashlib
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Coroutine
from typing import Any

from simulator.flash import VirtualFlash, flash_error, normpath

IMPLEMENTATION_NAME = "sigap-virtual"
"""`sys.implementation.name` of a virtual board; it has no `_mpy`: it cannot load .mpy files."""
BANNER = "MicroPython v1.29.0 (Sigap virtual board, CPython underneath) on 2026-11-23; Sigap virtual ESP32"
FLASH_PACKAGES = ("firmware", "protocol")
_VIRTUAL = ("os", "sys", "machine", "micropython", "time", "asyncio", "hashlib", "vfs")
"""Top-level packages that must come from the board's flash, never from the host."""


class HardReset(BaseException):
    """machine.reset(): unwinds whatever runs; the board then boots again from its flash."""


class SoftReset(BaseException):
    """machine.soft_reset(): as Ctrl-D at the REPL."""


class Console:
    """Where the board's stdout goes: a callable taking bytes (the serial port)."""

    def __init__(self, write: Callable[[bytes], None]):
        self.write_bytes = write

    def write_text(self, text: str) -> None:
        # MicroPython's stdout is "cooked": \n goes out as \r\n.
        self.write_bytes(text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace"))


class _Stream:
    """sys.stdout / sys.stderr of the board: text, with a `.buffer` for raw bytes."""

    def __init__(self, console: Console):
        self._console = console
        self.buffer = types.SimpleNamespace(write=self._write_raw)

    def _write_raw(self, data: Any) -> int:
        b = bytes(data)
        self._console.write_bytes(b)
        return len(b)

    def write(self, text: str) -> int:
        self._console.write_text(str(text))
        return len(text)

    def flush(self) -> None:
        pass


class BoardVM:
    """One board's interpreter state: modules, __main__ globals, virtual os/sys/machine."""

    def __init__(self, flash: VirtualFlash, console: Console, device_id: str = "",
                 on_main: Callable[[Coroutine[Any, Any, Any]], None] | None = None,
                 make_board: Callable[[], Any] | None = None, reset_cause: int = 1):
        self.flash = flash
        self.console = console
        self.device_id = device_id
        self.cwd = "/"
        self.on_main = on_main
        self.make_board = make_board
        self.reset_cause = reset_cause
        self.interrupt: threading.Event = threading.Event()
        self.thread_id: int | None = None  # the worker thread running REPL code now
        self._tid_lock = threading.Lock()
        self.code_files: set[str] = {"<stdin>"}
        self.stdout = _Stream(console)
        self.builtins: dict[str, Any] = dict(builtins.__dict__)
        self.builtins.update(__import__=self._import, open=self._open, print=self._print)
        self.modules: dict[str, types.ModuleType] = {}
        for name in _VIRTUAL:
            mod = getattr(self, "_" + name)()
            self.modules[name] = mod
            if name in ("os", "sys", "time"):
                self.modules["u" + name] = mod
        self.main_globals: dict[str, Any] = {"__name__": "__main__", "__builtins__": self.builtins}

    # -- builtins -----------------------------------------------------------------
    def _print(self, *args: Any, sep: str = " ", end: str = "\n", file: Any = None, flush: bool = False) -> None:
        out = file if file is not None else self.stdout
        out.write(sep.join(str(a) for a in args) + end)

    def _open(self, path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        return self.flash.open(str(path), mode, self.cwd)

    # -- import -------------------------------------------------------------------
    def _import(self, name: str, globals: dict[str, Any] | None = None, locals: Any = None,
                fromlist: Any = (), level: int = 0) -> types.ModuleType:
        if level:
            package = (globals or {}).get("__package__") or ""
            base = package.rsplit(".", level - 1)[0] if level > 1 else package
            name = f"{base}.{name}" if name else base
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            self._load(".".join(parts[:i]))
        module = self.modules[name]
        if not fromlist:
            return self.modules[parts[0]]
        if hasattr(module, "__path__"):
            for item in fromlist:
                if item != "*" and not hasattr(module, item):
                    sub = f"{name}.{item}"
                    if self._find(sub) is not None:
                        self._load(sub)
        return module

    def import_module(self, name: str) -> types.ModuleType:
        """`import name` on the board: the module itself (not its top-level package)."""
        return self._import(name, fromlist=("_",))

    def _find(self, name: str) -> tuple[str, bool] | None:
        """(flash path of the source, is a package) for a module, or None."""
        rel = name.replace(".", "/")
        for root in ("/", "/lib/"):
            base = root + rel
            if self.flash.exists(base + "/__init__.py"):
                return base + "/__init__.py", True
            if self.flash.isdir(base) and name.split(".")[0] in FLASH_PACKAGES:
                return base, True  # a namespace package on the flash
            if self.flash.exists(base + ".py"):
                return base + ".py", False
            if self.flash.exists(base + ".mpy") or self.flash.exists(base + "/__init__.mpy"):
                return base + ".mpy", False
        return None

    def _load(self, name: str) -> types.ModuleType:
        if name in self.modules:
            return self.modules[name]
        if name == "firmware.board.esp32":
            return self._seam()
        found = self._find(name)
        top = name.split(".")[0]
        if found is None:
            parent = self.modules.get(name.rpartition(".")[0])
            if top in FLASH_PACKAGES or (parent is not None and getattr(parent, "__file__", None) is None
                                         and parent.__name__ in _VIRTUAL):
                raise ImportError(f"no module named '{name}'")
            module = __import__(name, fromlist=["_"])  # CPython's own: json, struct, random, ...
            self.modules[name] = module
            return module
        path, package = found
        if path.endswith(".mpy"):
            raise ValueError("incompatible .mpy file")
        module = types.ModuleType(name)
        module.__dict__["__builtins__"] = self.builtins
        module.__file__ = path
        if package:
            module.__path__ = [path.rsplit("/", 1)[0] if path.endswith(".py") else path]
            module.__package__ = name
        else:
            module.__package__ = name.rpartition(".")[0]
        self.modules[name] = module
        try:
            if path.endswith(".py"):
                source = self.flash.read_bytes(path)
                self.code_files.add(path)
                exec(compile(source, path, "exec", dont_inherit=True), module.__dict__)
        except BaseException:
            self.modules.pop(name, None)
            raise
        if "." in name:
            owner, _, child = name.rpartition(".")
            setattr(self.modules[owner], child, module)
        return module

    def _seam(self) -> types.ModuleType:
        # The hardware seam: on a real board firmware/board/esp32.py drives machine
        # and network; here Esp32Board() is the virtual board (with /settings.json).
        mod = types.ModuleType("firmware.board.esp32")
        make = self.make_board

        def esp32_board(settings: Any = None) -> Any:
            if make is None:
                raise OSError(errno.ENODEV, "no virtual hardware")
            return make()

        mod.Esp32Board = esp32_board  # type: ignore[attr-defined]
        self._load("firmware.board")
        self.modules["firmware.board.esp32"] = mod
        self.modules["firmware.board"].esp32 = mod  # type: ignore[attr-defined]
        return mod

    # -- running code ---------------------------------------------------------------
    def raise_interrupt(self) -> None:
        """Ctrl-C: KeyboardInterrupt in the REPL code running now (sleeps notice it at once)."""
        with self._tid_lock:
            self.interrupt.set()
            if self.thread_id is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread_id), ctypes.py_object(KeyboardInterrupt))

    def call_interruptible(self, fn: Callable[[], str | None]) -> str | None:
        """fn() in this (worker) thread, which raise_interrupt() may stop; a late Ctrl-C is its traceback."""
        with self._tid_lock:
            self.thread_id = threading.get_ident()
        try:
            try:
                self._check_interrupt()  # a Ctrl-C that came before this thread was known
                return fn()
            finally:
                with self._tid_lock:
                    self.thread_id = None
                    # Drop an interrupt scheduled too late to land inside fn().
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
        except KeyboardInterrupt as e:
            return self.format_exception(e)

    def run_single(self, source: bytes) -> str | None:
        """One line at the friendly REPL: an expression's value is printed (repr)."""
        try:
            code = compile(source, "<stdin>", "eval", dont_inherit=True)
        except SyntaxError:
            return self.run_source(source)
        try:
            value = eval(code, self.main_globals)
        except (HardReset, SoftReset):
            raise
        except BaseException as e:
            return self.format_exception(e)
        if value is not None:
            self._print(repr(value))
        return None

    def run_source(self, source: bytes | str, filename: str = "<stdin>",
                   namespace: dict[str, Any] | None = None) -> str | None:
        """Compile and run; None, or the traceback text MicroPython would print."""
        self.code_files.add(filename)
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
            exec(code, self.main_globals if namespace is None else namespace)
        except (HardReset, SoftReset):
            raise
        except SystemExit:
            return None
        except BaseException as e:  # the board prints it, whatever it is
            return self.format_exception(e)
        return None

    def format_exception(self, e: BaseException) -> str:
        """A traceback as MicroPython prints it: only frames of code that runs on the board."""
        lines = ["Traceback (most recent call last):\n"]
        for frame in traceback.extract_tb(e.__traceback__):
            if frame.filename in self.code_files:
                lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
        if isinstance(e, SyntaxError) and e.filename in self.code_files:
            lines.append(f'  File "{e.filename}", line {e.lineno}\n')
            return "".join(lines) + f"SyntaxError: {e.msg}\n"
        text = str(e)
        # CPython turns OSError(2, ...) into FileNotFoundError; MicroPython has OSError only.
        name = "OSError" if isinstance(e, OSError) else type(e).__name__
        return "".join(lines) + f"{name}: {text}\n"

    # -- virtual modules ------------------------------------------------------------
    def _module(self, name: str, **members: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(members)
        return mod

    def _os(self) -> types.ModuleType:
        flash = self.flash

        def p(path: Any) -> str:
            return normpath(str(path), self.cwd)

        def chdir(path: str) -> None:
            if not flash.isdir(p(path)):
                raise flash_error(errno.ENOENT)
            self.cwd = p(path)

        def ilistdir(path: str = "") -> Any:
            return flash.ilistdir(p(path or self.cwd))

        return self._module(
            "os",
            sep="/",
            listdir=lambda path="": flash.listdir(p(path or self.cwd)),
            ilistdir=ilistdir,
            stat=lambda path: flash.stat(p(path)),
            remove=lambda path: flash.remove(p(path)),
            unlink=lambda path: flash.remove(p(path)),
            mkdir=lambda path: flash.mkdir(p(path)),
            rmdir=lambda path: flash.rmdir(p(path)),
            rename=lambda a, b: flash.rename(p(a), p(b)),
            statvfs=lambda path="/": flash.statvfs(),
            getcwd=lambda: self.cwd,
            chdir=chdir,
            sync=lambda: None,
            uname=lambda: types.SimpleNamespace(
                sysname="esp32", nodename="esp32", release="1.29.0", version=BANNER, machine="Sigap virtual ESP32"
            ),
            urandom=lambda n: bytes(__import__("os").urandom(n)),
            dupterm=lambda *a: None,
        )

    def _sys(self) -> types.ModuleType:
        impl = types.SimpleNamespace(name=IMPLEMENTATION_NAME, version=(1, 29, 0, ""),
                                     _machine="Sigap virtual ESP32 (CPython)")

        def print_exception(e: BaseException, file: Any = None) -> None:
            (file or self.stdout).write(self.format_exception(e))

        def exit(code: Any = 0) -> None:
            raise SystemExit(code)

        return self._module(
            "sys", implementation=impl, platform="esp32", version="3.4.0; " + BANNER,
            version_info=(3, 4, 0), byteorder="little", maxsize=sys.maxsize, argv=[], path=["", ".frozen", "/lib"],
            modules=self.modules, stdout=self.stdout, stderr=self.stdout,
            stdin=types.SimpleNamespace(buffer=None), print_exception=print_exception, exit=exit,
        )

    def _machine(self) -> types.ModuleType:
        def reset() -> None:
            raise HardReset()

        def soft_reset() -> None:
            raise SoftReset()

        uid = hashlib.sha256(self.device_id.encode()).digest()[:6]

        class RTC:
            def datetime(self, t: Any = None) -> Any:
                if t is not None:
                    return None
                lt = time.localtime()
                return (lt[0], lt[1], lt[2], lt[6], lt[3], lt[4], lt[5], 0)

        return self._module(
            "machine", reset=reset, soft_reset=soft_reset, unique_id=lambda: uid,
            reset_cause=lambda: self.reset_cause, freq=lambda *a: 240_000_000, idle=lambda: None,
            bootloader=reset, RTC=RTC,
            PWRON_RESET=1, HARD_RESET=2, WDT_RESET=3, DEEPSLEEP_RESET=4, SOFT_RESET=5,
        )

    def _micropython(self) -> types.ModuleType:
        return self._module(
            "micropython", const=lambda x: x, alloc_emergency_exception_buf=lambda n: None,
            opt_level=lambda *a: 0, mem_info=lambda *a: self._print("stack: 0 out of 15360"),
            qstr_info=lambda *a: None, schedule=lambda f, a: f(a), kbd_intr=lambda c: None,
        )

    def _check_interrupt(self) -> None:
        if self.interrupt.is_set():
            self.interrupt.clear()
            raise KeyboardInterrupt

    def _time(self) -> types.ModuleType:
        mod = self._module("time")
        mod.__dict__.update({k: v for k, v in time.__dict__.items() if not k.startswith("_")})
        period = 1 << 30

        def sleep(s: float) -> None:
            end = time.monotonic() + s
            while True:
                self._check_interrupt()
                left = end - time.monotonic()
                if left <= 0:
                    return
                self.interrupt.wait(min(left, 0.05))

        mod.__dict__.update(
            sleep=sleep, sleep_ms=lambda ms: sleep(ms / 1000), sleep_us=lambda us: sleep(us / 1e6),
            ticks_ms=lambda: (time.monotonic_ns() // 1_000_000) % period,
            ticks_us=lambda: (time.monotonic_ns() // 1000) % period,
            ticks_add=lambda a, d: (a + d) % period,
            ticks_diff=lambda a, b: ((a - b + period // 2) % period) - period // 2,
        )
        return mod

    def _asyncio(self) -> types.ModuleType:
        import asyncio

        mod = self._module("asyncio")
        mod.__dict__.update({k: v for k, v in asyncio.__dict__.items() if not k.startswith("__")})
        vm = self

        def run(main: Coroutine[Any, Any, Any]) -> None:
            # main.py's asyncio.run(): the board runs the coroutine on the simulator's
            # event loop (shared by every virtual board) once main.py returns.
            if vm.on_main is None:
                main.close()
                raise RuntimeError("asyncio.run() needs the virtual board's event loop")
            vm.on_main(main)

        mod.run = run  # type: ignore[attr-defined]
        return mod

    def _vfs(self) -> types.ModuleType:
        class VfsLfs2:
            """The board's one file system, mounted at / (mpremote df lists it)."""

            def __repr__(self) -> str:
                return "<VfsLfs2>"

        root = VfsLfs2()

        def mount(*args: Any, **kw: Any) -> Any:
            if args:
                raise flash_error(errno.EPERM)  # the virtual flash is the only file system
            return [(root, "/")]

        return self._module("vfs", mount=mount, umount=lambda *a: None, VfsLfs2=VfsLfs2)

    def _hashlib(self) -> types.ModuleType:
        return self._module("hashlib", sha256=hashlib.sha256, sha1=hashlib.sha1, md5=hashlib.md5)
