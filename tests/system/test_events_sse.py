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
