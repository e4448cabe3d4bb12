"""`sigap deploy` flashes a blank virtual board through the real mpremote, and the board runs what it got.

The counter board starts blank (empty flash, it sits at the REPL). The deploy
copies the firmware's sources and its settings.json over the board's serial
port (socket://); the reset boots the board from exactly those files, it joins
the real broker and its NEXT key calls the ticket a kiosk board took from the
real controller. A second deploy copies nothing. Deploying from a copy of the
repository with one firmware constant changed changes what the board shows:
the simulator runs the deployed files, not its own copy of the firmware.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from controller.config import parse_config
from simulator.board import wait_until
from simulator.fleet import Fleet
from simulator.repl import SerialBoard
from simulator.serial_port import PtyPort, TcpPort
from tests.harness.broker import MosquittoBroker, free_port
from tests.harness.controller import InProcessController, fixed_clock
from tests.system.test_walking_skeleton import SKELETON

REPO = Path(__file__).resolve().parents[2]
OPEN_HOURS = fixed_clock("2026-11-23T09:00:00+07:00")
# `sigap deploy` refuses a loopback broker address (a real board could not reach
# it), so the broker also listens on 127.0.0.2, which stands for the LAN here.
LAN_HOST = "127.0.0.2"


@pytest.fixture
def lan_broker(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, int]]:
    """Mosquitto on 127.0.0.1 (controller, fleet) and on the 'LAN' address (the deployed board)."""
    lan_port = free_port()
    b = MosquittoBroker(tmp_path / "broker", extra_conf=f"listener {lan_port} {LAN_HOST}\n").start()
    try:
        yield b, lan_port
    finally:
        b.stop()


@pytest.fixture
def site(tmp_path: Path, lan_broker: tuple[MosquittoBroker, int]) -> tuple[Path, Path]:
    """(site config, secrets file) for `sigap deploy`."""
    config = tmp_path / "site.toml"
    config.write_text(SKELETON)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        f'[wifi]\nssid = "virtual"\npassword = "tidak-dipakai"\n\n[broker]\nhost = "{LAN_HOST}"\nport = {lan_broker[1]}\n'
    )
    return config, secrets


@pytest.fixture
async def blank_counter() -> AsyncIterator[tuple[SerialBoard, str]]:
    """A blank virtual board on a TCP serial port: (board, socket://...)."""
    board = SerialBoard("loket-01")
    board.start()
    port = await TcpPort(board).start()
    try:
        yield board, port.name
    finally:
        await port.close()
        await board.stop()


@pytest.fixture
async def blank_counter_on_pty() -> AsyncIterator[tuple[SerialBoard, str]]:
    """A blank virtual board on a pty: (board, /dev/pts/N)."""
    board = SerialBoard("loket-01")
    board.start()
    port = PtyPort(board).start()
    try:
        yield board, port.name
    finally:
        await port.close()
        await board.stop()


async def sigap_deploy(config: Path, secrets: Path, port: str, repo: Path = REPO, timeout: float = 240) -> str:
    """`sigap deploy --device loket-01` as its own process (from `repo`); its output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli", "deploy", "--device", "loket-01", "--config", str(config),
        "--secrets", str(secrets), "--port", port,
        cwd=repo, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode()
    assert proc.returncode == 0, text
    return text


def _summary(out: str) -> tuple[int, int, int]:
    m = re.search(r"^(\d+) files? copied \([^)]*\), (\d+) removed, (\d+) unchanged; board reset$", out, re.M)
    assert m, out
    return int(m[1]), int(m[2]), int(m[3])


async def _showed(board: SerialBoard, lines: list[str], timeout: float = 15) -> None:
    """The running firmware's display has shown `lines` since it booted."""
    b = await board.wait_running(timeout)
    await wait_until(lambda: lines in b.display.history, timeout)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_deploy_flashes_a_blank_board_that_then_calls_the_next_ticket(
    lan_broker, site, blank_counter, tmp_path: Path
) -> None:
    broker, _ = lan_broker
    config, secrets = site
    counter, port = blank_counter
    await counter.wait_console(">>> ")
    assert not counter.flash.exists("/main.py") and counter.boots == 0

    cfg = parse_config(SKELETON)
    ctl = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=OPEN_HOURS)
    ctrl = await ctl.start()
    fleet = Fleet(cfg, "127.0.0.1", broker.port, device_ids=["kiosk-01", "disp-01"])
    fleet.start()
    try:
        out = await sigap_deploy(config, secrets, port)
        assert "copying the .py sources" in out and "no manifest from an earlier deploy" in out
        assert "COPY  /lib/firmware/core/runtime.py" in out and "WRITE /settings.json" in out
        copied, removed, unchanged = _summary(out)
        assert copied > 30 and removed == 0 and unchanged == 0
        for path in ("/main.py", "/settings.json", "/.sigap-manifest.json", "/lib/protocol/wire.py"):
            assert counter.flash.exists(path), path
        assert counter.flash.read_bytes("/lib/firmware/roles/counter.py") == (
            REPO / "firmware/roles/counter.py"
        ).read_bytes()

        # The reset booted it from those files: online, showing its own counter name.
        await _showed(counter, ["SIGAP", "LOKET 1"])
        board = counter.board
        assert board is not None
        await board.wait_led("online", timeout=15)
        assert counter.boots == 1 and board.storage.read("boot") == "1"

        kiosk = fleet.board("kiosk-01")
        await kiosk.device_ready(timeout=10)
        await kiosk.press("svc_A")
        await kiosk.display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=10)
        await board.press("next")
        lines = await fleet.board("disp-01").display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=10)
        assert lines == ["A001", "LOKET 1"]
        await board.display.wait_for(lambda lines: lines[:1] == ["A001"], timeout=10)
        assert ctrl.queues.snapshot("blitar-mpp")["counters"]["1"]["serving"] == "A001"

        # Deploy again: the manifest on the board matches, nothing is copied.
        out = await sigap_deploy(config, secrets, port)
        assert re.search(r"^board: \d+ files from the last deploy$", out, re.M), out
        assert "COPY" not in out and "WRITE" not in out
        copied, removed, unchanged = _summary(out)
        assert (copied, removed) == (0, 0) and unchanged > 30
        await counter.wait_running(15)
        assert counter.boots == 2
    finally:
        await fleet.stop()
        await ctl.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_board_runs_the_deployed_files_not_the_simulators_copy(
    site, blank_counter_on_pty, tmp_path: Path
) -> None:
    config, secrets = site
    counter, port = blank_counter_on_pty  # a pty this time (mpremote reads it without polling: faster)
    # A copy of the repository's board code with one constant changed: the
    # counter's name on its display ("LOKET 1" becomes "KASIR 1").
    fork = tmp_path / "fork"
    for top in ("firmware", "protocol"):
        shutil.copytree(REPO / top, fork / top, ignore=shutil.ignore_patterns("__pycache__"))
    role = fork / "firmware/roles/counter.py"
    text = role.read_text()
    assert text.count('"LOKET "') == 1
    role.write_text(text.replace('"LOKET "', '"KASIR "'))

    out = await sigap_deploy(config, secrets, port, repo=fork)
    assert _summary(out)[0] > 30
    await _showed(counter, ["SIGAP", "KASIR 1"])

    # Deploying the repository's own firmware copies that one file back, and the board follows it.
    out = await sigap_deploy(config, secrets, port)
    assert re.findall(r"^COPY  (\S+)", out, re.M) == ["/lib/firmware/roles/counter.py"]
    assert _summary(out)[:2] == (1, 0)
    await wait_until(lambda: counter.boots == 2, 15)
    await _showed(counter, ["SIGAP", "LOKET 1"])
    assert ["SIGAP", "KASIR 1"] not in (counter.board.display.history if counter.board else [])
