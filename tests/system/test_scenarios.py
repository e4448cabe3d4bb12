"""The bundled scenarios (simulator/scenarios/) run against the real controller and Mosquitto.

Each test runs on a ScaledEventLoop (simulator/clock.py): the boards, the
scenario's citizens, staff and river live N times faster than the host. The
in-process controller shares the loop and takes the scenario clock, so it
judges opening hours, water hold times and the offline rule in scenario
time too. `gangguan` restarts a controller in its own process (real time):
its queue does not depend on the boards' clocks.

Waiting is on conditions (boards, the observer's retained topics); every
timeout in the coroutines is in scenario seconds.
"""

from __future__ import annotations

import asyncio
import pathlib
import re
from typing import Any

import pytest
import sqlalchemy as sa

from controller.config import DEMO_CONFIG, load_config, parse_config
from simulator import clock
from simulator.engine import Engine, Faults, Summary, wait_observed
from simulator.scenario import load_scenario
from tests.harness.broker import MosquittoBroker
from tests.harness.controller import InProcessController, SubprocessController, midday_timezone

# A part of the demo hall: kiosks, the counters of services A-C and two displays (all boards at
# 12 counters would only cost CPU). Citizens for D-H get tickets that stay waiting.
HALL = ["kiosk-01", "kiosk-02", "loket-01", "loket-02", "loket-03", "loket-04", "loket-05", "loket-06",
        "disp-01", "disp-hall"]
WATER = ["wl-lahar-01", "wl-lahar-02", "wl-lahar-03"]


def tickets(db: pathlib.Path) -> dict[str, dict[str, Any]]:
    """The controller's ticket rows by label."""
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT label, status, service FROM tickets")).mappings()
            return {r["label"]: dict(r) for r in rows}
    finally:
        engine.dispose()


def check_tickets(summary: Summary, rows: dict[str, dict[str, Any]]) -> None:
    """Every citizen who pressed holds exactly one printed ticket, and the controller agrees on each."""
    pressed = [c for c in summary.citizens if c.pressed]
    assert pressed, "no citizen took a ticket"
    assert [c for c in pressed if c.ticket is None] == [], "citizens without a ticket"
    assert summary.unclaimed_slips == 0, "a kiosk printed a slip nobody asked for"
    numbers = summary.issued
    assert len(numbers) == len(set(numbers)), "a number was printed twice"
    assert set(numbers) == set(rows), "printed numbers differ from the controller's tickets"
    for c in pressed:
        assert c.ticket is not None
        row = rows[c.ticket]
        if c.outcome in ("done", "skipped"):
            assert row["status"] == c.outcome, (c, row)
        elif c.outcome == "transferred":
            assert row["status"] in ("waiting", "called", "done", "skipped"), (c, row)
        elif c.outcome == "called":  # at a counter when the scenario stopped (done may be on its way)
            assert row["status"] in ("called", "done", "skipped"), (c, row)
        else:
            assert c.outcome == "waiting" and row["status"] == "waiting", (c, row)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_mpp_pagi_every_citizen_gets_one_ticket_that_the_controller_records(broker, tmp_path):
    speed = 40.0
    cfg = load_config(DEMO_CONFIG)

    async def main() -> Summary:
        engine = Engine(load_scenario("mpp-pagi"), cfg, "127.0.0.1", broker.port, device_ids=HALL)
        ctl = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=engine.clock)
        await ctl.start(timeout=30 * speed)
        try:
            await engine.start()
            await engine.until_end(minutes=22)  # 07:50 to 08:12: the opening rush
            return await engine.stop()
        finally:
            await ctl.stop()

    summary = clock.run(main(), speed)
    print(summary.text())
    check_tickets(summary, tickets(tmp_path / "sigap.db"))
    assert summary.count("done") >= 1 and summary.calls >= summary.count("done")
    assert {c.service for c in summary.citizens} >= {"A", "B", "C"}
    assert any(c.prio for c in summary.citizens)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_banjir_statuses_rise_in_order_and_sirens_sound_then_go_quiet(broker, tmp_path):
    speed = 120.0
    cfg = load_config(DEMO_CONFIG)
    order = ["normal", "waspada", "siaga", "awas"]

    async def main() -> Summary:
        engine = Engine(load_scenario("banjir"), cfg, "127.0.0.1", broker.port, device_ids=WATER)
        ctl = InProcessController(cfg, tmp_path / "sigap.db", broker.url, clock=engine.clock)
        await ctl.start(timeout=30 * speed)
        try:
            await engine.start()
            boards = [engine.fleet.board(d) for d in WATER]
            # The wave reaches awas at every gauge (and each board's siren sounds)...
            await wait_observed(engine.observer, lambda: all(
                "awas" in engine.observer.water.get(d, []) for d in WATER), 90 * 60)
            sounded = lambda: all(any(on for _, on in b.siren_history) for b in boards)  # noqa: E731
            assert await engine.poll_until(sounded, 10 * 60)
            # ...then falls; after the hold time every siren is quiet again.
            assert await engine.poll_until(lambda: not any(b.siren_on for b in boards), 90 * 60)
            assert engine.fleet.board("wl-lahar-03").battery_mv() < 3500  # 3560 mV at 15:10, draining
            return await engine.stop()
        finally:
            await ctl.stop()

    summary = clock.run(main(), speed)
    print(summary.text())
    for d in WATER:
        statuses = summary.water[d]
        assert statuses[:4] == order, (d, statuses)
        switching = summary.sirens[d]
        assert True in switching and switching[-1] is False, (d, switching)
    # The echo loss and the low battery happened on the way.
    assert any("echo wl-lahar-02" in s and "back to normal" in s for s in summary.steps), summary.steps


