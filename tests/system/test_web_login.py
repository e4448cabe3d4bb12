"""The web login (CONTRACT §4 `login`: a session from the web login or a bearer token).

POST /api/login sets an HttpOnly session cookie that opens the login-only API
like a bearer token does; state changes through the cookie need the CSRF
header; logout clears it. Then the same in a real browser (Debian's Chromium).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from controller.api.app import create_app
from controller.api.deps import CSRF_HEADER, SESSION_COOKIE
from controller.auth import User
from controller.config import parse_config
from tests.harness.browser import CHROMIUM_ARGS, chromium_path
from tests.harness.controller import SettableClock
from tests.harness.mpp_hall import Hall, running_hall, until_handled
from tests.system.test_events_sse import next_event
from tests.system.test_water_controller import _TOML, OTHER, SENSOR, START, WaterBoard

pytestmark = pytest.mark.timeout(60)

OPERATOR = ("sari", "operator-rahasia")
VIEWER = ("budi", "lihat-saja-1")


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(START)


@pytest.fixture
async def hall(broker, tmp_path, clock) -> AsyncIterator[Hall]:
    async with running_hall(broker, tmp_path, clock, cfg=parse_config(_TOML), http=True) as h:
        h.ctrl.auth.add_user(*OPERATOR, "operator")
        h.ctrl.auth.add_user(*VIEWER, "viewer")
        yield h


@pytest.fixture
async def http(hall) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as client:
        yield client


async def open_alert(hall: Hall, clock: SettableClock) -> int:
    """Raise a waspada alert on SENSOR through its readings; its id."""
    board = WaterBoard(hall, await hall.peer(SENSOR), clock)
    for level in (1000, 1250, 1500):
        await board.read(level)
        clock.advance(seconds=30)
    alerts = hall.ctrl.water.alert_views("open")
    assert len(alerts) == 1, alerts
    alert_id: int = alerts[0]["id"]
    return alert_id


async def login(http: httpx.AsyncClient, user: tuple[str, str]) -> dict[str, str]:
    r = await http.post("/api/login", data={"username": user[0], "password": user[1]})
    assert r.status_code == 200, r.text
    body: dict[str, str] = r.json()
    return body


async def test_login_sets_an_httponly_strict_cookie_that_opens_the_login_api(hall, http):
    assert (await http.get("/api/me")).status_code == 401
    r = await http.post("/api/login", data={"username": OPERATOR[0], "password": OPERATOR[1]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["user"], body["role"]) == ("sari", "operator") and body["csrf"]
    set_cookie = r.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")}
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    assert {"httponly", "path", "max-age"} <= attrs and "secure" not in attrs  # plain http here
    assert "samesite=strict" in set_cookie.lower() and "path=/;" in set_cookie.lower() + ";"

    me = await http.get("/api/me")
    assert me.status_code == 200 and me.json() == body
    r = await http.get("/api/alerts")
    assert r.status_code == 200 and r.json() == []
    r = await http.get("/api/devices")
    assert r.status_code == 200 and SENSOR in [d["id"] for d in r.json()]



async def test_cookie_is_secure_when_the_request_is_https(hall):
    transport = httpx.ASGITransport(app=create_app(hall.ctrl))
    async with httpx.AsyncClient(transport=transport, base_url="https://sigap.test", timeout=5) as https:
        r = await https.post("/api/login", data={"username": VIEWER[0], "password": VIEWER[1]})
        assert r.status_code == 200, r.text
        assert "secure" in {a.strip().lower() for a in r.headers["set-cookie"].split(";")}
        assert (await https.get("/api/devices")).status_code == 200
        r = await https.post("/api/logout")
        assert "secure" in {a.strip().lower() for a in r.headers["set-cookie"].split(";")}

async def test_login_takes_json_too(hall, http):
    r = await http.post("/api/login", json={"username": VIEWER[0], "password": VIEWER[1]})
    assert r.status_code == 200, r.text
    assert (r.json()["user"], r.json()["role"]) == ("budi", "viewer")
    assert (await http.get("/api/devices")).status_code == 200
    assert (await http.post("/api/login", json={"username": "budi"})).status_code == 422


async def test_logout_clears_the_cookie(hall, http):
    await login(http, VIEWER)
    assert (await http.get("/api/devices")).status_code == 200
    r = await http.post("/api/logout")
    assert r.status_code == 204
    assert SESSION_COOKIE in r.headers["set-cookie"] and "max-age=0" in r.headers["set-cookie"].lower()
    assert SESSION_COOKIE not in http.cookies
    assert (await http.get("/api/devices")).status_code == 401
    assert (await http.get("/api/me")).status_code == 401


async def test_a_copy_of_the_cookie_stops_working_at_logout(hall, http):
    await login(http, VIEWER)
    stolen = http.cookies[SESSION_COOKIE]
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5, cookies={SESSION_COOKIE: stolen}) as other:
        assert (await other.get("/api/me")).status_code == 200
        assert (await http.post("/api/logout")).status_code == 204
        assert (await other.get("/api/me")).status_code == 401
        assert (await other.get("/api/devices")).status_code == 401
    await login(http, VIEWER)  # a new login is a new session
    assert (await http.get("/api/me")).status_code == 200


async def test_bad_password_is_401_without_a_cookie(hall, http):
    r = await http.post("/api/login", data={"username": OPERATOR[0], "password": "salah"})
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    r = await http.post("/api/login", data={"username": "siapa", "password": "salah"})
    assert r.status_code == 401
    assert (await http.get("/api/alerts")).status_code == 401


async def test_login_shares_the_token_endpoints_rate_limit(hall, http):
    auth = hall.ctrl.auth
    for i in range(auth.max_failures):
        # Failures on either endpoint count against the same client.
        path = "/api/token" if i % 2 else "/api/login"
        r = await http.post(path, data={"username": "admin", "password": "salah"})
        assert r.status_code == 401
    r = await http.post("/api/login", data={"username": OPERATOR[0], "password": OPERATOR[1]})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= auth.window_s
    assert "set-cookie" not in r.headers


async def test_cookie_post_needs_the_csrf_header_bearer_does_not(hall, http, clock):
    alert_id = await open_alert(hall, clock)
    session = await login(http, OPERATOR)

    r = await http.post(f"/api/alerts/{alert_id}/ack")
    assert r.status_code == 403 and CSRF_HEADER in r.json()["detail"]
    r = await http.post(f"/api/alerts/{alert_id}/ack", headers={CSRF_HEADER: "tebakan"})
    assert r.status_code == 403
    # Another session's value does not fit this one.
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as other:
        other_csrf = (await login(other, OPERATOR))["csrf"]
    assert other_csrf != session["csrf"]
    r = await http.post(f"/api/alerts/{alert_id}/ack", headers={CSRF_HEADER: other_csrf})
    assert r.status_code == 403
    assert hall.ctrl.water.alert_views("open")[0]["state"] == "open"

    r = await http.post(f"/api/alerts/{alert_id}/ack", headers={CSRF_HEADER: session["csrf"]},
                        json={"note": "petugas menuju lokasi"})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["acked_by"]) == ("acknowledged", "sari")

    # A bearer token needs no CSRF header (a browser never adds one by itself).
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=5) as api:
        tok = (await api.post("/api/token", data={"username": OPERATOR[0], "password": OPERATOR[1]})).json()
        r = await api.post(f"/api/alerts/{alert_id}/resolve",
                           headers={"Authorization": f"Bearer {tok['access_token']}"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "resolved"


async def test_viewer_session_may_read_but_not_ack(hall, http, clock):
    alert_id = await open_alert(hall, clock)
    session = await login(http, VIEWER)
    assert [a["id"] for a in (await http.get("/api/alerts", params={"state": "open"})).json()] == [alert_id]
    r = await http.post(f"/api/alerts/{alert_id}/ack", headers={CSRF_HEADER: session["csrf"]})
    assert r.status_code == 403 and "operator" in r.json()["detail"]


async def test_forged_or_expired_cookie_is_401(hall, http):
    auth = hall.ctrl.auth
    good = await login(http, OPERATOR)
    real = http.cookies[SESSION_COOKIE]
    payload, _, _ = real.partition(".")
    expired = auth.token(User("sari", "operator"), ttl_s=-1)
    # A real signature on another payload: the payload was changed (role admin) after signing.
    forged_admin = auth.token(User("sari", "admin")).split(".")[0] + "." + real.partition(".")[2]
    for bad in ("", "nonsense", f"{payload}.AAAA", forged_admin, expired, real[:-2]):
        async with httpx.AsyncClient(base_url=hall.base_url, timeout=5, cookies={SESSION_COOKIE: bad}) as c:
            assert (await c.get("/api/devices")).status_code == 401, bad
            assert (await c.get("/api/me")).status_code == 401, bad
            r = await c.post("/api/alerts/1/ack", headers={CSRF_HEADER: good["csrf"]})
            assert r.status_code == 401, bad
    # A wrong bearer token is not rescued by a good cookie.
    r = await http.get("/api/devices", headers={"Authorization": "Bearer forged.token"})
    assert r.status_code == 401
    assert (await http.get("/api/devices")).status_code == 200


async def test_event_stream_shows_who_acked_to_a_session_only(hall, http, clock):
    alert_id = await open_alert(hall, clock)
    session = await login(http, OPERATOR)
    async with httpx.AsyncClient(base_url=hall.base_url, timeout=10) as anon, \
            http.stream("GET", "/api/events") as private, anon.stream("GET", "/api/events") as public:
        private_lines, public_lines = private.aiter_lines(), public.aiter_lines()
        await next_event(private_lines, "hello")
        await next_event(public_lines, "hello")
        r = await http.post(f"/api/alerts/{alert_id}/ack", headers={CSRF_HEADER: session["csrf"]},
                            json={"note": "Sari menuju lokasi"})
        assert r.status_code == 200, r.text
        full = await next_event(private_lines, "alert")
        assert (full["alert"]["acked_by"], full["alert"]["note"]) == ("sari", "Sari menuju lokasi")
        bare = await next_event(public_lines, "alert")
        assert bare["alert"]["state"] == "acknowledged" and "sari" not in str(bare).lower()


async def test_page_logs_in_shows_alerts_and_devices_acks_and_logs_out(hall, clock, tmp_path):
    alert_id = await open_alert(hall, clock)
    other = await hall.peer(OTHER)
    await other.birth("water", boot=1)
    await until_handled(hall.ctrl, lambda: OTHER in hall.ctrl.presence.devices
                        and hall.ctrl.presence.devices[OTHER].online)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(hall.base_url + "/")
            await expect(page.locator("#health")).to_have_text("sehat", timeout=10_000)
            form = page.locator("#login")
            await expect(form).to_be_visible(timeout=10_000)
            await expect(page.locator("#ops")).to_be_hidden()

            await page.get_by_label("Nama pengguna").fill(OPERATOR[0])
            await page.get_by_label("Kata sandi").fill("salah")
            await page.get_by_role("button", name="Masuk").click()
            await expect(page.locator("#login-error")).to_have_text("Nama pengguna atau kata sandi salah.")

            await page.get_by_label("Kata sandi").fill(OPERATOR[1])
            await page.get_by_role("button", name="Masuk").click()
            await expect(page.locator("#who")).to_have_text("sari (operator)", timeout=10_000)
            await expect(form).to_be_hidden()
            sensor_row = page.locator(f'#devices tr[data-device="{SENSOR}"]')
            await expect(sensor_row).to_be_visible(timeout=10_000)
            await expect(sensor_row.locator(".status")).to_have_text("luring")  # readings only, no birth
            await expect(page.locator(f'#devices tr[data-device="{OTHER}"] .status')).to_have_text("daring")
            cookies = await page.context.cookies()
            session = next(c for c in cookies if c["name"] == SESSION_COOKIE)
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            assert await page.evaluate("document.cookie") == ""  # not readable by scripts

            alert = page.locator(f'#alerts li[data-alert="{alert_id}"]')
            await expect(alert.locator(".state")).to_have_text("terbuka", timeout=10_000)
            await alert.get_by_role("button", name="Tanggapi").click()
            await expect(alert.locator(".state")).to_have_text("ditanggapi", timeout=10_000)
            assert hall.ctrl.water.alert_views("active")[0]["acked_by"] == "sari"

            # A reload keeps the session (the cookie), then logging out ends it.
            await page.reload()
            await expect(sensor_row).to_be_visible(timeout=10_000)
            await page.screenshot(path=str(tmp_path / "login.png"))
            await page.get_by_role("button", name="Keluar").click()
            await expect(form).to_be_visible(timeout=10_000)
            await expect(page.locator("#ops")).to_be_hidden()
            await expect(page.locator("#devices tbody tr")).to_have_count(0)
            assert not [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
            # The public queue part kept working throughout.
            await expect(page.locator("#health")).to_have_text("sehat")
        finally:
            await browser.close()
