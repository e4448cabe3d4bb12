"""The queue rules (CONTRACT §1 kiosk answers, §2) through the real broker and the real controller.

Kiosks and counter boards are `MqttPeer`s pressing with exact (boot, seq), so a
test can burst, redeliver and restart; the controller runs in-process with a
`SettableClock` and a real SQLite file.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from protocol import wire
from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import (
    OPEN_HOURS,
    PUBLIC_URL,
    QUEUE_TOPIC,
    SITE,
    Hall,
    metric,
    mpp_config,
    running_hall,
    topic,
)
from tests.harness.mqtt_peer import MqttPeer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(OPEN_HOURS)


@pytest.fixture
async def hall(broker, tmp_path, clock):
    async with running_hall(broker, tmp_path, clock, http=True) as h:
        yield h


def shows(watcher: MqttPeer, device_id: str) -> list[dict[str, Any]]:
    return [m.data for m in watcher.messages(topic(device_id, "cmd/show"))]


async def watch(hall: Hall, name: str = "watcher") -> MqttPeer:
    """An observer of every board's commands and the site snapshot."""
    w = await hall.peer(name, subscribe_cmds=False)
    await w.subscribe("sigap/v1/dev/+/cmd/#", QUEUE_TOPIC)
    return w


async def wait_show(watcher: MqttPeer, device_id: str, lines: list[str], start: int = 0,
                    chime: bool | None = None) -> dict[str, Any]:
    def ok(m: Any) -> bool:
        return m.data["lines"] == lines and (chime is None or bool(m.data.get("chime")) == chime)

    m = await watcher.wait_for(topic(device_id, "cmd/show"), ok, start=start)
    data: dict[str, Any] = m.data
    return data


# ---------------------------------------------------------------- numbering


async def test_fifty_presses_at_once_get_fifty_consecutive_numbers(hall):
    k1 = await hall.peer("kiosk-01")
    k2 = await hall.peer("kiosk-02")
    # Published without waiting for any answer: both kiosks' presses interleave on the broker.
    await asyncio.gather(*(k.press("A", seq=s) for s in range(1, 26) for k in (k1, k2)))
    answers = []
    for k in (k1, k2):
        got = await k.wait_count(k.dev_topic("cmd/ticket"), 25, timeout=30)
        assert len(got) == 25
        assert sorted(m.data["re"] for m in got) == list(range(1, 26))
        answers += [m.data for m in got]
    for a in answers:
        wire.validate_ticket(a)  # what the kiosk firmware checks before printing
    labels = [a["ticket"] for a in answers]
    assert sorted(labels) == [f"A{n:03d}" for n in range(1, 51)]
    # Each answer counts the tickets issued before it as ahead (nothing called yet).
    assert all(a["ahead"] == int(a["ticket"][1:]) - 1 for a in answers)
    assert all(a["service"] == "Perekaman KTP-el" and a["agency"] == "Dispendukcapil" for a in answers)
    assert len({a["url"] for a in answers}) == 50
    rows = hall.rows()
    assert sorted(r["label"] for r in rows) == sorted(labels)
    assert hall.ctrl.queues.snapshot(SITE)["services"]["A"] | {"waiting": 50, "last": "A050"} == \
        hall.ctrl.queues.snapshot(SITE)["services"]["A"]


async def test_redelivered_press_gets_same_answer_and_no_second_ticket(hall):
    kiosk = await hall.peer("kiosk-01", boot=7)
    t = kiosk.dev_topic("cmd/ticket")
    await kiosk.press("A", seq=1)
    first = await kiosk.wait_for(t)
    assert first.data["ticket"] == "A001"

    # Committed before it was published: the stored answer is what the kiosk got.
    stored = hall.rows("SELECT answer FROM applied_events WHERE device_id = 'kiosk-01' AND boot = 7 AND seq = 1")
    assert stored == [{"answer": first.payload.decode()}]

    await kiosk.press("A", seq=1)  # a QoS 1 duplicate or a resend after reconnect
    again = await kiosk.wait_for(t, start=1)
    assert again.payload == first.payload
    assert hall.ctrl.queues.snapshot(SITE)["services"]["A"]["last"] == "A001"
    assert [r["label"] for r in hall.rows()] == ["A001"]
    assert metric(hall.ctrl, "sigap_events_duplicate_total") == 1

    # The memory of applied events survives a restart on the same database.
    await hall.stop_controller()
    await hall.start_controller()
    await kiosk.press("A", seq=1)
    after_restart = await kiosk.wait_for(t, start=2)
    assert after_restart.payload == first.payload
    assert [r["label"] for r in hall.rows()] == ["A001"]
    assert hall.ctrl.queues.snapshot(SITE)["services"]["A"]["last"] == "A001"

    # The same seq of a new boot is a new event; numbering continues.
    await kiosk.press("A", seq=1, boot=8)
    fresh = await kiosk.wait_for(t, start=3)
    assert fresh.data["re"] == 1 and fresh.data["ticket"] == "A002"
    assert [r["label"] for r in hall.rows()] == ["A001", "A002"]