GANGGUAN_DEVICES = ["kiosk-01", "kiosk-02", "loket-01", "loket-02", "loket-03", "loket-04", "loket-05",
                    "loket-06", "disp-01", "disp-hall"]


def hall_open_now_config(path: pathlib.Path) -> pathlib.Path:
    """The demo config, in a zone where it is midday now with services open 06:00-18:00 every day:
    a controller in its own process (real clock) takes tickets whenever the test runs."""
    text = DEMO_CONFIG.read_text()
    text = text.replace('timezone = "Asia/Jakarta"', f'timezone = "{midday_timezone()}"')
    text = re.sub(r'open = "\d\d:\d\d"', 'open = "06:00"', text)
    text = re.sub(r'close = "\d\d:\d\d"', 'close = "18:00"', text)
    text = re.sub(r"(?m)^days = .*$", "", text)
    text = re.sub(r"(?m)^quota = .*$", "", text)
    parse_config(text)
    path.write_text(text)
    return path


class HarnessFaults(Faults):
    """Real restarts: the test's Mosquitto and a controller process (SIGKILL, then start)."""

    def __init__(self, broker: MosquittoBroker, ctl: SubprocessController):
        self.broker = broker
        self.ctl = ctl

    async def restart_broker(self) -> None:
        await asyncio.to_thread(self.broker.restart)

    async def restart_controller(self) -> None:
        await asyncio.to_thread(self.ctl.kill)
        await asyncio.to_thread(self.ctl.start)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_gangguan_loses_no_ticket_and_every_board_comes_back(broker, tmp_path):
    speed = 20.0
    cfg_path = hall_open_now_config(tmp_path / "sites.toml")
    cfg = load_config(cfg_path)
    ctl = SubprocessController(cfg_path, tmp_path / "sigap.db", broker.url, tmp_path / "controller.log",
                               env={"SIGAP_ADMIN_PASSWORD": "rahasia-uji-123"})
    ctl.start()

    async def main() -> Summary:
        engine = Engine(load_scenario("gangguan"), cfg, "127.0.0.1", broker.port, device_ids=GANGGUAN_DEVICES,
                        faults=HarnessFaults(broker, ctl), board_clock="host", controller_url=ctl.base_url)
        await engine.start()
        await engine.until_end()
        # Every board is back online, as the boards and the retained states say.
        await wait_observed(engine.observer, lambda: all(
            engine.observer.online.get(d) for d in GANGGUAN_DEVICES), 120)
        for d in GANGGUAN_DEVICES:
            await engine.fleet.board(d).device_ready(timeout=120)
        return await engine.stop()

    try:
        summary = clock.run(main(), speed)
    finally:
        ctl.stop()
    print(summary.text())
    assert all(s.endswith(": done") or "back up" in s or "down for" in s for s in summary.steps), summary.steps
    assert len(summary.steps) >= 4
    assert summary.still_offline == []
    assert {"disp-hall", "kiosk-02"} <= set(summary.went_offline)
    check_tickets(summary, tickets(tmp_path / "sigap.db"))
    assert "Traceback" not in ctl.log_text()
