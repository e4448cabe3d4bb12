"""A real Mosquitto secured with what `sigap provision` writes: passwords, the ACL, the config snippet.

Every "cannot" is proved without sleeping: after the forbidden message, the same
client sends (or the controller sends it) one that is allowed; the broker keeps
one publisher's messages in order, so when the allowed one has arrived, the
forbidden one would have arrived before it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from controller.config import SiteConfig, parse_config
from controller.provision import CONTROLLER_ENV, CONTROLLER_USER, MOSQUITTO_CONF, provision
from simulator.board import wait_until
from simulator.fleet import Fleet
from tests.harness.broker import MosquittoBroker, free_port, wait_port
from tests.harness.controller import InProcessController, fixed_clock
from tests.harness.mqtt_peer import MqttPeer

SITE = """
[sigap]
prefix = "sigap"
public_url = "http://sigap.test"

[[sites]]
id = "mpp"
name = "MPP uji"
timezone = "Asia/Jakarta"

[[sites.services]]
code = "A"
name = "Perekaman KTP-el"
agency = "Dispendukcapil"
open = "08:00"
close = "15:00"

[[sites.counters]]
id = "1"
name = "Loket 1"
services = ["A"]

[[devices]]
id = "kiosk-01"
site = "mpp"
role = "kiosk"
services = ["A"]

[[devices]]
id = "kiosk-02"
site = "mpp"
role = "kiosk"
services = ["A"]
"""

MORNING = fixed_clock("2026-11-23T09:00:00+07:00")


@dataclass
class Secured:
    broker: MosquittoBroker
    cfg: SiteConfig
    passwords: dict[str, str]
    out: Path

    def peer(self, user: str, password: str | None = None, client_id: str | None = None) -> MqttPeer:
        """A client logged in as user (its own password unless one is given)."""
        return MqttPeer(self.broker.port, client_id or user, username=user,
                        password=self.passwords[user] if password is None else password)

    def url(self, user: str = CONTROLLER_USER) -> str:
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.broker.port}"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    """Mosquitto running the generated mosquitto.conf (its own port instead of 1883), passwd and acl."""
    cfg = parse_config(SITE)
    out = tmp_path / "provisioned"
    port = free_port()
    res = provision(cfg, out, broker=f"mqtt://127.0.0.1:{port}", broker_dir=str(out))
    snippet = "".join(
        line + "\n" for line in (out / MOSQUITTO_CONF).read_text().splitlines() if not line.startswith("listener ")
    )
    broker = MosquittoBroker(tmp_path / "broker", port=port, extra_conf=snippet, anonymous=False).start()
    try:
        yield Secured(broker, cfg, res.passwords, out)
    finally:
        broker.stop()


async def refused(peer: MqttPeer) -> str:
    """Connect, expecting the broker to refuse; the CONNACK's reason."""
    with pytest.raises(aiomqtt.MqttCodeError) as e:
        async with peer:
            pass
    return str(e.value.rc)


@pytest.mark.timeout(30)
async def test_board_logs_in_with_its_own_password_only(secured):
    async with secured.peer("kiosk-01") as kiosk:
        await kiosk.subscribe(kiosk.dev_topic("cmd/#"))
        await kiosk.press("A")
    # CONNACK 5, "not authorised": Mosquitto's answer to a bad login in MQTT 3.1.1
    # (paho names MQTT 3 return codes by their MQTT 5 reason).
    no = "Not authorized"
    assert await refused(secured.peer("kiosk-01", password="wrong")) == no
    assert await refused(secured.peer("kiosk-01", password=secured.passwords["kiosk-02"])) == no
    assert await refused(MqttPeer(secured.broker.port, "kiosk-01")) == no  # anonymous
    assert await refused(secured.peer("intruder", password="x")) == no