async def test_redelivered_counter_press_calls_only_once(hall):
    kiosk = await hall.peer("kiosk-01")
    loket = await hall.peer("loket-01", boot=3)
    for _ in range(3):
        await hall.ticket(kiosk, "A")

    def serving() -> str | None:
        s: str | None = hall.ctrl.queues.snapshot(SITE)["counters"]["1"]["serving"]
        return s

    n = hall.ctrl.handled
    await loket.press("next", seq=1)
    await loket.press("next", seq=1)  # redelivered: must not finish A001 and call A002
    await hall.ctrl.wait_handled(n + 2)
    assert serving() == "A001"
    await hall.stop_controller()
    await hall.start_controller()
    assert serving() == "A001"
    n = hall.ctrl.handled
    await loket.press("next", seq=1)
    await hall.ctrl.wait_handled(n + 1)
    assert serving() == "A001"
    assert [r["status"] for r in hall.rows()] == ["called", "waiting", "waiting"]
    await hall.counter(loket, "next", seq=2)
    assert serving() == "A002"
    assert [r["action"] for r in hall.rows("SELECT action FROM audit_log ORDER BY id")] == \
        ["issue"] * 3 + ["call", "done", "call"]


async def test_day_rollover_at_local_midnight_restarts_numbering(broker, tmp_path):
    # Service A is open 00:00–23:59 local here, so presses around both midnights are in hours.
    clock = SettableClock("2026-11-22T23:59:59+00:00")  # 06:59:59 on the 23rd in Blitar
    async with running_hall(broker, tmp_path, clock, cfg=mpp_config("00:00", "23:59")) as hall:
        kiosk = await hall.peer("kiosk-01")
        assert (await hall.ticket(kiosk, "A"))["ticket"] == "A001"
        clock.now = clock.now.replace(day=23, hour=0, minute=0, second=0)  # UTC midnight: same local day
        assert (await hall.ticket(kiosk, "A"))["ticket"] == "A002"
        clock.now = clock.now.replace(hour=16, minute=58, second=59)  # 23:58:59 local
        last = await hall.ticket(kiosk, "A")
        assert last["ticket"] == "A003" and last["at"] == "2026-11-23T23:58:59+07:00"
        clock.now = clock.now.replace(minute=59, second=59)  # 16:59:59Z, 23:59:59 local
        # The config cannot say "open until 24:00" (close must be after open, HH:MM): A closes at 23:59.
        assert (await hall.ticket(kiosk, "A")) == {"re": 4, "error": "closed"}
        clock.now = clock.now.replace(hour=17, minute=0, second=0)  # 00:00:00 local on the 24th
        first = await hall.ticket(kiosk, "A")
        assert first["ticket"] == "A001" and first["at"] == "2026-11-24T00:00:00+07:00"
        assert first["ahead"] == 0  # yesterday's waiting tickets are not ahead of today's
        snap = hall.ctrl.queues.snapshot(SITE)
        assert snap["services"]["A"]["last"] == "A001" and snap["services"]["A"]["waiting"] == 1
        rows = hall.rows()
        assert [(r["day"], r["label"]) for r in rows] == [
            ("2026-11-23", "A001"), ("2026-11-23", "A002"), ("2026-11-23", "A003"), ("2026-11-24", "A001"),
        ]
        # After a restart on the new day, numbering continues from today's highest number.
        await hall.stop_controller()
        await hall.start_controller()
        assert (await hall.ticket(kiosk, "A"))["ticket"] == "A002"


# ---------------------------------------------------------------- refusals


