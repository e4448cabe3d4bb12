"""The live page in a real browser: it follows the queue as virtual boards press buttons."""

from __future__ import annotations

import pytest
from playwright.async_api import async_playwright, expect

from controller.config import parse_config
from simulator.fleet import Fleet
from tests.harness.broker import free_port
from tests.harness.browser import CHROMIUM_ARGS, chromium_path
from tests.harness.controller import InProcessController
from tests.system.test_walking_skeleton import OPEN_HOURS, SKELETON


@pytest.mark.timeout(60)
async def test_page_shows_tickets_and_calls_as_boards_press(broker, tmp_path):
    cfg = parse_config(SKELETON)
    listen = f"127.0.0.1:{free_port()}"
    ctl = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=OPEN_HOURS, listen=listen)
    ctrl = await ctl.start()
    fleet = Fleet(cfg, "127.0.0.1", broker.port)
    fleet.start()
    try:
        for b in fleet.boards.values():
            await b.device_ready(timeout=10)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.goto(f"http://{listen}/")
            await expect(page.locator("#health")).to_have_text("sehat", timeout=10_000)
            waiting = page.locator('[data-site="blitar-mpp"] [data-service="A"] .waiting')
            serving = page.locator('[data-site="blitar-mpp"] [data-counter="1"] .serving')
            await expect(waiting).to_have_text("0", timeout=10_000)

            await fleet.board("kiosk-01").press("svc_A")
            await fleet.board("kiosk-01").press("svc_A")
            await expect(waiting).to_have_text("2", timeout=10_000)

            # The citizen's page behind the printed QR code.
            token = next(t.token for t in ctrl.queues.sites["blitar-mpp"].tickets() if t.label == "A001")
            ticket_page = await browser.new_page()
            await ticket_page.goto(f"http://{listen}/t/{token}")
            await expect(ticket_page.locator("#label")).to_have_text("A001", timeout=10_000)
            await expect(ticket_page.locator("#status")).to_have_text("Menunggu dipanggil")

            await fleet.board("loket-01").press("next")
            await expect(serving).to_have_text("A001", timeout=10_000)
            await ticket_page.reload()
            await expect(ticket_page.locator("#status")).to_have_text("DIPANGGIL — silakan menuju loket", timeout=10_000)
            await expect(ticket_page.locator("#detail")).to_have_text("Loket 1")
            await expect(waiting).to_have_text("1", timeout=10_000)
            await expect(page.locator('[data-site="blitar-mpp"] .calls li').first).to_have_text("A001 → loket 1")
            await page.screenshot(path=str(tmp_path / "page.png"))
            await browser.close()
    finally:
        await fleet.stop()
        await ctl.stop()