@pytest.mark.timeout(30)
async def test_board_cannot_read_another_boards_commands(secured):
    async with secured.peer(CONTROLLER_USER) as ctl, secured.peer("kiosk-02") as other:
        await other.subscribe(other.dev_topic("cmd/#"))
        await ctl.publish(ctl.dev_topic("cmd/show", "kiosk-02"), {"lines": ["RETAINED"]}, retain=True)
        async with secured.peer("kiosk-01") as kiosk:
            await kiosk.subscribe("sigap/v1/dev/kiosk-02/cmd/#", "sigap/v1/#", kiosk.dev_topic("cmd/#"))
            await ctl.publish(ctl.dev_topic("cmd/ticket", "kiosk-02"), {"re": 1, "ticket": "A001"})
            await ctl.publish(ctl.dev_topic("cmd/ticket", "kiosk-01"), {"re": 1, "ticket": "A002"})
            await kiosk.wait_for(kiosk.dev_topic("cmd/ticket"))
            await other.wait_for(other.dev_topic("cmd/ticket"))  # it was published, to kiosk-02
            assert {t for t in kiosk._received} == {"sigap/v1/dev/kiosk-01/cmd/ticket"}  # noqa: SLF001


@pytest.mark.timeout(30)
async def test_board_cannot_publish_as_another_board_or_as_the_controller(secured):
    async with secured.peer(CONTROLLER_USER) as ctl, secured.peer("kiosk-01") as kiosk:
        await ctl.subscribe("sigap/v1/#")
        await kiosk.publish(kiosk.dev_topic("evt/press", "kiosk-02"), {"boot": 1, "seq": 1, "key": "A"})
        await kiosk.publish(kiosk.dev_topic("state", "kiosk-02"), {"online": False, "boot": 9}, retain=True)
        await kiosk.publish(kiosk.dev_topic("cmd/ticket", "kiosk-02"), {"re": 1, "ticket": "Z999"})
        await kiosk.publish(kiosk.dev_topic("cmd/ticket"), {"re": 1, "ticket": "Z999"})
        await kiosk.publish("sigap/v1/ctl/state", {"online": False}, retain=True)
        await kiosk.publish("sigap/v1/site/mpp/queue", {"site": "mpp"}, retain=True)
        await kiosk.publish("elsewhere/x", "hi")
        marker = await kiosk.press("A")  # its own event: allowed
        await ctl.wait_for(kiosk.dev_topic("evt/press"), lambda m: m.data["seq"] == marker)
        assert set(ctl._received) == {"sigap/v1/dev/kiosk-01/evt/press"}  # noqa: SLF001
        assert len(ctl.messages("sigap/v1/dev/kiosk-01/evt/press")) == 1


@pytest.mark.timeout(30)
async def test_controller_reads_and_writes_everything_under_the_prefix(secured):
    async with secured.peer(CONTROLLER_USER) as ctl, secured.peer("kiosk-01") as kiosk:
        await ctl.subscribe("sigap/v1/#")
        await kiosk.subscribe("sigap/v1/ctl/state", kiosk.dev_topic("cmd/#"))
        await kiosk.birth("kiosk")
        await kiosk.press("A")
        await ctl.publish("sigap/v1/site/mpp/queue", {"site": "mpp"}, retain=True)
        await ctl.publish("sigap/v1/ctl/state", {"online": True, "version": "t"}, retain=True)
        await ctl.publish(ctl.dev_topic("cmd/ticket", "kiosk-01"), {"re": 1, "ticket": "A001"})
        for topic in ("sigap/v1/dev/kiosk-01/state", "sigap/v1/dev/kiosk-01/evt/press", "sigap/v1/site/mpp/queue",
                      "sigap/v1/ctl/state", "sigap/v1/dev/kiosk-01/cmd/ticket"):
            await ctl.wait_for(topic)
        await kiosk.wait_for("sigap/v1/ctl/state")
        await kiosk.wait_for(kiosk.dev_topic("cmd/ticket"))


@pytest.mark.timeout(30)
async def test_a_boards_credentials_cannot_take_over_another_boards_session(secured):
    async with secured.peer(CONTROLLER_USER) as ctl, secured.peer("kiosk-02") as victim:
        await victim.subscribe(victim.dev_topic("cmd/#"))
        # kiosk-01's credentials with kiosk-02's client id: without use_username_as_clientid
        # the broker would drop kiosk-02's connection in favour of this one.
        async with secured.peer("kiosk-01", client_id="kiosk-02"):
            await ctl.publish(ctl.dev_topic("cmd/ticket", "kiosk-02"), {"re": 1, "ticket": "A001"})
            await victim.wait_for(victim.dev_topic("cmd/ticket"))