async def test_press_before_opening_is_refused_closed(hall, clock):
    clock.now = clock.now.replace(hour=7, minute=59, second=59)
    kiosk = await hall.peer("kiosk-01")
    assert await hall.ticket(kiosk, "A") == {"re": 1, "error": "closed"}
    clock.now = clock.now.replace(hour=8, minute=0, second=0)
    assert (await hall.ticket(kiosk, "A"))["ticket"] == "A001"
    clock.now = clock.now.replace(hour=15, minute=0, second=0)
    assert await hall.ticket(kiosk, "A") == {"re": 3, "error": "closed"}
    assert [r["label"] for r in hall.rows()] == ["A001"]


async def test_quota_plus_one_press_is_refused_quota_full(hall):
    kiosk = await hall.peer("kiosk-01")
    labels = [(await hall.ticket(kiosk, "C"))["ticket"] for _ in range(3)]
    assert labels == ["C001", "C002", "C003"]
    assert await hall.ticket(kiosk, "C") == {"re": 4, "error": "quota_full"}
    assert [r["label"] for r in hall.rows()] == labels
    assert metric(hall.ctrl, "sigap_tickets_refused_total", reason="quota_full") == 1


async def test_unknown_service_key_from_kiosk_is_refused(hall):
    k1 = await hall.peer("kiosk-01")
    k2 = await hall.peer("kiosk-02")
    assert await hall.ticket(k1, "Z") == {"re": 1, "error": "unknown_service"}
    # C exists at the site, but kiosk-02 has no button for it.
    assert await hall.ticket(k2, "C") == {"re": 1, "error": "unknown_service"}
    assert hall.rows() == []
    assert (await hall.ticket(k2, "B"))["ticket"] == "B001"


# ---------------------------------------------------------------- calling


async def test_priority_ticket_is_called_first(hall, clock):
    kiosk = await hall.peer("kiosk-01")
    loket = await hall.peer("loket-01")
    w = await watch(hall)
    for _ in range(2):
        await hall.ticket(kiosk, "A")
        clock.advance(minutes=1)
    prio = await hall.ticket(kiosk, "A", prio=True)
    assert prio["ticket"] == "A003" and prio["prio"] is True and prio["ahead"] == 0
    await hall.counter(loket, "next")
    await wait_show(w, "disp-01", ["A003", "LOKET 1"], chime=True)
    await hall.counter(loket, "next")
    await wait_show(w, "disp-01", ["A001", "LOKET 1"], chime=True)
    await hall.counter(loket, "next")
    await wait_show(w, "disp-01", ["A002", "LOKET 1"], chime=True)


async def test_transfer_keeps_number_and_place_in_time(hall, clock):
    kiosk = await hall.peer("kiosk-01")
    loket1 = await hall.peer("loket-01")  # serves A
    loket3 = await hall.peer("loket-03")  # serves B and C
    w = await watch(hall)
    assert (await hall.ticket(kiosk, "B"))["ticket"] == "B001"
    clock.advance(minutes=1)
    a = await hall.ticket(kiosk, "A")
    assert a["ticket"] == "A001"
    clock.advance(minutes=1)
    assert (await hall.ticket(kiosk, "B"))["ticket"] == "B002"
    clock.advance(minutes=1)

    await hall.counter(loket1, "next")
    await wait_show(w, "disp-01", ["A001", "LOKET 1"])
    await hall.counter(loket1, "transfer", to="B")
    await wait_show(w, "disp-01", ["----", "LOKET 1"])
    token = a["url"].rsplit("/", 1)[1]
    view = hall.ctrl.queues.ticket_view(token)
    assert view is not None
    assert (view["ticket"], view["status"], view["service"], view["ahead"]) == ("A001", "waiting", "B", 1)

    called = []
    for _ in range(3):
        await hall.counter(loket3, "next")
        called.append(hall.ctrl.queues.snapshot(SITE)["counters"]["3"]["serving"])
    assert called == ["B001", "A001", "B002"]
    await wait_show(w, "disp-03", ["A001", "LOKET 3"])
    assert [r["label"] for r in hall.rows()] == ["B001", "A001", "B002"]


