"""A virtual kiosk board (the real firmware, printer on a virtual UART) against a
real broker and the real controller: what comes out of the printer.

The printer's bytes are decoded as a 58 mm ESC/POS printer would print them
(simulator.hw.decode_escpos), so the assertions read the paper: the big
number, the service, the QR code's payload.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.config import parse_config
from protocol import wire
from simulator.board import VirtualBoard, wait_until
from simulator.fleet import Fleet
from tests.harness.controller import InProcessController, fixed_clock
from tests.harness.mqtt_peer import MqttPeer

SITE = """
[sigap]
prefix = "sigap"
public_url = "http://sigap.test"

[[sites]]
id = "blitar-mpp"
name = "Mal Pelayanan Publik Kota Blitar"
timezone = "Asia/Jakarta"

[[sites.services]]
code = "A"
name = "Perekaman KTP-el"
agency = "Dispendukcapil"
open = "08:00"
close = "15:00"

[[sites.services]]
code = "D"
name = "Paspor"
agency = "Imigrasi"
open = "13:00"
close = "15:00"

[[sites.counters]]
id = "1"
name = "Loket 1"
services = ["A", "D"]

[[devices]]
id = "kiosk-01"
site = "blitar-mpp"
role = "kiosk"
services = ["A", "D"]
"""

MORNING = fixed_clock("2026-11-23T09:00:00+07:00")  # A open, D (13:00-15:00) closed


@pytest.fixture
async def kiosk(broker, tmp_path):
    """The controller and one virtual kiosk on a real broker, plus a peer watching the kiosk's topics."""
    cfg = parse_config(SITE)
    ctl = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=MORNING)
    ctrl = await ctl.start()
    fleet = Fleet(cfg, "127.0.0.1", broker.port)
    fleet.start()
    board = fleet.board("kiosk-01")
    try:
        await board.device_ready(timeout=10)
        async with MqttPeer(broker.port, "test-watch") as peer:
            await peer.subscribe(peer.dev_topic("evt/press", "kiosk-01"), peer.dev_topic("cmd/ticket", "kiosk-01"))
            yield ctrl, board, peer
    finally:
        await fleet.stop()
        await ctl.stop()


def token_of(ctrl: Any, label: str) -> str:
    return next(t.token for t in ctrl.queues.sites["blitar-mpp"].tickets() if t.label == label)


async def printed(board: VirtualBoard, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    await wait_until(lambda: len(board.printed) >= n, timeout)
    return board.printed


@pytest.mark.timeout(30)
async def test_press_prints_one_ticket_matching_the_controllers_record(kiosk):
    ctrl, board, peer = kiosk
    await board.press("svc_A")
    slip = (await printed(board, 1))[0]
    assert slip["double"] == ["A001"]  # the number, bold and double size
    assert "A001" in slip["bold"]
    assert "Perekaman KTP-el" in slip["lines"] and "Dispendukcapil" in slip["lines"]
    assert "23 Nov 2026 09:00 WIB" in slip["lines"]
    assert "Di depan Anda: 0 orang" in slip["lines"]
    assert slip["qr"] == f"http://sigap.test/t/{token_of(ctrl, 'A001')}"
    assert [q for _, q in slip["qr_printed"]] == [slip["qr"]] and slip["cuts"] == 1
    assert board.display.lines[0] == "A001"

    # The same answer again (a QoS 1 duplicate, an answer to a resend) prints nothing;
    # the next press proves it by coming out right after the first ticket.
    answer = (await peer.wait_for(peer.dev_topic("cmd/ticket", "kiosk-01"))).data
    await peer.publish(peer.dev_topic("cmd/ticket", "kiosk-01"), answer)
    await board.press("svc_A")
    slips = await printed(board, 2)
    assert [s["double"] for s in slips] == [["A001"], ["A002"]]
    assert board.device.role.repeats == 1


@pytest.mark.timeout(40)
async def test_kiosk_whose_answer_is_lost_sends_the_same_press_again_and_prints_once(kiosk, monkeypatch):
    ctrl, board, peer = kiosk
    press_topic = peer.dev_topic("evt/press", "kiosk-01")
    ticket_topic = peer.dev_topic("cmd/ticket", "kiosk-01")
    send = ctrl.bus.send
    cut = asyncio.Event()

    def cut_then_send(topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        # The controller answers just after the kiosk's WiFi died: the answer is lost.
        if topic == ticket_topic and not cut.is_set():
            board.set_wifi(False)
            cut.set()
        send(topic, payload, retain, qos)

    monkeypatch.setattr(ctrl.bus, "send", cut_then_send)
    await board.press("svc_A")
    await asyncio.wait_for(cut.wait(), 10)
    await peer.wait_for(ticket_topic)  # the answer went out ...
    await board.wait_offline()
    assert board.printed == []  # ... and never reached the kiosk

    board.set_wifi(True)
    slip = (await printed(board, 1, timeout=20))[0]
    assert slip["double"] == ["A001"]
    presses = [m.data for m in peer.messages(press_topic)]
    assert len(presses) >= 2 and all((p["boot"], p["seq"]) == (presses[0]["boot"], presses[0]["seq"]) for p in presses)
    assert board.device.role.resent >= 1
    assert len(ctrl.queues.sites["blitar-mpp"].tickets()) == 1  # one citizen, one ticket

    await board.press("svc_A")  # the next citizen: the first ticket was not printed again meanwhile
    slips = await printed(board, 2)
    assert [s["double"] for s in slips] == [["A001"], ["A002"]]


@pytest.mark.timeout(30)
async def test_refusal_prints_the_reason_in_indonesian(kiosk):
    ctrl, board, peer = kiosk
    await board.press("svc_D")  # Paspor opens at 13:00
    slip = (await printed(board, 1))[0]
    assert "Layanan sedang tutup" in slip["lines"] and "MAAF" in slip["bold"]
    assert slip["double"] == [] and slip["qr"] is None
    assert board.display.lines == ["MAAF", "Layanan sedang tutup"]
    answer = (await peer.wait_for(peer.dev_topic("cmd/ticket", "kiosk-01"))).data
    assert answer == {"re": 1, "error": "closed"} and wire.validate_ticket(answer)
