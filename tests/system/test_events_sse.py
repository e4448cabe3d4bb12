"""GET /api/events: a live viewer sees queue changes and board presence as they happen."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import OPEN_HOURS, SITE, running_hall


async def next_event(lines, kind: str, timeout: float = 10.0) -> dict:
    """Read SSE frames until one of `kind` arrives; returns its data."""

    async def _read() -> dict:
        event = None
        async for line in lines:
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: ") and event == kind:
                return json.loads(line[len("data: "):])
        raise AssertionError("stream ended")

    return await asyncio.wait_for(_read(), timeout)


@pytest.mark.timeout(60)
async def test_event_stream_follows_tickets_and_boards(broker, tmp_path):
    async with running_hall(broker, tmp_path, SettableClock(OPEN_HOURS), http=True) as hall:
        async with httpx.AsyncClient(base_url=hall.base_url, timeout=10) as http:
            async with http.stream("GET", "/api/events") as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                lines = resp.aiter_lines()
                hello = await next_event(lines, "hello")
                assert hello["version"]

                kiosk = await hall.peer("kiosk-01")
                await kiosk.birth("kiosk")
                device = await next_event(lines, "device")
                assert device["id"] == "kiosk-01" and device["online"] is True

                await hall.ticket(kiosk, "A")
                queue = await next_event(lines, "queue")
                assert queue["site"] == SITE
                assert queue["services"]["A"]["last"] == "A001"
                assert queue["services"]["A"]["waiting"] == 1


_WATER_SITE = """
[sigap]
prefix = "sigap"

[[sites]]
id = "kota-uji"
name = "Kota Uji"

[[devices]]
id = "wl-uji-01"
site = "kota-uji"
role = "water"
name = "Kali Uji"
lat = -8.0954
lon = 112.1609
mount_mm = 4000
thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }
"""


@pytest.mark.timeout(60)
async def test_public_stream_shows_alert_changes_without_who_handled_them(broker, tmp_path):
    from controller.config import parse_config

    clock = SettableClock("2026-11-23T09:00:00+07:00")
    async with running_hall(broker, tmp_path, clock, cfg=parse_config(_WATER_SITE), http=True) as hall:
        async with httpx.AsyncClient(base_url=hall.base_url, timeout=10) as http:
            r = await http.post("/api/token", data={"username": "admin", "password": hall.ctrl.auth.generated_password})
            login = {"Authorization": f"Bearer {r.json()['access_token']}"}
            async with http.stream("GET", "/api/events") as public, \
                    http.stream("GET", "/api/events", headers=login) as private:
                public_lines, private_lines = public.aiter_lines(), private.aiter_lines()
                await next_event(public_lines, "hello")
                await next_event(private_lines, "hello")
                board = await hall.peer("wl-uji-01")
                seq = board.next_seq()
                await board.publish(board.dev_topic("evt/reading"),
                                    {"boot": board.boot, "seq": seq, "ts": int(clock().timestamp()), "dist_mm": 2400})
                opened = await next_event(public_lines, "alert")
                assert (opened["action"], opened["alert"]["level"]) == ("open", "waspada")
                r = await http.post(f"/api/alerts/{opened['alert']['id']}/ack", headers=login,
                                    json={"note": "Budi menuju lokasi, HP 0812-0000"})
                assert r.status_code == 200, r.text

                acked = await next_event(public_lines, "alert")
                assert acked["action"] == "ack" and acked["alert"]["state"] == "acknowledged"
                assert "Budi" not in json.dumps(acked) and "admin" not in json.dumps(acked)
                await next_event(private_lines, "alert")  # the open
                full = await next_event(private_lines, "alert")
                assert (full["by"], full["alert"]["acked_by"], full["alert"]["note"]) == (
                    "admin", "admin", "Budi menuju lokasi, HP 0812-0000")
