"""A small MPP hall for system tests: site config, the real controller, and test peers.

Three services (C has a daily quota of 3), three counters, two kiosks, a
counter board and a number display per counter, and a hall display. The
controller runs in-process with an injected clock and a real SQLite file; the
boards are `MqttPeer`s pressing with exact `(boot, seq)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from controller.config import SiteConfig, parse_config
from controller.service import Controller
from tests.harness.broker import MosquittoBroker, free_port
from tests.harness.controller import InProcessController
from tests.harness.mqtt_peer import MqttPeer

SITE = "mpp-uji"
OPEN_HOURS = "2026-11-23T09:00:00+07:00"
"""A Monday morning in Blitar: every service is open."""
PUBLIC_URL = "http://sigap.test"

_TOML = """
[sigap]
prefix = "sigap"
public_url = "{public_url}"

[[sites]]
id = "{site}"
name = "MPP Uji"
timezone = "Asia/Jakarta"

[[sites.services]]
code = "A"
name = "Perekaman KTP-el"
agency = "Dispendukcapil"
open = "{a_open}"
close = "{a_close}"
sla_min = 10

[[sites.services]]
code = "B"
name = "Kartu Keluarga"
agency = "Dispendukcapil"
open = "08:00"
close = "15:00"

[[sites.services]]
code = "C"
name = "Pajak Kendaraan"
agency = "Samsat"
open = "08:00"
close = "15:00"
quota = 3

[[sites.counters]]
id = "1"
name = "Loket 1"
services = ["A"]

[[sites.counters]]
id = "2"
name = "Loket 2"
services = ["A", "B"]

[[sites.counters]]
id = "3"
name = "Loket 3"
services = ["B", "C"]

[[sites]]
id = "kota-uji"
name = "Kota Uji"

[[devices]]
id = "kiosk-01"
site = "{site}"
role = "kiosk"
services = ["A", "B", "C"]

[[devices]]
id = "kiosk-02"
site = "{site}"
role = "kiosk"
services = ["A", "B"]

[[devices]]
id = "loket-01"
site = "{site}"
role = "counter"
counter = "1"

[[devices]]
id = "loket-02"
site = "{site}"
role = "counter"
counter = "2"

[[devices]]
id = "loket-03"
site = "{site}"
role = "counter"
counter = "3"

[[devices]]
id = "disp-01"
site = "{site}"
role = "display"
counters = ["1"]

[[devices]]
id = "disp-02"
site = "{site}"
role = "display"
counters = ["2"]

[[devices]]
id = "disp-03"
site = "{site}"
role = "display"
counters = ["3"]

[[devices]]
id = "hall-01"
site = "{site}"
role = "display"
hall = true
"""


def mpp_config(a_open: str = "08:00", a_close: str = "15:00") -> SiteConfig:
    """The test hall's site config; service A's hours can be changed."""
    return parse_config(_TOML.format(site=SITE, public_url=PUBLIC_URL, a_open=a_open, a_close=a_close))


def topic(device_id: str, kind: str) -> str:
    """`sigap/v1/dev/{id}/{kind}`"""
    return f"sigap/v1/dev/{device_id}/{kind}"


QUEUE_TOPIC = f"sigap/v1/site/{SITE}/queue"
CTL_TOPIC = "sigap/v1/ctl/state"


async def until_handled(ctrl: Controller, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until cond() holds, re-checked after every message the controller handles."""

    async def _wait() -> None:
        while not cond():
            await ctrl.wait_handled(ctrl.handled + 1, timeout)

    await asyncio.wait_for(_wait(), timeout)


def metric(ctrl: Controller, name: str, **labels: str) -> float:
    """A sample's value from the controller's Prometheus text (0 when absent)."""
    ctrl.refresh_gauges()
    text = ctrl.metrics.render().decode()
    return metric_in(text, name, **labels)


def metric_in(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text format (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


class Hall:
    """The running controller plus the peers a test opened; see `running_hall`."""

    def __init__(self, broker: MosquittoBroker, db_path: pathlib.Path, cfg: SiteConfig,
                 clock: Callable[[], datetime], listen: str | None):
        self.broker = broker
        self.db_path = db_path
        self.cfg = cfg
        self.clock = clock
        self.listen = listen
        self.ctl: InProcessController | None = None
        self.peers: dict[str, MqttPeer] = {}
        self._stack = contextlib.AsyncExitStack()

    @property
    def ctrl(self) -> Controller:
        """The running Controller object."""
        if self.ctl is None or self.ctl.ctrl is None:
            raise RuntimeError("controller not running")
        return self.ctl.ctrl

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT of the controller's web server."""
        if self.listen is None:
            raise RuntimeError("started without listen")
        return f"http://{self.listen}"

    async def start_controller(self) -> Controller:
        """Start the controller (again) on the same database."""
        self.ctl = InProcessController(self.cfg, self.db_path, self.broker.url, clock=self.clock, listen=self.listen)
        return await self.ctl.start()

    async def stop_controller(self) -> None:
        """Clean shutdown of the controller (the peers stay connected)."""
        if self.ctl is not None:
            await self.ctl.stop()
            self.ctl = None

    async def peer(self, device_id: str, boot: int = 1, subscribe_cmds: bool = True, **kw: Any) -> MqttPeer:
        """A connected peer with client id device_id, subscribed to its own cmd/# (like a board)."""
        p = await self._stack.enter_async_context(MqttPeer(self.broker.port, device_id, boot=boot, **kw))
        if subscribe_cmds:
            await p.subscribe(p.dev_topic("cmd/#"))
        self.peers[device_id] = p
        return p

    async def applied(self, device_id: str, seq: int, boot: int = 1, timeout: float = 10.0) -> None:
        """Wait until the controller has applied the event (device_id, boot, seq)."""
        await until_handled(self.ctrl, lambda: self.ctrl.store.applied(device_id, boot, seq)[0], timeout)

    async def ticket(self, kiosk: MqttPeer, key: str, timeout: float = 10.0, **extra: Any) -> dict[str, Any]:
        """Press a service key on a kiosk peer and return the kiosk answer."""
        t = kiosk.dev_topic("cmd/ticket")
        seq = await kiosk.press(key, **extra)
        m = await kiosk.wait_for(t, lambda m: m.data.get("re") == seq, timeout)
        data: dict[str, Any] = m.data
        return data

    async def counter(self, board: MqttPeer, key: str, **extra: Any) -> None:
        """Press a counter key and wait until the controller applied it."""
        seq = await board.press(key, **extra)
        await self.applied(board.client_id, seq, board.boot)

    def rows(self, sql: str = "SELECT * FROM tickets ORDER BY ticket_id", **params: Any) -> list[dict[str, Any]]:
        """Rows of the controller's SQLite file."""
        engine = sa.create_engine(f"sqlite:///{self.db_path}")
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
        finally:
            engine.dispose()

    async def close(self) -> None:
        await self._stack.aclose()
        await self.stop_controller()


@contextlib.asynccontextmanager
async def running_hall(broker: MosquittoBroker, tmp_path: pathlib.Path, clock: Callable[[], datetime],
                       cfg: SiteConfig | None = None, http: bool = False) -> AsyncIterator[Hall]:
    """The controller on a real broker and SQLite file; peers are closed at the end."""
    listen = f"127.0.0.1:{free_port()}" if http else None
    hall = Hall(broker, tmp_path / "sigap.db", cfg or mpp_config(), clock, listen)
    await hall.start_controller()
    try:
        yield hall
    finally:
        await hall.close()