async def test_counter_keys_recall_skip_done_pause_resume(hall):
    kiosk = await hall.peer("kiosk-01")
    loket = await hall.peer("loket-01")
    w = await watch(hall)
    tickets = [await hall.ticket(kiosk, "A") for _ in range(3)]
    tokens = [t["url"].rsplit("/", 1)[1] for t in tickets]
    assert all(t["url"].startswith(PUBLIC_URL + "/t/") for t in tickets)
    disp, board, hall_disp = topic("disp-01", "cmd/show"), topic("loket-01", "cmd/show"), topic("hall-01", "cmd/show")

    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as http:

        async def status(i: int) -> str:
            r = await http.get(f"/api/tickets/{tokens[i]}")
            assert r.status_code == 200
            s: str = r.json()["status"]
            return s

        await hall.counter(loket, "next")
        await wait_show(w, "disp-01", ["A001", "LOKET 1"], chime=True)
        assert await status(0) == "called"

        # recall: the display chimes again with the same call, and so does the hall display.
        d0, h0 = w.mark(disp), w.mark(hall_disp)
        await hall.counter(loket, "recall")
        await wait_show(w, "disp-01", ["A001", "LOKET 1"], start=d0, chime=True)
        hall_show = (await w.wait_for(hall_disp, lambda m: m.data.get("chime") is True, start=h0)).data
        assert hall_show["lines"][0] == "A001 > LOKET 1"
        current = hall.ctrl.queues.sites[SITE].current("1")
        assert current is not None and (current.label, current.calls) == ("A001", 2)

        # skip: no-show; nothing called.
        await hall.counter(loket, "skip")
        await wait_show(w, "disp-01", ["----", "LOKET 1"])
        assert await status(0) == "skipped"

        # next, then done.
        await hall.counter(loket, "next")
        await wait_show(w, "disp-01", ["A002", "LOKET 1"], chime=True)
        await hall.counter(loket, "done")
        await wait_show(w, "disp-01", ["----", "LOKET 1"])
        assert await status(1) == "done"
        await wait_show(w, "loket-01", ["----", "Menunggu 1"])

        # pause: next does nothing; the counter board says ISTIRAHAT.
        await hall.counter(loket, "pause")
        await wait_show(w, "loket-01", ["----", "ISTIRAHAT"])
        b0, d1 = w.mark(board), w.mark(disp)
        await hall.counter(loket, "next")
        assert await status(2) == "waiting"
        assert hall.ctrl.queues.snapshot(SITE)["counters"]["1"] | {"serving": None, "open": False} == \
            hall.ctrl.queues.snapshot(SITE)["counters"]["1"]
        assert w.mark(disp) == d1 and w.mark(board) == b0  # no new show: nothing changed

        # resume: next calls again.
        await hall.counter(loket, "resume")
        await wait_show(w, "loket-01", ["----", "Menunggu 1"])
        await hall.counter(loket, "next")
        await wait_show(w, "disp-01", ["A003", "LOKET 1"], chime=True)
        assert await status(2) == "called"
    actions = [r["action"] for r in hall.rows("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["issue"] * 3 + ["call", "recall", "skip", "call", "done", "pause", "call", "resume", "call"]


# ---------------------------------------------------------------- boards


def _waiting_last(m: Any) -> tuple[int, str | None]:
    return m.data["services"]["A"]["waiting"], m.data["services"]["A"]["last"]


async def test_burst_of_presses_coalesces_into_one_snapshot_of_the_final_state(hall):
    kiosk = await hall.peer("kiosk-01")
    w = await watch(hall)
    await w.wait_for(QUEUE_TOPIC)  # the retained snapshot of the empty queue
    start = w.mark(QUEUE_TOPIC)
    # Ten presses applied within one step of the event loop: the snapshot timer cannot run in between.
    dev = hall.cfg.device("kiosk-01")
    for seq in range(1, 11):
        await hall.ctrl.queues.kiosk_press(dev, {"boot": 1, "seq": seq, "key": "A"})
    # Every answer leaves at once, without waiting for the snapshot.
    answers = await kiosk.wait_count(kiosk.dev_topic("cmd/ticket"), 10)
    assert sorted(m.data["ticket"] for m in answers) == [f"A{n:03d}" for n in range(1, 11)]
    final = await w.wait_for(QUEUE_TOPIC, lambda m: _waiting_last(m) == (10, "A010"), start=start)
    assert final.data == hall.ctrl.queues.snapshot(SITE)
    # No intermediate state was published: the burst cost one snapshot.
    assert [_waiting_last(m) for m in w.messages(QUEUE_TOPIC)[start:]] == [(10, "A010")]


async def test_snapshot_converges_to_the_final_state_after_a_burst_over_mqtt(hall):
    k1 = await hall.peer("kiosk-01")
    k2 = await hall.peer("kiosk-02")
    w = await watch(hall)
    await asyncio.gather(*(k.press("A", seq=s) for s in range(1, 16) for k in (k1, k2)))
    for k in (k1, k2):
        await k.wait_count(k.dev_topic("cmd/ticket"), 15, timeout=30)
    await w.wait_for(QUEUE_TOPIC, lambda m: _waiting_last(m) == (30, "A030"))
    seen = [_waiting_last(m)[0] for m in w.messages(QUEUE_TOPIC)]
    assert seen == sorted(seen) and len(seen) <= 31  # never backwards, at most one per change
    # A new subscriber is handed the final state, retained.
    fresh = await hall.peer("fresh-watcher", subscribe_cmds=False)
    await fresh.subscribe(QUEUE_TOPIC)
    got = await fresh.wait_for(QUEUE_TOPIC)
    assert got.retain and _waiting_last(got) == (30, "A030")
    assert got.data == hall.ctrl.queues.snapshot(SITE)


async def test_clean_shutdown_publishes_the_pending_snapshot(hall):
    w = await watch(hall)
    await w.wait_for(QUEUE_TOPIC)
    dev = hall.cfg.device("kiosk-01")
    for seq in range(1, 4):
        await hall.ctrl.queues.kiosk_press(dev, {"boot": 1, "seq": seq, "key": "A"})
    await hall.stop_controller()  # at once: the snapshot may still be waiting for its turn
    fresh = await hall.peer("fresh-watcher", subscribe_cmds=False)
    await fresh.subscribe(QUEUE_TOPIC)
    got = await fresh.wait_for(QUEUE_TOPIC)
    assert got.retain and _waiting_last(got) == (3, "A003")


async def test_boards_show_calls_and_waiting_counts_retained(hall):
    kiosk = await hall.peer("kiosk-01")
    lokets = [await hall.peer(f"loket-0{i}") for i in (1, 2, 3)]
    w = await watch(hall)
    for key in "AAABB":
        await hall.ticket(kiosk, key)
    for board in (lokets[0], lokets[2], lokets[1]):
        await hall.counter(board, "next")
    expected = {
        "loket-01": ["A001", "Menunggu 1"],  # serves A: A003 waits
        "loket-02": ["A002", "Menunggu 2"],  # serves A and B: A003, B002
        "loket-03": ["B001", "Menunggu 1"],  # serves B and C: B002
        "disp-01": ["A001", "LOKET 1"],
        "disp-02": ["A002", "LOKET 2"],
        "disp-03": ["B001", "LOKET 3"],
        "hall-01": ["A002 > LOKET 2", "B001 > LOKET 3", "A001 > LOKET 1"],
    }
    for dev, lines in expected.items():
        wire.validate_show(await wait_show(w, dev, lines))

    # The retained snapshot equals the HTTP one.
    snap = hall.ctrl.queues.snapshot(SITE)
    m = await w.wait_for(QUEUE_TOPIC, lambda m: m.data == snap)
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as http:
        r = await http.get(f"/api/queues/{SITE}")
    assert r.status_code == 200 and r.json() == m.data
    wire.validate_queue(m.data)
    assert len(m.payload) <= wire.MAX_CONTROLLER_PAYLOAD
    assert m.data["services"]["A"]["waiting"] == 1 and m.data["services"]["B"]["waiting"] == 1

    # A rebooted board (a new subscriber) gets its retained show at once.
    fresh = await hall.peer("fresh-watcher", subscribe_cmds=False)
    await fresh.subscribe("sigap/v1/dev/+/cmd/show", QUEUE_TOPIC)
    for dev, lines in expected.items():
        got = await fresh.wait_for(topic(dev, "cmd/show"), timeout=2)
        assert got.retain and got.data["lines"] == lines
    got_snap = await fresh.wait_for(QUEUE_TOPIC, timeout=2)
    assert got_snap.retain and got_snap.data == r.json()
    disp = await hall.peer("disp-02", boot=2)
    show = await disp.wait_for(disp.dev_topic("cmd/show"), timeout=2)
    assert show.retain and show.data["lines"] == ["A002", "LOKET 2"]
