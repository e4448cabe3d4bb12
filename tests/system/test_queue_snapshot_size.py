"""The retained `site/{site}/queue` stays within CONTRACT §1's 4096 bytes on a large site.

A hall with a dozen services and forty counters has a snapshot longer than
that before a single call; the MQTT payload then leaves out the oldest calls
and the names the site config holds, says so in `trimmed`, and keeps every
count; `GET /api/queues/{site}` keeps the whole snapshot.
"""

from __future__ import annotations

import json

import httpx
import pytest

from controller.config import parse_config
from controller.queues import encode_snapshot
from protocol import wire
from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import OPEN_HOURS, running_hall

pytestmark = pytest.mark.timeout(60)

SITE = "mpp-besar"
SERVICES = "ABCDEFGHJKLM"


def big_site_toml() -> str:
    lines = ["[sigap]", 'prefix = "sigap"', "", "[[sites]]", f'id = "{SITE}"',
             'name = "Mal Pelayanan Publik (besar)"', 'timezone = "Asia/Jakarta"']
    for code in SERVICES:
        lines += ["", "[[sites.services]]", f'code = "{code}"', f'name = "Layanan perizinan dan administrasi {code}"',
                  'agency = "Dinas Penanaman Modal dan PTSP"', 'open = "08:00"', 'close = "15:00"']
    for i in range(1, 41):
        a, b = SERVICES[i % 12], SERVICES[(i + 5) % 12]
        lines += ["", "[[sites.counters]]", f'id = "{i}"', f'name = "Loket pelayanan {i}"', f'services = ["{a}", "{b}"]']
    lines += ["", "[[devices]]", 'id = "kiosk-01"', f'site = "{SITE}"', 'role = "kiosk"',
              "services = [" + ", ".join(f'"{c}"' for c in SERVICES) + "]"]
    for i in range(1, 41):
        lines += ["", "[[devices]]", f'id = "loket-{i:02d}"', f'site = "{SITE}"', 'role = "counter"', f'counter = "{i}"']
    return "\n".join(lines) + "\n"


def test_a_small_snapshot_goes_out_whole() -> None:
    snap = {"site": "s", "services": {"A": {"name": "x", "waiting": 1}}, "counters": {}, "calls": []}
    body, trimmed = encode_snapshot(snap)
    assert trimmed == [] and json.loads(body) == snap


def test_oldest_calls_give_way_first_and_the_newest_stay() -> None:
    calls = [{"ticket": f"A{n:03d}", "counter": "1", "at": "2026-11-23T09:00:00+07:00"} for n in range(99, 0, -1)]
    snap = {"site": "s", "services": {"A": {"name": "Perekaman KTP-el", "waiting": 3}}, "counters": {}, "calls": calls}
    body, trimmed = encode_snapshot(snap, limit=1024)
    out = json.loads(body)
    assert len(body) <= 1024 and trimmed == ["calls"] and out["trimmed"] == ["calls"]
    assert 0 < len(out["calls"]) < 99 and out["calls"] == calls[: len(out["calls"])]  # the newest
    assert out["services"] == snap["services"]
    # One more call would not have fitted.
    assert len(json.dumps(dict(out, calls=calls[: len(out["calls"]) + 1]), separators=(",", ":"))) > 1024


async def test_large_site_snapshot_fits_on_mqtt_and_keeps_every_count(broker, tmp_path) -> None:
    cfg = parse_config(big_site_toml())
    full = None
    async with running_hall(broker, tmp_path, SettableClock(OPEN_HOURS), cfg=cfg, http=True) as hall:
        kiosk = await hall.peer("kiosk-01")
        for code in SERVICES:
            await hall.ticket(kiosk, code)
        loket = [await hall.peer(f"loket-{i:02d}") for i in range(1, 13)]
        for board in loket:
            await hall.counter(board, "next")
        topic = wire.site_queue_topic("sigap", SITE)
        async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as http:
            full = (await http.get(f"/api/queues/{SITE}")).json()  # every press above is applied

        def final(m) -> bool:  # the (debounced) snapshot of that state
            return all(m.data["services"][c]["waiting"] == s["waiting"] for c, s in full["services"].items()) and all(
                m.data["counters"][c]["serving"] == x["serving"] for c, x in full["counters"].items())

        watcher = await hall.peer("watcher-01", subscribe_cmds=False)
        await watcher.subscribe(topic)
        msg = await watcher.wait_for(topic, final, timeout=20)
        late = await hall.peer("watcher-02", subscribe_cmds=False)  # a late subscriber gets it retained
        await late.subscribe(topic)
        kept = await late.wait_for(topic, timeout=10)
    assert kept.retain and kept.payload == msg.payload
    assert sum(1 for c in full["counters"].values() if c["serving"]) > 0 and full["calls"]
    assert len(msg.payload) <= wire.MAX_CONTROLLER_PAYLOAD, len(msg.payload)
    assert len(json.dumps(full, separators=(",", ":"))) > wire.MAX_CONTROLLER_PAYLOAD  # it had to give way
    assert "names" in msg.data["trimmed"]
    for code, svc in full["services"].items():
        assert {k: msg.data["services"][code][k] for k in ("waiting", "last", "open")} == {
            k: svc[k] for k in ("waiting", "last", "open")}
    for cid, c in full["counters"].items():
        assert msg.data["counters"][cid] == {"serving": c["serving"], "open": c["open"]}
    assert msg.data["calls"] == full["calls"][: len(msg.data["calls"])]
