"""Bad input from boards, through the real broker: never a crash, never a ticket,
logged once with a stable reason and counted in `sigap_mqtt_rejected_total`.

Each case publishes one bad message, then a valid kiosk press. The controller
handles messages in arrival order, so once the valid press is answered the bad
one has been dealt with; the valid press also proves the controller still works.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import OPEN_HOURS, SITE, metric, running_hall, topic

pytestmark = pytest.mark.timeout(30)

PRESS = {"boot": 1, "seq": 100, "key": "A"}

# (case id, device publishing, topic kind or full topic, payload, reason counted)
CASES: list[tuple[str, str, str, Any, str]] = [
    ("malformed_json", "kiosk-01", "evt/press", b'{"boot": 1, "seq": ', "bad_json"),
    ("not_utf8", "kiosk-01", "evt/press", b"\xff\xfe\x00", "bad_utf8"),
    ("not_an_object", "kiosk-01", "evt/press", b"[1, 2, 3]", "not_object"),
    ("seq_as_string", "kiosk-01", "evt/press", {"boot": 1, "seq": "100", "key": "A"}, "type:seq"),
    ("boot_as_bool", "kiosk-01", "evt/press", {"boot": True, "seq": 100, "key": "A"}, "type:boot"),
    ("prio_as_int", "kiosk-01", "evt/press", {**PRESS, "prio": 1}, "type:prio"),
    ("seq_zero", "kiosk-01", "evt/press", {**PRESS, "seq": 0}, "range:seq"),
    ("missing_seq", "kiosk-01", "evt/press", {"boot": 1, "key": "A"}, "missing:seq"),
    ("missing_key", "kiosk-01", "evt/press", {"boot": 1, "seq": 100}, "missing:key"),
    ("oversized", "kiosk-01", "evt/press", {**PRESS, "pad": "x" * 1100}, "too_large"),
    ("unknown_device", "stranger-01", "evt/press", PRESS, "unknown_device"),
    ("kiosk_key_from_counter", "loket-01", "evt/press", PRESS, "value:key"),
    ("counter_key_from_kiosk", "kiosk-01", "evt/press", {**PRESS, "key": "next"}, "value:key"),
    ("rating_from_kiosk", "kiosk-01", "evt/rating", {"boot": 1, "seq": 100, "score": 4}, "wrong_role"),
    ("press_from_display", "disp-01", "evt/press", {**PRESS, "key": "next"}, "bad_role"),
    ("unknown_counter_key", "loket-01", "evt/press", {**PRESS, "key": "jump"}, "value:key"),
    ("transfer_without_to", "loket-01", "evt/press", {**PRESS, "key": "transfer"}, "missing:to"),
    ("transfer_to_bad_code", "loket-01", "evt/press", {**PRESS, "key": "transfer", "to": "b"}, "value:to"),
    ("bad_state", "kiosk-01", "state", {"online": "yes", "boot": 1}, "type:online"),
    ("unknown_event_topic", "kiosk-01", "sigap/v1/dev/kiosk-01/evt/coffee", PRESS, "bad_topic"),
    ("bad_device_id_in_topic", "kiosk-01", "sigap/v1/dev/Kiosk_01/evt/press", PRESS, "bad_device_id"),
    ("unknown_service_code", "kiosk-01", "evt/press", {**PRESS, "key": "Z"}, "unknown_service"),
]


@pytest.fixture
async def hall(broker, tmp_path):
    async with running_hall(broker, tmp_path, SettableClock(OPEN_HOURS)) as h:
        yield h


def rejected(ctrl: Any) -> dict[str, float]:
    """Every reason counted in sigap_mqtt_rejected_total."""
    text = ctrl.metrics.render().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("sigap_mqtt_rejected_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('reason="', 1)[1].rstrip('"}')] = float(value)
    return out


@pytest.mark.parametrize(("device", "where", "payload", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_message_is_dropped_logged_once_and_counted(hall, caplog, device, where, payload, reason):
    caplog.set_level(logging.INFO)
    ctrl = hall.ctrl
    kiosk = await hall.peer("kiosk-01", subscribe_cmds=False)
    await kiosk.subscribe(topic("kiosk-01", "cmd/ticket"))
    sender = kiosk if device == "kiosk-01" else await hall.peer(device)
    assert (await hall.ticket(kiosk, "A"))["ticket"] == "A001"
    before = rejected(ctrl)
    caplog.clear()

    where = where if "/" in where and where.startswith("sigap/") else topic(device, where)
    await sender.publish(where, payload)
    answer = await hall.ticket(kiosk, "A")  # handled after the bad message: the controller lives on

    # No ticket from the bad message: the next valid press got the next number.
    assert answer["ticket"] == "A002"
    assert [r["label"] for r in hall.rows()] == ["A001", "A002"]
    assert ctrl.queues.snapshot(SITE)["services"]["A"]["last"] == "A002"
    # Counted under one stable reason, nothing else counted.
    after = rejected(ctrl)
    assert after.get(reason, 0) == before.get(reason, 0) + 1, after
    assert {k: v for k, v in after.items() if k != reason} == {k: v for k, v in before.items() if k != reason}
    # Logged once, as a warning; nothing logged as an error (no handler crash).
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("sigap")]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert reason in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # The device that sent it got no answer (only kiosks are ever answered, and only for valid presses).
    if sender is not kiosk:
        assert sender.messages(topic(device, "cmd/ticket")) == []
    if reason != "unknown_service":
        assert [m.data["re"] for m in kiosk.messages(topic("kiosk-01", "cmd/ticket"))] == [1, 2]
    else:
        # An unknown service code is answered with the contract's refusal, still no ticket.
        assert [m.data for m in kiosk.messages(topic("kiosk-01", "cmd/ticket"))][1] == {
            "re": 100, "error": "unknown_service"}


async def test_burst_of_garbage_then_valid_press(hall):
    """Many bad messages back to back do not stall or crash ingest."""
    kiosk = await hall.peer("kiosk-01")
    t = topic("kiosk-01", "evt/press")
    for i in range(30):
        await kiosk.publish(t, b"{" * (i + 1))
    assert (await hall.ticket(kiosk, "A"))["ticket"] == "A001"
    assert metric(hall.ctrl, "sigap_mqtt_rejected_total", reason="bad_json") == 30
