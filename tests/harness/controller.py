"""Run the real controller for a test: in-process (fast, inspectable) or as a subprocess."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controller.config import SiteConfig
from controller.service import Controller, utcnow
from controller.store import open_store
from tests.harness.broker import free_port, wait_port

ROOT = pathlib.Path(__file__).resolve().parents[2]


class InProcessController:
    """The Controller object running in the test's event loop."""

    def __init__(self, cfg: SiteConfig, db_path: pathlib.Path, broker_url: str,
                 clock: Callable[[], datetime] = utcnow, listen: str | None = None):
        self.cfg = cfg
        self.db_url = f"sqlite:///{db_path}"
        self.broker_url = broker_url
        self.clock = clock
        self.listen = listen
        self.ctrl: Controller | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 15.0) -> Controller:
        """Start and wait until the broker link (and web server) is up."""
        self.ctrl = Controller(self.cfg, open_store(self.db_url), self.broker_url, clock=self.clock)
        ready = asyncio.Event()
        self.task = asyncio.create_task(self.ctrl.run(self.listen, ready=ready))
        await asyncio.wait_for(ready.wait(), timeout)
        return self.ctrl

    async def stop(self) -> None:
        """Cancel and wait for the clean shutdown."""
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None


class SubprocessController:
    """`sigap controller` as its own process, so a test can SIGKILL it."""

    def __init__(self, config_path: pathlib.Path, db_path: pathlib.Path, broker_url: str, log_path: pathlib.Path,
                 env: dict[str, str] | None = None):
        self.config_path = config_path
        self.db_path = db_path
        self.broker_url = broker_url
        self.log_path = log_path
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until its web server answers."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "controller", "--config", str(self.config_path),
             "--broker", self.broker_url, "--db", f"sqlite:///{self.db_path}", "--listen", f"127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env, start_new_session=True,
        )
        log.close()
        wait_port(self.port, up=True, timeout=30)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a power cut or OOM kill."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def fixed_clock(iso: str) -> Callable[[], datetime]:
    """A clock stuck at one instant (e.g. '2026-11-23T09:00:00+07:00')."""
    t = datetime.fromisoformat(iso)
    return lambda: t


class SettableClock:
    """A clock a test moves by hand."""

    def __init__(self, iso: str):
        self.now = datetime.fromisoformat(iso)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: Any) -> None:
        from datetime import timedelta

        self.now += timedelta(**kw)


def midday_timezone(now: datetime | None = None) -> str:
    """An IANA fixed-offset zone where it is around noon right now.

    For tests of a controller in its own process (real clock): services open
    06:00–18:00 there are open whenever the test runs, with no clock hook in
    production code.
    """
    from datetime import UTC

    hour = (now or datetime.now(UTC)).astimezone(UTC).hour
    offset = 12 - hour  # UTC+offset, within Etc's -12..+14 range
    if offset == 0:
        return "Etc/GMT"
    # POSIX-style names: Etc/GMT-7 is UTC+7.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def kiosk_site_toml(kiosks: tuple[str, ...] | list[str], services: str = "A", tz: str | None = None) -> str:
    """A one-counter site 'mpp' open 06:00–18:00 (in a zone where it is midday now) with these kiosks.

    For tests and benchmarks that drive a controller process on the real clock.
    """
    names = {"A": ("Perekaman KTP-el", "Dispendukcapil"), "B": ("Kartu Keluarga", "Dispendukcapil"),
             "C": ("Paspor", "Imigrasi")}
    lines = ["[sigap]", 'prefix = "sigap"', "", "[[sites]]", 'id = "mpp"', 'name = "MPP uji"',
             f'timezone = "{tz or midday_timezone()}"']
    for code in services:
        name, agency = names[code]
        lines += ["", "[[sites.services]]", f'code = "{code}"', f'name = "{name}"', f'agency = "{agency}"',
                  'open = "06:00"', 'close = "18:00"']
    codes = ", ".join(f'"{c}"' for c in services)
    lines += ["", "[[sites.counters]]", 'id = "1"', 'name = "Loket 1"', f"services = [{codes}]"]
    for k in kiosks:
        lines += ["", "[[devices]]", f'id = "{k}"', 'site = "mpp"', 'role = "kiosk"', f"services = [{codes}]"]
    return "\n".join(lines) + "\n"