@pytest.mark.timeout(60)
async def test_controller_with_provisioned_credentials_serves_a_virtual_kiosks_press(secured, tmp_path):
    ctl = InProcessController(secured.cfg, tmp_path / "sigap.db", secured.url(), clock=MORNING)
    ctrl = await ctl.start()
    fleet = Fleet(secured.cfg, "127.0.0.1", secured.broker.port, device_ids=["kiosk-01"])
    board = fleet.board("kiosk-01")
    board.settings["mqtt_password"] = secured.passwords["kiosk-01"]  # as `sigap deploy` writes it
    fleet.start()
    try:
        await board.device_ready(timeout=15)
        await board.press("svc_A")
        await wait_until(lambda: len(board.printed) >= 1, 15)
        assert board.printed[0]["double"] == ["A001"]
        # A second kiosk (a test peer with its own provisioned password) gets its answer too.
        async with secured.peer("kiosk-02") as kiosk2:
            await kiosk2.subscribe(kiosk2.dev_topic("cmd/ticket"))
            seq = await kiosk2.press("A")
            answer = await kiosk2.wait_for(kiosk2.dev_topic("cmd/ticket"), lambda m: m.data.get("re") == seq)
            assert answer.data["ticket"] == "A002"
        assert ctrl.bus.is_connected
    finally:
        await fleet.stop()
        await ctl.stop()


@pytest.mark.timeout(30)
async def test_a_virtual_board_with_a_wrong_password_is_refused_and_says_why(secured):
    fleet = Fleet(secured.cfg, "127.0.0.1", secured.broker.port, device_ids=["kiosk-01"])
    board = fleet.board("kiosk-01")
    board.settings["mqtt_password"] = secured.passwords["kiosk-02"]
    fleet.start()
    try:
        await wait_until(lambda: board.device is not None
                         and getattr(board.device.mqtt.last_error, "code", None) == 5, 15)  # CONNACK 5
        assert not board.device.mqtt.isconnected()
    finally:
        await fleet.stop()


@pytest.mark.timeout(60)
async def test_controller_process_logs_in_with_controller_env_and_never_logs_the_password(secured, tmp_path):
    conf = tmp_path / "sites.toml"
    conf.write_text(SITE)
    env_line = next(line for line in (secured.out / CONTROLLER_ENV).read_text().splitlines()
                    if line.startswith("SIGAP_BROKER="))
    web = free_port()
    log = tmp_path / "controller.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(  # no --broker: it comes from SIGAP_BROKER, as with systemd's EnvironmentFile
            [sys.executable, "-m", "controller.cli", "controller", "--config", str(conf),
             "--db", f"sqlite:///{tmp_path / 'sigap.db'}", "--listen", f"127.0.0.1:{web}"],
            stdout=fh, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "SIGAP_BROKER": env_line.split("=", 1)[1]}, start_new_session=True,
        )
    try:
        async with secured.peer("kiosk-02") as kiosk:
            await kiosk.subscribe("sigap/v1/ctl/state", kiosk.dev_topic("cmd/ticket"))
            await kiosk.wait_for("sigap/v1/ctl/state", lambda m: m.data.get("online") is True, timeout=30)
            seq = await kiosk.press("A")
            answer = await kiosk.wait_for(kiosk.dev_topic("cmd/ticket"), lambda m: m.data.get("re") == seq)
            assert "ticket" in answer.data or answer.data["error"] == "closed"  # real clock: maybe after hours

        def health() -> dict[str, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/health", timeout=5) as r:
                return dict(json.load(r))

        await asyncio.to_thread(wait_port, web, True, 30)
        assert (await asyncio.to_thread(health))["broker"] == "connected"
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 15)
    text = log.read_text(errors="replace")
    assert f"broker mqtt://controller:***@127.0.0.1:{secured.broker.port}" in text
    assert secured.passwords[CONTROLLER_USER] not in text


