"""The controller's HTTP surface (CONTRACT §4): health, queue snapshot, ticket status, metrics.

The real controller serves on a free loopback port; boards are `MqttPeer`s on
the real broker; calls go through httpx.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import (
    OPEN_HOURS,
    PUBLIC_URL,
    SITE,
    Hall,
    metric_in,
    running_hall,
    topic,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def hall(broker, tmp_path) -> AsyncIterator[Hall]:
    async with running_hall(broker, tmp_path, SettableClock(OPEN_HOURS), http=True) as h:
        yield h


@pytest.fixture
async def http(hall) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as client:
        yield client


async def poll(http: httpx.AsyncClient, path: str, ok: Callable[[httpx.Response], bool],
               timeout: float = 20.0) -> httpx.Response:
    """GET path until ok(response); an HTTP endpoint has no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(path)
        if ok(r):
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: still {r.status_code} {r.text} after {timeout} s")
        await asyncio.sleep(0.05)


def token_of(answer: dict[str, Any]) -> str:
    url: str = answer["url"]
    assert url.startswith(PUBLIC_URL + "/t/")
    return url.rsplit("/", 1)[1]


async def test_health_ok_then_503_naming_the_broker_when_it_dies(hall, http, broker):
    r = await http.get("/api/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "broker": "connected", "db": "ok"}

    broker.kill()
    r = await poll(http, "/api/health", lambda r: r.status_code == 503)
    body = r.json()
    assert body["broker"] != "connected" and body["db"] == "ok" and body["status"] != "ok"
    assert "broker" in body.get("failing", "")

    broker.start()
    r = await poll(http, "/api/health", lambda r: r.status_code == 200, timeout=30)
    assert r.json() == {"status": "ok", "broker": "connected", "db": "ok"}


async def test_queue_snapshot_shape_and_404(hall, http):
    kiosk = await hall.peer("kiosk-01")
    loket = await hall.peer("loket-02")
    for key in "AAB":
        await hall.ticket(kiosk, key)
    await hall.counter(loket, "next")

    r = await http.get(f"/api/queues/{SITE}")
    assert r.status_code == 200
    snap = r.json()
    assert snap["site"] == SITE
    assert set(snap["services"]) == {"A", "B", "C"}
    assert snap["services"]["A"] | {"name": "Perekaman KTP-el", "waiting": 1, "last": "A002"} == snap["services"]["A"]
    assert snap["services"]["B"] | {"waiting": 1, "last": "B001"} == snap["services"]["B"]
    assert snap["services"]["C"] | {"waiting": 0, "last": None} == snap["services"]["C"]
    assert set(snap["counters"]) == {"1", "2", "3"}
    assert snap["counters"]["2"] | {"serving": "A001", "open": True} == snap["counters"]["2"]
    assert snap["counters"]["1"] | {"serving": None, "open": True} == snap["counters"]["1"]
    assert len(snap["calls"]) == 1
    call = snap["calls"][0]
    assert (call["ticket"], call["counter"]) == ("A001", "2")
    assert call["at"] == "2026-11-23T09:00:00+07:00"

    for unknown in ("no-such-site", "kota-uji"):  # kota-uji exists but runs no queue
        r = await http.get(f"/api/queues/{unknown}")
        assert r.status_code == 404


async def test_ticket_status_fields_and_404(hall, http):
    kiosk = await hall.peer("kiosk-01")
    loket = await hall.peer("loket-01")
    first, second = await hall.ticket(kiosk, "A"), await hall.ticket(kiosk, "A")

    r = await http.get(f"/api/tickets/{token_of(second)}")
    assert r.status_code == 200
    body = r.json()
    assert {"ticket", "status", "ahead", "wait_min", "counter"} <= set(body)
    assert (body["ticket"], body["status"], body["ahead"], body["counter"]) == ("A002", "waiting", 1, None)
    assert isinstance(body["wait_min"], int)

    await hall.counter(loket, "next")
    body = (await http.get(f"/api/tickets/{token_of(first)}")).json()
    assert (body["ticket"], body["status"], body["ahead"], body["counter"]) == ("A001", "called", 0, "1")
    body = (await http.get(f"/api/tickets/{token_of(second)}")).json()
    assert (body["status"], body["ahead"]) == ("waiting", 0)

    for bad in ("AAAAAAAAAAAAAAAAAAAAAA", "A001", "x"):
        assert (await http.get(f"/api/tickets/{bad}")).status_code == 404


async def test_ticket_tokens_are_unguessable(hall, http):
    k1, k2 = await hall.peer("kiosk-01"), await hall.peer("kiosk-02")
    await asyncio.gather(*(k.press("A", seq=s) for s in range(1, 26) for k in (k1, k2)))
    answers = []
    for k in (k1, k2):
        answers += [m.data for m in await k.wait_count(k.dev_topic("cmd/ticket"), 25, timeout=30)]
    tokens = [token_of(a) for a in answers]
    assert len(set(tokens)) == 50
    for t in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", t), t
        assert len(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))) >= 16  # >= 128 random bits
    # Each token opens its own ticket, and only that one.
    for a in answers[:5]:
        body = (await http.get(f"/api/tickets/{token_of(a)}")).json()
        assert body["ticket"] == a["ticket"]


async def test_metrics_count_messages_rejections_tickets_and_calls(hall, http):
    kiosk = await hall.peer("kiosk-01")
    loket = await hall.peer("loket-01")

    async def scrape() -> str:
        r = await http.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return r.text

    def values(text: str) -> dict[str, float]:
        return {
            "presses": metric_in(text, "sigap_mqtt_messages_total", kind="press"),
            "bad_json": metric_in(text, "sigap_mqtt_rejected_total", reason="bad_json"),
            "issued_A": metric_in(text, "sigap_tickets_issued_total", site=SITE, service="A"),
            "calls": metric_in(text, "sigap_calls_total", site=SITE),
        }

    before = values(await scrape())
    for _ in range(3):
        await hall.ticket(kiosk, "A")
    await kiosk.publish(topic("kiosk-01", "evt/press"), b"{not json")
    await hall.counter(loket, "next")
    await hall.counter(loket, "next")
    await hall.ticket(kiosk, "A")  # after the bad message: it has been handled
    text = await scrape()
    after = values(text)
    assert after["presses"] - before["presses"] == 7  # 4 kiosk presses, 1 malformed, 2 counter presses
    assert after["bad_json"] - before["bad_json"] == 1
    assert after["issued_A"] - before["issued_A"] == 4
    assert after["calls"] - before["calls"] == 2
    for name in ("sigap_mqtt_messages_total", "sigap_mqtt_rejected_total", "sigap_tickets_issued_total",
                 "sigap_calls_total"):
        assert f"# TYPE {name} counter" in text


async def test_token_endpoint_is_rate_limited_per_client_and_says_when_to_retry(hall, http):
    auth = hall.ctrl.auth
    for _ in range(auth.max_failures):
        r = await http.post("/api/token", data={"username": "admin", "password": "salah"})
        assert r.status_code == 401
    r = await http.post("/api/token", data={"username": "admin", "password": "salah"})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= auth.window_s
