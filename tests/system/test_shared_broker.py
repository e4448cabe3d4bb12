"""Two installations with different topic prefixes on one broker (CONTRACT §1: `prefix` is configurable)."""

from __future__ import annotations

import pytest

from controller.config import parse_config
from tests.harness.controller import InProcessController, kiosk_site_toml
from tests.harness.mqtt_peer import MqttPeer

pytestmark = pytest.mark.timeout(60)


async def test_controllers_with_different_prefixes_do_not_take_over_each_others_session(broker, tmp_path):
    url = f"mqtt://127.0.0.1:{broker.port}"
    toml = kiosk_site_toml(["kiosk-01"])
    first = InProcessController(parse_config(toml), tmp_path / "first.db", url)
    second = InProcessController(parse_config(toml.replace('prefix = "sigap"', 'prefix = "kota2"')),
                                 tmp_path / "second.db", url)
    a = await first.start()
    try:
        b = await second.start()  # the broker drops a session whose client id connects again
        try:
            for prefix in ("sigap", "kota2"):
                async with MqttPeer(broker.port, "kiosk-01", prefix=prefix) as kiosk:
                    await kiosk.subscribe(kiosk.dev_topic("cmd/ticket"))
                    seq = await kiosk.press("A")
                    answer = await kiosk.wait_for(kiosk.dev_topic("cmd/ticket"), lambda m, seq=seq: m.data["re"] == seq)
                    assert answer.data["ticket"] == "A001"
            assert (a.bus.connects, b.bus.connects) == (1, 1)
        finally:
            await second.stop()
    finally:
        await first.stop()


async def test_publishing_every_boards_retained_output_at_connect_logs_no_warnings(broker, tmp_path, caplog):
    from controller.config import DEMO_CONFIG, load_config

    ctl = InProcessController(load_config(DEMO_CONFIG), tmp_path / "demo.db", f"mqtt://127.0.0.1:{broker.port}")
    with caplog.at_level("WARNING"):
        ctrl = await ctl.start()
        try:
            await ctrl.republish_all()  # as at every (re)connect: 31 boards' show/siren/config at once
            await ctrl.bus.drain()
        finally:
            await ctl.stop()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
