"""A private Mosquitto broker on a free loopback port, for tests and benchmarks.

The broker can be killed and restarted on the same port inside a test, to prove
that boards and controller ride through a broker restart.
"""

from __future__ import annotations

import os
import pathlib
import resource
import shutil
import signal
import socket
import subprocess
import time

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or a clear error naming the fix."""
    for name in MOSQUITTO_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("mosquitto binary not found: run `make test` (it installs Debian's package)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, up: bool, timeout: float = 10.0) -> None:
    """Block until the port accepts connections (up) or refuses them (not up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                state = True
        except OSError:
            state = False
        if state == up:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"port {port} did not become {'open' if up else 'closed'}")
        time.sleep(0.02)


def _raise_open_files_limit() -> None:
    """In the broker's child process: open-file limit soft -> hard (one descriptor per client).
    In production the service unit says it: `LimitNOFILE=65536` (simulator/README.md)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class MosquittoBroker:
    """One private mosquitto process with its own config, data dir and log.

    `extra_conf` is appended to the config (e.g. `password_file`, `acl_file`);
    `anonymous=False` refuses clients without a valid username and password.
    """

    def __init__(self, workdir: pathlib.Path, port: int | None = None, extra_conf: str = "",
                 anonymous: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.binary = find_mosquitto()
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        (self.workdir / "data").mkdir(exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            # Without TCP_NODELAY, QoS 1 round trips stall on Nagle + delayed ACK
            # (~110 msg/s instead of ~8,400 msg/s between two paho clients).
            "set_tcp_nodelay true\n"
            "persistence true\n"
            f"persistence_location {self.workdir / 'data'}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            # No cap on clients (the fleet bench connects thousands of boards); the
            # process's open-file limit is raised too (see _raise_open_files_limit).
            "max_connections -1\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            "connection_messages true\n"
            # Started as root, mosquitto drops to user "mosquitto", which cannot
            # write the test's private dirs (log, persistence): stay root there.
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:PORT"""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoBroker:
        """Start the broker and wait until it accepts connections."""
        if self.proc and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_raise_open_files_limit,
        )
        try:
            wait_port(self.port, up=True)
        except TimeoutError:
            err = b""
            if self.proc.poll() is not None and self.proc.stderr:
                err = self.proc.stderr.read()
            raise RuntimeError(f"mosquitto did not start on {self.port}: {err.decode()[-500:]}") from None
        return self

    def kill(self) -> None:
        """SIGKILL the broker, as a power cut would; clients see their TCP drop."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        wait_port(self.port, up=False)

    def stop(self) -> None:
        """Stop the broker cleanly (SIGTERM), saving its persistence file."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def reload(self) -> None:
        """SIGHUP: the broker re-reads its password and ACL files (and drops clients they no longer admit)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGHUP)

    def restart(self) -> None:
        """Kill, then start again on the same port."""
        self.kill()
        self.start()

    def log_text(self) -> str:
        """What the broker logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""