@pytest.mark.timeout(30)
async def test_rotating_a_password_and_reloading_the_broker_cuts_off_only_that_board(secured):
    async with secured.peer("kiosk-01") as rotated, secured.peer("kiosk-02") as kept, \
            secured.peer(CONTROLLER_USER) as ctl:
        await kept.subscribe(kept.dev_topic("cmd/#"))
        res = provision(secured.cfg, secured.out, rotate=["kiosk-01"], broker_dir=str(secured.out))
        assert res.rotated == ["kiosk-01"]
        secured.broker.reload()
        assert rotated._reader is not None  # noqa: SLF001
        await asyncio.wait_for(asyncio.shield(rotated._reader), 10)  # noqa: SLF001 - the broker closed it
        await ctl.publish(ctl.dev_topic("cmd/ticket", "kiosk-02"), {"re": 1, "ticket": "A001"})
        await kept.wait_for(kept.dev_topic("cmd/ticket"))  # the others stay connected
    assert await refused(secured.peer("kiosk-01")) == "Not authorized"  # the old password
    async with secured.peer("kiosk-01", password=res.passwords["kiosk-01"]):
        pass
    assert "does not contain '%c' or '%u'" not in secured.broker.log_text()  # the ACL loads without warnings


@pytest.mark.timeout(60)
async def test_sigap_simulate_logs_its_boards_in_with_the_provisioned_secrets(secured, tmp_path):
    conf = tmp_path / "sites.toml"
    conf.write_text(SITE)
    log = tmp_path / "simulate.log"
    async with secured.peer(CONTROLLER_USER, client_id="watcher") as watcher:
        await watcher.subscribe("sigap/v1/dev/+/state")
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "simulate", "--config", str(conf),
                 "--broker", f"mqtt://127.0.0.1:{secured.broker.port}", "--secrets", str(secured.out / "secrets.toml")],
                stdout=fh, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2], start_new_session=True,
            )
        try:
            for dev in ("kiosk-01", "kiosk-02"):  # each board's birth: it logged in with its own password
                m = await watcher.wait_for(f"sigap/v1/dev/{dev}/state", lambda m: m.data.get("online") is True,
                                           timeout=30)
                assert m.data["role"] == "kiosk"
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()
    for password in secured.passwords.values():
        assert password not in log.read_text()


@pytest.mark.timeout(90)
async def test_sigap_demo_runs_on_a_provisioned_broker_with_its_secrets(secured, tmp_path):
    """The demo's own site on an external secured broker: its controller logs in with the controller's
    credentials, its boards with theirs (the demo config's devices are provisioned here for it)."""
    from controller.config import DEMO_CONFIG, load_config

    demo = tmp_path / "demo-secrets"
    res = provision(load_config(DEMO_CONFIG), demo, broker=f"mqtt://127.0.0.1:{secured.broker.port}",
                    broker_dir=str(demo))
    (secured.out / "passwd").write_text((demo / "passwd").read_text())  # the broker learns the demo's accounts
    (secured.out / "acl").write_text((demo / "acl").read_text())
    secured.broker.reload()
    web = free_port()
    url = f"mqtt://{CONTROLLER_USER}:{res.passwords[CONTROLLER_USER]}@127.0.0.1:{secured.broker.port}"
    log = tmp_path / "demo.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--broker", url, "--secrets", str(demo / "secrets.toml"),
             "--listen", f"127.0.0.1:{web}", "--data-dir", str(tmp_path / "data"), "--sim-control", "off"],
            stdout=fh, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2], start_new_session=True,
        )
    try:
        await asyncio.to_thread(wait_port, web, True, 60)

        def sensors() -> list[dict[str, object]]:
            with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/sensors", timeout=5) as r:
                return list(json.load(r))

        async def every_sensor_reporting() -> None:  # readings from water boards that logged in themselves
            while not (s := await asyncio.to_thread(sensors)) or any(x["level_mm"] is None for x in s):
                await asyncio.sleep(0.2)

        await asyncio.wait_for(every_sensor_reporting(), 60)
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0 and "Traceback" not in text, text[-2000:]
    assert res.passwords[CONTROLLER_USER] not in text
